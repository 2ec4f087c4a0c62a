"""The audit trail: hash-chained entries per session, behind the `AuditLog` port.

Every entry carries the hash of the previous entry of its session and its own hash over all its fields,
and is written with a conditional put on a fresh sequence number (see `rules.dynamodb`). So an entry
cannot be overwritten by the writer, and a changed, removed or reordered entry breaks the chain that
`verify_entries` recomputes. A `Journal` collects one run's entries: `flush` makes them durable before a
side effect; the session commit takes the rest with the state change they explain.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from support_agent import clock

GENESIS = "0" * 64
# Secrets and raw bodies; token *counts* (input_tokens, …) are kept, a token itself (task_token) is not.
_SECRET_KEY = re.compile(r"secret|token$|password|signature|authorization|api[_-]?key|cookie|body|raw", re.I)
_MAX_DETAIL_CHARS = 500


class AuditEntry(BaseModel):
    model_config = ConfigDict(defer_build=True)

    session_id: str
    seq: int
    time: str
    actor: str
    action: str
    resource: str
    decision: str
    outcome: str
    details: dict[str, Any] = {}
    prev_hash: str
    hash: str = ""

    def compute_hash(self) -> str:
        """SHA-256 over every field but `hash`, as canonical JSON."""
        payload = self.model_dump(exclude={"hash"})
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()


def scrub(details: dict[str, Any]) -> dict[str, Any]:
    """Leave out secrets and raw message bodies; cap long strings so no ticket text lands in the trail."""
    clean: dict[str, Any] = {}
    for key, value in details.items():
        if _SECRET_KEY.search(key):
            clean[key] = "[redacted]"
        elif isinstance(value, dict):
            clean[key] = scrub(value)
        elif isinstance(value, str) and len(value) > _MAX_DETAIL_CHARS:
            clean[key] = value[:_MAX_DETAIL_CHARS] + "…"
        else:
            clean[key] = value
    return clean


class AuditDraft(BaseModel):
    """An entry before it takes its place in a chain (no sequence number or hashes yet)."""

    model_config = ConfigDict(defer_build=True)

    actor: str
    action: str
    resource: str
    decision: str
    outcome: str
    details: dict[str, Any] = Field(default_factory=dict)
    time: str = Field(default_factory=clock.iso)


def draft(
    actor: str,
    action: str,
    resource: str,
    decision: str,
    outcome: str,
    details: dict[str, Any] | None = None,
) -> AuditDraft:
    """An entry to write, with secrets and bodies scrubbed from its details."""
    return AuditDraft(
        actor=actor,
        action=action,
        resource=resource,
        decision=decision,
        outcome=outcome,
        details=scrub(details or {}),
    )


def chain(session_id: str, head: tuple[int, str], drafts: Iterable[AuditDraft]) -> list[AuditEntry]:
    """Drafts as entries following `head` (last sequence number and hash) of the session's chain."""
    seq, prev = head
    entries = []
    for d in drafts:
        entry = AuditEntry(session_id=session_id, seq=seq + 1, prev_hash=prev, **d.model_dump())
        entry.hash = entry.compute_hash()
        entries.append(entry)
        seq, prev = entry.seq, entry.hash
    return entries


class AuditLog(Protocol):
    """Where chains are stored. Appends never overwrite: a lost race re-reads the head and retries."""

    def append(
        self, session_id: str, drafts: list[AuditDraft], *, new_chain: bool = False
    ) -> list[AuditEntry]:
        """Add entries at the end of the session's chain now (`new_chain`: the session has none yet)."""
        ...

    def entries(self, session_id: str) -> list[AuditEntry]:
        """Every entry of one session, in order."""
        ...

    def all_entries(self) -> Iterator[AuditEntry]:
        """Every entry (operator tooling)."""
        ...


class Journal:
    """One run's audit entries for one session: recorded as they happen, written by `flush` or a commit."""

    def __init__(self, log: AuditLog, session_id: str, actor: str = "agent") -> None:
        self.log = log
        self.session_id = session_id
        self.actor = actor
        self._drafts: list[AuditDraft] = []

    def record(
        self, action: str, resource: str, decision: str, outcome: str, details: dict[str, Any] | None = None
    ) -> None:
        """Buffer an entry (durable with the next flush or commit)."""
        self._drafts.append(draft(self.actor, action, resource, decision, outcome, details))

    def flush(self) -> None:
        """Make buffered entries durable now: before a side effect they cover."""
        if self._drafts:
            self.log.append(self.session_id, self.drain())

    def drain(self) -> list[AuditDraft]:
        """Hand the buffered entries to a commit (the journal is empty afterwards)."""
        drafts, self._drafts = self._drafts, []
        return drafts


@dataclass
class Problem:
    session_id: str
    seq: int | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.session_id}#{self.seq}" if self.seq is not None else self.session_id
        return f"{where}: {self.reason}"


@dataclass
class VerifyReport:
    sessions: int = 0
    entries: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(log: AuditLog, session_id: str | None = None) -> VerifyReport:
    """Recompute every chain in `log` (or one session's) and report each break."""
    return verify_entries(log.entries(session_id) if session_id else log.all_entries())


def verify_entries(entries: Iterable[AuditEntry]) -> VerifyReport:
    """Check sequence numbers, hashes and links of entries grouped by session."""
    by_session: dict[str, list[AuditEntry]] = {}
    for entry in entries:
        by_session.setdefault(entry.session_id, []).append(entry)
    report = VerifyReport(sessions=len(by_session))
    for session_id, chain in sorted(by_session.items()):
        chain.sort(key=lambda e: e.seq)
        prev_hash, expected_seq = GENESIS, 1
        for entry in chain:
            report.entries += 1
            if entry.seq != expected_seq:
                report.problems.append(Problem(session_id, entry.seq, f"entry {expected_seq} is missing"))
            if entry.compute_hash() != entry.hash:
                report.problems.append(Problem(session_id, entry.seq, "entry was changed (hash mismatch)"))
            elif entry.prev_hash != prev_hash:
                report.problems.append(
                    Problem(
                        session_id,
                        entry.seq,
                        "chain broken: previous entry was removed, changed or reordered",
                    )
                )
            prev_hash, expected_seq = entry.hash, entry.seq + 1
    return report
