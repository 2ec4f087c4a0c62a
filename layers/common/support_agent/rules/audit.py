"""The audit trail: hash-chained entries per session, sealed with a key, behind the `AuditLog` port.

Every entry carries the hash of the previous entry of its session and its own hash over all its fields,
and is written with a conditional put on a fresh sequence number (see `rules.dynamodb`). So an entry
cannot be overwritten by the writer, and a changed, removed or reordered entry breaks the chain that
`verify_chains` recomputes. The last entry of every write also carries a MAC of its (session, seq, hash)
made with a KMS key nobody can read (`rules.audit_keys`): as each hash covers everything before it, that
seal authenticates the whole chain up to it, and a rewrite whose hashes were recomputed, or a forged
entry appended, fails it. The chain's head (seq, hash, mac) is anchored outside the chain — on the
session record and in signed digests (`rules.audit_proof`) — so a cut tail or a deleted session shows.

No personal data enters a chain: `chain` replaces e-mail addresses with keyed pseudonyms, so erasing a
customer's data elsewhere never has to touch (and break) a chain.

A `Journal` collects one run's entries: `flush` makes them durable before a side effect; the session
commit takes the rest with the state change they explain.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from pydantic import BaseModel, ConfigDict, Field

from support_agent import clock

if TYPE_CHECKING:
    from support_agent.rules.audit_keys import MacKey, Signer
    from support_agent.rules.audit_proof import Digest

GENESIS = "0" * 64
_ENTRY_MAC = b"support-agent/audit-entry/v1\n"
_EMAIL_PSEUDONYM = b"support-agent/email/v1\n"
# Anything around an @ up to a space, quote, bracket or slash: also look-alike and escaped addresses
# ('tom\u212a@…'); the slash keeps a resource's path (`customers/by-email/<address>`) around the pseudonym.
_EMAIL = re.compile(r"""[^\s@'"<>()\[\],;/]+@[^\s@'"<>()\[\],;/]+""")
_PSEUDONYMS: OrderedDict[tuple[str, str], str] = OrderedDict()
_PSEUDONYM_CACHE = 1024
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
    # Base64 MAC of (session_id, seq, hash) under the audit MAC key: on the last entry of each write.
    mac: str = ""

    def compute_hash(self) -> str:
        """SHA-256 over every field but `hash` and `mac`, as canonical JSON."""
        payload = self.model_dump(exclude={"hash", "mac"})
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def head(self) -> Head:
        """This entry as the head of its chain."""
        return Head(self.seq, self.hash, self.mac)


class Head(NamedTuple):
    """The last entry of a chain, as anchors keep it: its sequence number, hash and MAC."""

    seq: int
    hash: str
    mac: str = ""


START = Head(0, GENESIS)


def entry_message(session_id: str, seq: int, entry_hash: str) -> bytes:
    """What an entry's MAC covers (its hash covers the entry and, through prev_hash, the chain before it)."""
    return _ENTRY_MAC + json.dumps([session_id, seq, entry_hash], separators=(",", ":")).encode()


def seal_entry(entry: AuditEntry, key: MacKey) -> None:
    """Set the entry's MAC (it becomes the sealed head of a write)."""
    entry.mac = base64.b64encode(key.mac(entry_message(entry.session_id, entry.seq, entry.hash))).decode()


def mac_valid(session_id: str, head: Head, key: MacKey) -> bool:
    """True when `head.mac` is the key's MAC of this head."""
    try:
        mac = base64.b64decode(head.mac, validate=True)
    except ValueError:
        return False
    return bool(mac) and key.verify(entry_message(session_id, head.seq, head.hash), mac)


def pseudonym(email: str, key: MacKey | None) -> str:
    """A stable keyed pseudonym of an e-mail address (32 hex digits; "redacted" without a key).

    Only someone allowed to use the MAC key can test whether a pseudonym stands for a given address, and
    nobody can reverse it; erasing the address everywhere else leaves nothing in the chain to erase.
    """
    if key is None:
        return "redacted"
    normal = email.strip().lower()
    cached = _PSEUDONYMS.get((key.key_id, normal))
    if cached is None:
        cached = key.mac(_EMAIL_PSEUDONYM + normal.encode()).hex()[:32]
        _PSEUDONYMS[(key.key_id, normal)] = cached
        if len(_PSEUDONYMS) > _PSEUDONYM_CACHE:
            _PSEUDONYMS.popitem(last=False)
    else:
        _PSEUDONYMS.move_to_end((key.key_id, normal))
    return cached


def without_emails(value: Any, key: MacKey | None, *, prefix: str = "email:") -> Any:
    """`value` with every e-mail address in its strings (nested in dicts and lists too) pseudonymised."""
    if isinstance(value, str):
        return _EMAIL.sub(lambda m: prefix + pseudonym(m.group(0), key), value) if "@" in value else value
    if isinstance(value, dict):
        return {k: without_emails(v, key, prefix=prefix) for k, v in value.items()}
    if isinstance(value, list):
        return [without_emails(v, key, prefix=prefix) for v in value]
    return value


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


