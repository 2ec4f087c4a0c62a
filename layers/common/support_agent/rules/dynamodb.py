"""DynamoDB implementations of the shared rules' ports: sessions, requests for people, audit, budgets,
and the session commit that writes a state change, its request and its audit entries in one transaction.

Sessions and requests share the sessions table (pk SESSION#id / APPROVAL#id, sk = kind); the audit table
is keyed (session_id, seq) and written with conditional puts only. A session record also keeps its audit
chain's head (audit_seq, audit_hash, audit_mac): the session commit sets it in the same transaction as the
entries, and a lone append moves it forward, conditionally, in the transaction that writes the entries.
Request records keep a copy of it, so the notifier and the Slack endpoint need not read it first.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import timedelta, tzinfo
from functools import cache
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter

from support_agent import aws, clock
from support_agent.models import Decision, PersonRequest, Session, SessionState, StoredRequest
from support_agent.rules.approvals import AlreadyDecided, status_after
from support_agent.rules.audit import START, AuditDraft, AuditEntry, Head, chain
from support_agent.rules.audit_keys import MacKey
from support_agent.rules.audit_proof import DIGESTS, Digest
from support_agent.rules.budget import Slot, today
from support_agent.rules.sessions import (
    SESSION_PREFIX,
    Guard,
    SessionChange,
    SessionExists,
    TransitionRefused,
    check_transition,
    moved_fields,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# The sessions table's index of running sessions by lease expiry (template.yaml, SessionsTable).
LEASE_INDEX = "ByLease"
# DynamoDB's limit of items in one TransactWriteItems call.
MAX_TRANSACTION_ITEMS = 100
_BUDGET_KEEP_DAYS = 35


@cache
def _requests() -> TypeAdapter[PersonRequest]:
    """Approvals and notices by their `kind` (built on first use: the Intake function never reads them)."""
    return TypeAdapter(StoredRequest)


# The extra items of a write, given the head it will leave (None when it writes no entry).
ItemsFor = Callable[[Head | None], list[dict[str, Any]]]


def anchor_fields(head: Head) -> dict[str, Any]:
    """The chain head as the session record keeps it."""
    return {"audit_seq": head.seq, "audit_hash": head.hash, "audit_mac": head.mac}


def anchored_head(record: dict[str, Any]) -> Head | None:
    """The chain head a stored record keeps (`anchor_fields` read back from plain data), if any."""
    if "audit_seq" not in record:
        return None
    return Head(int(record["audit_seq"]), str(record["audit_hash"]), str(record.get("audit_mac", "")))


def learn_head(heads: dict[str, Head], session_id: str, record: dict[str, Any]) -> None:
    """Remember the head `record` keeps for `session_id`, unless a later one is known already."""
    head = anchored_head(record)
    known = heads.get(session_id)
    if head is not None and (known is None or known.seq < head.seq):
        heads[session_id] = head


def _session_key(session_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"SESSION#{session_id}"}, "sk": {"S": "SESSION"}}


def _request_key(request_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"APPROVAL#{request_id}"}, "sk": {"S": "APPROVAL"}}


def _jsonable(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, SessionState):
        return value.value
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


class DynamoSessionStore(aws.DynamoTable):
    """Sessions in the sessions table; every move is a conditional update on the expected state."""

    def __init__(
        self,
        table: str,
        ttl_days: int = 90,
        client: DynamoDBClient | None = None,
        heads: dict[str, Head] | None = None,
    ) -> None:
        super().__init__(table, client)
        self.ttl_days = ttl_days
        # Shared with the audit log: a session record read here tells it the chain's head (no Query).
        self.heads = heads

    def _session(self, item: dict[str, Any]) -> Session:
        record = aws.record(item)
        if self.heads is not None:
            learn_head(self.heads, str(record["session_id"]), record)
        return Session.model_validate(record)

    def create_item(self, session: Session, **extra: Any) -> dict[str, Any]:
        """The create as a TransactWriteItems entry (a Put that refuses an existing session); `extra`:
        fields stored beside the session's (its audit chain's head)."""
        expires = int((clock.now() + timedelta(days=self.ttl_days)).timestamp())
        item = {
            **_session_key(session.session_id),
            **aws.to_item({**session.model_dump(mode="json"), "expires_at": expires, **extra}),
        }
        return {
            "Put": {"TableName": self.table, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}
        }

    def create(self, session: Session) -> None:
        try:
            self.client.put_item(**self.create_item(session)["Put"])
        except Exception as exc:
            if not aws.is_conditional_failure(exc):
                raise
            existing = self.get(session.session_id)
            if existing is None:  # expired between the two calls; let the caller retry
                raise
            raise SessionExists(existing) from None

    def get(self, session_id: str) -> Session | None:
        resp = self.client.get_item(TableName=self.table, Key=_session_key(session_id), ConsistentRead=True)
        item = resp.get("Item")
        return self._session(item) if item else None

    def transition(
        self,
        session_id: str,
        expected: SessionState,
        new: SessionState,
        guard: Guard | None = None,
        **fields: Any,
    ) -> Session:
        try:
            resp = self.client.update_item(
                TableName=self.table,
                ReturnValues="ALL_NEW",
                **self._transition_args(session_id, expected, new, fields, guard),
            )
        except Exception as exc:
            if aws.is_conditional_failure(exc):
                raise TransitionRefused(f"session {session_id} is not {expected.value}") from None
            raise
        return self._session(resp["Attributes"])

    def expired_leases(self, state: SessionState, before: str) -> list[str]:
        ids: list[str] = []
        args: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": LEASE_INDEX,
            "KeyConditionExpression": "#state = :state AND lease_until < :before",
            "ExpressionAttributeNames": {"#state": "state"},
            "ExpressionAttributeValues": {":state": {"S": state.value}, ":before": {"S": before}},
        }
        while True:
            page = self.client.query(**args)
            ids += [item["pk"]["S"].removeprefix("SESSION#") for item in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                return ids
            args["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def transition_item(self, change: SessionChange) -> dict[str, Any]:
        """The change's guarded move as a TransactWriteItems entry."""
        args = self._transition_args(
            change.session_id, change.expected, change.new, change.fields, change.guard
        )
        return {"Update": {"TableName": self.table, **args}}

    def _transition_args(
        self,
        session_id: str,
        expected: SessionState,
        new: SessionState,
        fields: dict[str, Any],
        guard: Guard | None = None,
    ) -> dict[str, Any]:
        check_transition(expected, new)
        moved = {**moved_fields(new, fields), "state": new, "updated_at": clock.iso()}
        values = {k: _jsonable(v) for k, v in moved.items()}
        condition, names, guard_values = _guard_condition(guard)
        args = aws.set_fields(values, "attribute_exists(pk) AND #state = :expected" + condition)
        args["ExpressionAttributeNames"].update({"#state": "state", **names})
        args.setdefault("ExpressionAttributeValues", {}).update(
            {":expected": {"S": expected.value}, **guard_values}
        )
        return {"Key": _session_key(session_id), **args}


