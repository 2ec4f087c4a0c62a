"""Append-only, hash-chained audit trail in DynamoDB.

Every entry carries the hash of the previous entry of its session and its own hash over all its fields,
and is written with a conditional put on a fresh sequence number. So an entry cannot be overwritten by
the writer, and a changed, removed or reordered entry breaks the chain that `verify` recomputes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from support_agent import aws, clock

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

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


class WriteRefused(Exception):
    """An item written together with audit entries failed its condition; nothing was written."""


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


class AuditTrail(aws.DynamoTable):
    """Writer and reader of the audit table (keys: session_id, seq)."""

    def __init__(self, table: str, client: DynamoDBClient | None = None) -> None:
        super().__init__(table, client)
        # Last (seq, hash) we wrote per session: saves a read per append within one invocation.
        self._heads: dict[str, tuple[int, str]] = {}
        self._pending: dict[str, list[dict[str, Any]]] = {}

    def record(
        self,
        session_id: str,
        *,
        actor: str,
        action: str,
        resource: str,
        decision: str,
        outcome: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Buffer an entry; `flush` writes buffered entries together (before any side effect they cover)."""
        self._pending.setdefault(session_id, []).append(
            {
                "actor": actor,
                "action": action,
                "resource": resource,
                "decision": decision,
                "outcome": outcome,
                "details": scrub(details or {}),
                "time": clock.iso(),
            }
        )

    def flush(self, session_id: str, with_items: list[dict[str, Any]] | None = None) -> list[AuditEntry]:
        """Write the session's buffered entries in one transaction, together with `with_items`
        (for example the session's state change), so a state change is never without its audit entries.

        Raises WriteRefused when one of `with_items` fails its condition (nothing is written then).
        """
        pending = self._pending.get(session_id, [])
        extra = with_items or []
        if not pending and not extra:
            return []
        for _attempt in range(8):
            seq, prev = self._heads.get(session_id) or self._read_head(session_id)
            entries = []
            for fields in pending:
                entry = AuditEntry(session_id=session_id, seq=seq + 1, prev_hash=prev, **fields)
                entry.hash = entry.compute_hash()
                entries.append(entry)
                seq, prev = entry.seq, entry.hash
            puts = [
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": aws.to_item(
                            {**e.model_dump(), "details": json.dumps(e.details, sort_keys=True)}
                        ),
                        "ConditionExpression": "attribute_not_exists(seq)",
                    }
                }
                for e in entries
            ]
            try:
                writes = [*puts, *extra]
                if len(writes) == 1:
                    # One entry alone: a conditional put (a transaction would cost twice the write capacity).
                    self.client.put_item(**writes[0]["Put"])
                else:
                    self.client.transact_write_items(TransactItems=writes)  # type: ignore[arg-type]
            except Exception as exc:
                if not aws.is_conditional_failure(exc):
                    raise
                reasons = getattr(exc, "response", {}).get("CancellationReasons", [])
                codes = [r.get("Code", "None") for r in reasons]
                if any(c == "ConditionalCheckFailed" for c in codes[len(puts) :]):
                    raise WriteRefused(f"a state change for {session_id} was refused") from None
                self._heads.pop(session_id, None)
                continue
            self._pending.pop(session_id, None)
            if entries:
                self._heads[session_id] = (entries[-1].seq, entries[-1].hash)
            return entries
        raise RuntimeError(f"audit flush for {session_id} lost the race 8 times")

    def new_chain(self, session_id: str) -> None:
        """Declare a session that has no entries yet (skips the head lookup on its first append)."""
        self._heads[session_id] = (0, GENESIS)

    def append(
        self,
        session_id: str,
        *,
        actor: str,
        action: str,
        resource: str,
        decision: str,
        outcome: str,
        details: dict[str, Any] | None = None,
    ) -> AuditEntry:
        """Add one entry at the end of the session's chain now (after any entries still buffered)."""
        self.record(
            session_id,
            actor=actor,
            action=action,
            resource=resource,
            decision=decision,
            outcome=outcome,
            details=details,
        )
        return self.flush(session_id)[-1]

    def _read_head(self, session_id: str) -> tuple[int, str]:
        resp = self.client.query(
            TableName=self.table,
            KeyConditionExpression="session_id = :s",
            ExpressionAttributeValues={":s": {"S": session_id}},
            ScanIndexForward=False,
            Limit=1,
            ConsistentRead=True,
        )
        items = resp.get("Items", [])
        if not items:
            return 0, GENESIS
        last = aws.from_item(items[0])
        return int(last["seq"]), str(last["hash"])

    def entries(self, session_id: str) -> list[AuditEntry]:
        """Every entry of one session, in order."""
        out: list[AuditEntry] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "session_id = :s",
            "ExpressionAttributeValues": {":s": {"S": session_id}},
            "ConsistentRead": True,
        }
        while True:
            resp = self.client.query(**kwargs)
            out.extend(_entry(item) for item in resp.get("Items", []))
            if "LastEvaluatedKey" not in resp:
                return out
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def all_entries(self) -> Iterator[AuditEntry]:
        """Every entry in the table (operator tooling: the functions' roles cannot Scan)."""
        kwargs: dict[str, Any] = {"TableName": self.table, "ConsistentRead": True}
        while True:
            resp = self.client.scan(**kwargs)
            yield from (_entry(item) for item in resp.get("Items", []))
            if "LastEvaluatedKey" not in resp:
                return
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def verify(self, session_id: str | None = None) -> VerifyReport:
        """Recompute every chain (or one session's) and report each break."""
        entries = self.entries(session_id) if session_id else list(self.all_entries())
        return verify_entries(entries)


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


def _entry(item: dict[str, Any]) -> AuditEntry:
    data = aws.from_item(item)
    data["details"] = json.loads(data.get("details") or "{}")
    return AuditEntry.model_validate(data)