def chain(
    session_id: str, head: tuple[int, str] | Head, drafts: Iterable[AuditDraft], key: MacKey | None = None
) -> list[AuditEntry]:
    """Drafts as entries following `head` (last sequence number and hash) of the session's chain.

    E-mail addresses become keyed pseudonyms (`email:<pseudonym>`; in a resource the bare pseudonym, as in
    `customers/by-email/<pseudonym>`), and with a key the last entry is sealed with its MAC. Without a key
    nothing is sealed and addresses are redacted.
    """
    seq, prev = head[0], head[1]
    entries = []
    for d in drafts:
        data = d.model_dump()
        data = {
            **without_emails(data, key),
            "resource": without_emails(data["resource"], key, prefix=""),
        }
        entry = AuditEntry(session_id=session_id, seq=seq + 1, prev_hash=prev, **data)
        entry.hash = entry.compute_hash()
        entries.append(entry)
        seq, prev = entry.seq, entry.hash
    if entries and key is not None:
        seal_entry(entries[-1], key)
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


class ProvableLog(AuditLog, Protocol):
    """An AuditLog with what proves it: its MAC key, the heads anchored on session records, its digests."""

    key: MacKey | None

    def anchors(self, session_id: str | None = None) -> dict[str, Head]:
        """Chain heads kept on session records (one session's, or every session's)."""
        ...

    def digests(self) -> list[Digest]:
        """Every digest written so far, in order."""
        ...

    def put_digest(self, digest: Digest) -> None:
        """Store a new digest (never over an existing one)."""
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
    macs_checked: bool = False  # MACs were verified with the key (else hashes and links only)
    anchors_checked: int = 0  # heads compared: session records, digests, a seal
    heads: dict[str, Head] = field(default_factory=dict)  # last entry of each chain that was read

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class Anchor:
    """A head kept outside the chain. The chain must contain it (`exact`: and end at it, as for a seal)."""

    source: str
    head: Head
    exact: bool = False


def verify(
    log: ProvableLog,
    session_id: str | None = None,
    *,
    signer: Signer | None = None,
    external_digests: Sequence[Digest] = (),
) -> VerifyReport:
    """Recompute every chain in `log` (or one session's), check each MAC with the log's key, and compare
    the chains with the heads on session records and, given the signing key, in the signed digests."""
    from support_agent.rules.audit_proof import verify_log

    return verify_log(log, session_id, signer=signer, external_digests=external_digests)


def verify_entries(entries: Iterable[AuditEntry]) -> VerifyReport:
    """Check sequence numbers, hashes and links of entries grouped by session (no key, no anchors)."""
    return verify_chains(entries)


def verify_chains(
    entries: Iterable[AuditEntry],
    *,
    key: MacKey | None = None,
    anchors: Mapping[str, Sequence[Anchor]] | None = None,
) -> VerifyReport:
    """Check entries grouped by session: sequence numbers, hashes and links; with `key`, every MAC and that
    each chain ends in a sealed entry; and that each chain holds every head `anchors` name for it."""
    by_session: dict[str, list[AuditEntry]] = {}
    for entry in entries:
        by_session.setdefault(entry.session_id, []).append(entry)
    anchored = anchors or {}
    report = VerifyReport(sessions=len(set(by_session) | set(anchored)), macs_checked=key is not None)
    for session_id in sorted(set(by_session) | set(anchored)):
        chain = sorted(by_session.get(session_id, []), key=lambda e: e.seq)
        _check_links(session_id, chain, report)
        if chain and key is not None:
            _check_macs(session_id, chain, key, report)
        for anchor in anchored.get(session_id, ()):
            report.anchors_checked += 1
            _check_anchor(session_id, chain, anchor, report)
        if chain:
            report.heads[session_id] = chain[-1].head
    return report


def _check_links(session_id: str, chain: list[AuditEntry], report: VerifyReport) -> None:
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


def _check_macs(session_id: str, chain: list[AuditEntry], key: MacKey, report: VerifyReport) -> None:
    for entry in chain:
        if entry.mac and not mac_valid(session_id, entry.head, key):
            report.problems.append(
                Problem(session_id, entry.seq, "MAC invalid: the entry or one before it was rewritten")
            )
    last = chain[-1]
    if not last.mac:
        report.problems.append(
            Problem(
                session_id,
                last.seq,
                "the chain ends in an unsealed entry: appended without the key, or a write's tail was cut",
            )
        )


def _check_anchor(session_id: str, chain: list[AuditEntry], anchor: Anchor, report: VerifyReport) -> None:
    head = anchor.head
    if not chain:
        report.problems.append(
            Problem(
                session_id, None, f"session deleted: {anchor.source} names head #{head.seq}, no entry is left"
            )
        )
        return
    last = chain[-1]
    at = next((e for e in chain if e.seq == head.seq), None)
    if head.seq > last.seq:
        report.problems.append(
            Problem(
                session_id,
                last.seq,
                f"tail cut: {anchor.source} names head #{head.seq}, the chain ends at #{last.seq}",
            )
        )
    elif at is None:
        return  # reported as a missing entry already
    elif at.hash != head.hash or at.mac != head.mac:
        report.problems.append(
            Problem(session_id, head.seq, f"entry differs from the head {anchor.source} names: rewritten")
        )
    elif anchor.exact and last.seq != head.seq:
        report.problems.append(
            Problem(
                session_id,
                last.seq,
                f"{last.seq - head.seq} entr{'y' if last.seq - head.seq == 1 else 'ies'} after the head "
                f"{anchor.source} names: appended",
            )
        )