def _guard_condition(guard: Guard | None) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The guard as a condition to AND onto a move (Guard.holds is the same test in Python)."""
    if guard is None:
        return "", {}, {}
    parts: list[str] = []
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    for name in ("approval_id", "lease_id", "lease_for"):
        wanted = getattr(guard, name)
        if wanted is not None:
            parts.append(f"#g_{name} = :g_{name}")
            names[f"#g_{name}"] = name
            values[f":g_{name}"] = {"S": wanted}
    if guard.expired_at is not None:
        parts.append("(attribute_not_exists(#g_until) OR #g_until < :g_until)")
        names["#g_until"] = "lease_until"
        values[":g_until"] = {"S": guard.expired_at}
    return "".join(f" AND {p}" for p in parts), names, values


class DynamoApprovalStore(aws.DynamoTable):
    """Approvals and handoff notices in the sessions table; the task token stays here, never in Slack.

    A request record also keeps a copy of its session's chain head as the last write through this store
    (or the commit that created it) left it: the notifier and the Slack endpoint, which read the request
    but not the session, append to the chain without reading its head first. A stale copy costs a
    refused write and a read, never a wrong entry.
    """

    def __init__(
        self, table: str, client: DynamoDBClient | None = None, audit: DynamoAuditLog | None = None
    ) -> None:
        super().__init__(table, client)
        self.audit = audit
        # Task tokens read with their requests in this invocation (`task_token(reread=False)`).
        self._tokens: dict[str, str] = {}

    def put_item(self, request: PersonRequest, **extra: Any) -> dict[str, Any]:
        """The create as a TransactWriteItems entry (written with the session's state change); `extra`:
        fields stored beside the request's (its session's chain head)."""
        data = {**request.model_dump(mode="json"), **extra}
        item = {**_request_key(request.request_id), **aws.to_item(data)}
        return {
            "Put": {"TableName": self.table, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}
        }

    def get(self, request_id: str) -> PersonRequest | None:
        key = _request_key(request_id)
        item = self.client.get_item(TableName=self.table, Key=key, ConsistentRead=True).get("Item")
        return self._request(item) if item else None

    def _request(self, item: dict[str, Any]) -> PersonRequest:
        request = _request(item)
        if "task_token" in item:
            self._tokens[request.request_id] = item["task_token"]["S"]
        if self.audit is not None:
            learn_head(self.audit.heads, request.session_id, aws.from_item(item))
        return request

    def record(self, request: PersonRequest, entries: list[AuditDraft], **fields: Any) -> None:
        """Set bookkeeping fields and append `entries` to the request's session chain, in one write."""
        audit = self._audit_log()

        def items(head: Head | None) -> list[dict[str, Any]]:
            values = {**fields, **(anchor_fields(head) if head else {})}
            return [
                {
                    "Update": {
                        "TableName": self.table,
                        "Key": _request_key(request.request_id),
                        **aws.set_fields(values),
                    }
                }
            ]

        audit.write(request.session_id, entries, items, anchor=True)

    def decide_recorded(
        self, request: PersonRequest, decision: Decision, entries: list[AuditDraft]
    ) -> PersonRequest:
        """`decide` with `entries` appended to the session's chain in the same write; the request as decided."""
        audit = self._audit_log()
        status = status_after(decision)

        def items(head: Head | None) -> list[dict[str, Any]]:
            # status comes first, so set_fields names it #f0 (the guard reads it).
            values = {"status": status, "decision": decision.model_dump(mode="json")}
            args = aws.set_fields(
                {**values, **(anchor_fields(head) if head else {})}, "attribute_exists(pk) AND #f0 = :pending"
            )
            args["ExpressionAttributeValues"][":pending"] = {"S": "pending"}
            return [{"Update": {"TableName": self.table, "Key": _request_key(request.request_id), **args}}]

        try:
            audit.write(request.session_id, entries, items, anchor=True)
        except TransitionRefused:
            raise AlreadyDecided(self.get(request.request_id)) from None
        return request.model_copy(update={"status": status, "decision": decision})

    def _audit_log(self) -> DynamoAuditLog:
        if self.audit is None:
            raise TypeError("DynamoApprovalStore needs the audit log to write entries with a request")
        return self.audit

    def task_token(self, approval_id: str, *, reread: bool = True) -> str | None:
        if not reread and approval_id in self._tokens:
            return self._tokens[approval_id]
        item = self.client.get_item(
            TableName=self.table,
            Key=_request_key(approval_id),
            ConsistentRead=True,
            ProjectionExpression="task_token",
        ).get("Item")
        token = item["task_token"]["S"] if item and "task_token" in item else None
        if token:
            self._tokens[approval_id] = token
        return token

    def update(self, request_id: str, **fields: Any) -> PersonRequest:
        resp = self.client.update_item(
            TableName=self.table,
            Key=_request_key(request_id),
            ReturnValues="ALL_NEW",
            **aws.set_fields(fields),
        )
        return self._request(resp["Attributes"])

    def decide(self, request_id: str, decision: Decision) -> PersonRequest:
        try:
            resp = self.client.update_item(
                TableName=self.table,
                Key=_request_key(request_id),
                UpdateExpression="SET #s = :s, decision = :d",
                ConditionExpression="attribute_exists(pk) AND #s = :pending",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":s": {"S": status_after(decision)},
                    ":d": aws.to_item({"d": decision.model_dump(mode="json")})["d"],
                    ":pending": {"S": "pending"},
                },
                ReturnValues="ALL_NEW",
            )
        except Exception as exc:
            if aws.is_conditional_failure(exc):
                raise AlreadyDecided(self.get(request_id)) from None
            raise
        return self._request(resp["Attributes"])


def _request(item: dict[str, Any]) -> PersonRequest:
    return _requests().validate_python(aws.record(item, drop=frozenset({"task_token"})))


class DynamoAuditLog(aws.DynamoTable):
    """Audit chains in the audit table, written with conditional puts only (never an update or delete).

    `key` seals the last entry of each write and pseudonymises e-mail addresses (`rules.audit`);
    `sessions_table` is where chain heads are anchored on session records (and read back to verify).
    """

    def __init__(
        self,
        table: str,
        client: DynamoDBClient | None = None,
        *,
        key: MacKey | None = None,
        sessions_table: str | None = None,
        heads: dict[str, Head] | None = None,
    ) -> None:
        super().__init__(table, client)
        self.key = key
        self.sessions_table = sessions_table
        # Chain heads this process knows: written by it, or read from a session record by the sessions
        # store sharing this dict (`DynamoSessionStore(heads=...)`). A stale one costs a refused put and a
        # read, never a wrong entry.
        self.heads: dict[str, Head] = heads if heads is not None else {}

    def append(
        self, session_id: str, drafts: list[AuditDraft], *, new_chain: bool = False
    ) -> list[AuditEntry]:
        if new_chain:
            self.heads[session_id] = START
        return self.write(session_id, drafts)

    def write(
        self,
        session_id: str,
        drafts: list[AuditDraft],
        with_items: list[dict[str, Any]] | ItemsFor | None = None,
        *,
        anchor: bool = False,
    ) -> list[AuditEntry]:
        """Append `drafts` together with `with_items` (a state change, a request) in one transaction.

        `with_items` may be a function of the head the write leaves, so a session's move can carry it;
        `anchor`: the session record's head moves in the same transaction (a lone append always does).
        Past DynamoDB's 100-item limit the earliest entries go first in transactions of their own: an entry
        may then exist without the state change it precedes, never a state change without its entries.
        Raises TransitionRefused when one of `with_items` fails its condition (nothing of the last
        transaction is written then).
        """
        fixed: list[dict[str, Any]] = [] if callable(with_items) else list(with_items or [])
        items_for: ItemsFor = with_items if callable(with_items) else (lambda _head: list(fixed))
        room = MAX_TRANSACTION_ITEMS - len(items_for(None))
        while len(drafts) > room:
            self._write_once(session_id, drafts[:MAX_TRANSACTION_ITEMS], None)
            drafts = drafts[MAX_TRANSACTION_ITEMS:]
        if not drafts and not items_for(None):
            return []
        return self._write_once(session_id, drafts, items_for if with_items else None, anchor)

    def _write_once(
        self, session_id: str, drafts: list[AuditDraft], items_for: ItemsFor | None, anchor: bool = False
    ) -> list[AuditEntry]:
        anchor = (
            (anchor or items_for is None)
            and bool(self.sessions_table)
            and session_id.startswith(SESSION_PREFIX)
        )
        for _attempt in range(8):
            head = self.heads.get(session_id) or self._read_head(session_id)
            entries = chain(session_id, head, drafts, self.key)
            extra = items_for(entries[-1].head if entries else None) if items_for is not None else []
            moved = [self._anchor_item(session_id, entries[-1].head)] if anchor and entries else []
            writes = [*(self._put(e) for e in entries), *extra, *moved]
            try:
                if len(writes) == 1 and entries:
                    # One entry alone: a conditional put (a transaction would cost twice the write capacity).
                    self.client.put_item(**writes[0]["Put"])
                else:
                    self.client.transact_write_items(TransactItems=writes)  # type: ignore[arg-type]
            except Exception as exc:
                if not aws.is_conditional_failure(exc):
                    raise
                reasons = getattr(exc, "response", {}).get("CancellationReasons", [])
                codes = [r.get("Code", "None") for r in reasons]
                refused = [c == "ConditionalCheckFailed" for c in codes]
                ours = codes[len(entries) : len(entries) + len(extra)]
                if any(c == "ConditionalCheckFailed" for c in ours):
                    raise TransitionRefused(
                        f"a state change for {session_id} was refused", tuple(ours)
                    ) from None
                if moved and refused and refused[-1] and not any(refused[: len(entries)]):
                    # Only the anchor was refused: the session record is gone (erased), and the entries
                    # go without it. (With the entries refused too, it was behind another writer's.)
                    anchor = False
                self.heads.pop(session_id, None)  # another writer appended: read the head again
                continue
            if entries:
                self.heads[session_id] = entries[-1].head
            return entries
        raise RuntimeError(f"audit append for {session_id} lost the race 8 times")

    def _anchor_item(self, session_id: str, head: Head) -> dict[str, Any]:
        """The session record's head moved forward with the entries, in their transaction (never back;
        refused when the record is gone, and the entries are then written without it)."""
        args = aws.set_fields(
            anchor_fields(head),
            "attribute_exists(pk) AND (attribute_not_exists(audit_seq) OR audit_seq < :seq)",
        )
        args["ExpressionAttributeValues"][":seq"] = {"N": str(head.seq)}
        return {"Update": {"TableName": self.sessions_table, "Key": _session_key(session_id), **args}}

    def _put(self, entry: AuditEntry) -> dict[str, Any]:
        data = {**entry.model_dump(), "details": json.dumps(entry.details, sort_keys=True)}
        if not entry.mac:
            del data["mac"]
        return {
            "Put": {
                "TableName": self.table,
                "Item": aws.to_item(data),
                "ConditionExpression": "attribute_not_exists(seq)",
            }
        }

    def _read_head(self, session_id: str) -> Head:
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
            return START
        last = aws.from_item(items[0])
        return Head(int(last["seq"]), str(last["hash"]), str(last.get("mac", "")))

    def entries(self, session_id: str) -> list[AuditEntry]:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "session_id = :s",
            "ExpressionAttributeValues": {":s": {"S": session_id}},
            "ConsistentRead": True,
        }
        return list(self._pages("query", kwargs))

    def all_entries(self) -> Iterator[AuditEntry]:
        """Every entry in the table (operator tooling: the functions' roles cannot Scan)."""
        return self._pages("scan", {"TableName": self.table, "ConsistentRead": True})

    def _pages(self, operation: str, kwargs: dict[str, Any]) -> Iterator[AuditEntry]:
        for data in self._items(operation, kwargs):
            if data["session_id"] == DIGESTS:
                continue
            data["details"] = json.loads(data.get("details") or "{}")
            yield AuditEntry.model_validate(data)

    def _items(self, operation: str, kwargs: dict[str, Any]) -> Iterator[dict[str, Any]]:
        while True:
            resp = getattr(self.client, operation)(**kwargs)
            for item in resp.get("Items", []):
                yield aws.from_item(item)
            if "LastEvaluatedKey" not in resp:
                return
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    # --- what proves the chains (operator tooling) ---------------------------------------------------

    def anchors(self, session_id: str | None = None) -> dict[str, Head]:
        """Heads kept on session records: one session's (GetItem), or every session's (Scan)."""
        if not self.sessions_table:
            return {}
        columns = {"ProjectionExpression": "pk, sk, audit_seq, audit_hash, audit_mac", "ConsistentRead": True}
        if session_id is not None:
            resp = self.client.get_item(
                TableName=self.sessions_table,
                Key=_session_key(session_id),
                **columns,  # type: ignore[arg-type]
            )
            found = [aws.from_item(resp["Item"])] if "Item" in resp else []
        else:
            kwargs: dict[str, Any] = {
                "TableName": self.sessions_table,
                "FilterExpression": "sk = :s AND attribute_exists(audit_seq)",
                "ExpressionAttributeValues": {":s": {"S": "SESSION"}},
                **columns,
            }
            found = list(self._items("scan", kwargs))
        heads: dict[str, Head] = {}
        for r in found:
            learn_head(heads, str(r["pk"]).removeprefix("SESSION#"), r)
        return heads

    def digests(self) -> list[Digest]:
        """Every digest in the table, in order."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "session_id = :s",
            "ExpressionAttributeValues": {":s": {"S": DIGESTS}},
            "ConsistentRead": True,
        }
        out = []
        for data in self._items("query", kwargs):
            data["heads"] = json.loads(data.get("heads") or "{}")
            out.append(Digest.model_validate({**data, "number": data["seq"]}))
        return out

    def put_digest(self, digest: Digest) -> None:
        """Store a digest under its number (a conditional put: an existing digest is never replaced)."""
        data = digest.model_dump(mode="json", exclude={"number", "heads"})
        item = {
            **aws.to_item({**data, "session_id": DIGESTS, "seq": digest.number}),
            "heads": {"S": json.dumps(digest.model_dump(mode="json")["heads"], sort_keys=True)},
        }
        self.client.put_item(TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(seq)")


class DynamoSessionCommitter:
    """One outcome, one transaction: the session's move (with the chain's new head), the request it
    creates, and its audit entries."""

    def __init__(
        self, sessions: DynamoSessionStore, approvals: DynamoApprovalStore, audit: DynamoAuditLog
    ) -> None:
        self.sessions = sessions
        self.approvals = approvals
        self.audit = audit

    def commit(self, change: SessionChange) -> None:
        def items(head: Head | None) -> list[dict[str, Any]]:
            moved = replace(change, fields={**change.fields, **anchor_fields(head)}) if head else change
            out = [self.sessions.transition_item(moved)]
            if change.request is not None:
                out.append(self.approvals.put_item(change.request, **(anchor_fields(head) if head else {})))
            return out

        self.audit.write(change.session_id, change.entries, items)


class DynamoDailyBudget(aws.DynamoTable):
    """Counter of sessions started per day (a day in the policy's time zone, UTC by default). With the
    sessions store and the audit log, `open` stores a new session, takes its slot and starts its audit
    chain in one transaction."""

    def __init__(
        self,
        table: str,
        sessions: DynamoSessionStore | None = None,
        client: DynamoDBClient | None = None,
        audit: DynamoAuditLog | None = None,
    ) -> None:
        super().__init__(table, client)
        self.sessions = sessions
        self.audit = audit

    def take(self, limit: int, tz: tzinfo) -> Slot:
        day = today(tz)
        try:
            resp = self.client.update_item(ReturnValues="UPDATED_NEW", **self._take_args(day, limit))
        except Exception as exc:
            if aws.is_conditional_failure(exc):
                return Slot(False, day, limit, limit)
            raise
        return Slot(True, day, int(resp["Attributes"]["used"]["N"]), limit)

    def open(self, session: Session, limit: int, tz: tzinfo, entries: Sequence[AuditDraft] = ()) -> Slot:
        sessions = self.sessions
        if sessions is None or (entries and self.audit is None):
            raise TypeError("DynamoDailyBudget.open needs the sessions store (and the audit log for entries)")
        day = today(tz)
        take = {"Update": self._take_args(day, limit)}
        try:
            if self.audit is not None and entries:
                self.audit.heads[session.session_id] = START  # a new session's chain starts here

                def items(head: Head | None) -> list[dict[str, Any]]:
                    anchor = anchor_fields(head) if head else {}
                    return [sessions.create_item(session, **anchor), take]

                self.audit.write(session.session_id, list(entries), items)
            else:
                items_only = [sessions.create_item(session), take]
                self.client.transact_write_items(TransactItems=items_only)  # type: ignore[arg-type]
        except Exception as exc:
            if self.audit is not None:
                self.audit.heads.pop(session.session_id, None)
            if isinstance(exc, TransitionRefused):
                codes = exc.codes
            elif aws.is_conditional_failure(exc):
                codes = tuple(
                    r.get("Code", "None") for r in getattr(exc, "response", {}).get("CancellationReasons", [])
                )
            else:
                raise
            if len(codes) != 2:
                raise
            if codes[0] == "ConditionalCheckFailed":
                existing = sessions.get(session.session_id)
                if existing is None:  # expired between the two calls; let the sender retry
                    raise
                raise SessionExists(existing) from None
            return Slot(False, day, limit, limit)
        # The sweeper publishes the day's share (DailyBudgetUsedPercent): no read here per ticket.
        return Slot(True, day, None, limit)

    def used(self, tz: tzinfo) -> int:
        return self._used_on(today(tz))

    def _used_on(self, day: str) -> int:
        resp = self.client.get_item(
            TableName=self.table, Key={"pk": {"S": f"sessions#{day}"}}, ConsistentRead=True
        )
        return int(resp.get("Item", {}).get("used", {}).get("N", "0"))

    def _take_args(self, day: str, limit: int) -> dict[str, Any]:
        expires = int((clock.now() + timedelta(days=_BUDGET_KEEP_DAYS)).timestamp())
        return {
            "TableName": self.table,
            "Key": {"pk": {"S": f"sessions#{day}"}},
            "UpdateExpression": "ADD used :one SET expires_at = :ttl, #limit = :max",
            "ConditionExpression": "attribute_not_exists(used) OR used < :max",
            "ExpressionAttributeNames": {"#limit": "limit"},
            "ExpressionAttributeValues": {
                ":one": {"N": "1"},
                ":max": {"N": str(limit)},
                ":ttl": {"N": str(expires)},
            },
        }


class DynamoTokenBudget(aws.DynamoTable):
    """Tokens of one session, on the session item (rules.budget.TokenBudget): a reservation is one
    conditional update; the outcome's commit settles them."""

    def reserve(self, session_id: str, tokens: int, limit: int) -> bool:
        if tokens > limit:
            return False
        try:
            self.client.update_item(
                TableName=self.table,
                Key=_session_key(session_id),
                UpdateExpression="ADD tokens_committed :n",
                ConditionExpression=(
                    "attribute_exists(pk) AND "
                    "(attribute_not_exists(tokens_committed) OR tokens_committed <= :room)"
                ),
                ExpressionAttributeValues={":n": {"N": str(tokens)}, ":room": {"N": str(limit - tokens)}},
            )
        except Exception as exc:
            if aws.is_conditional_failure(exc):
                return False
            raise
        return True
