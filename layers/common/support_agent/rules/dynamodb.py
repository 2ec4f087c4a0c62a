"""DynamoDB implementations of the shared rules' ports: sessions, requests for people, audit, budgets,
and the session commit that writes a state change, its request and its audit entries in one transaction.

Sessions and requests share the sessions table (pk SESSION#id / APPROVAL#id, sk = kind); the audit table
is keyed (session_id, seq) and written with conditional puts only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta, tzinfo
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter

from support_agent import aws, clock
from support_agent.models import Decision, PersonRequest, Session, SessionState, StoredRequest
from support_agent.rules.approvals import AlreadyDecided, status_after
from support_agent.rules.audit import GENESIS, AuditDraft, AuditEntry, chain
from support_agent.rules.budget import Slot, today
from support_agent.rules.sessions import (
    SessionChange,
    SessionExists,
    TransitionRefused,
    check_transition,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# DynamoDB's limit of items in one TransactWriteItems call.
MAX_TRANSACTION_ITEMS = 100
_BUDGET_KEEP_DAYS = 35
_REQUEST: TypeAdapter[PersonRequest] = TypeAdapter(StoredRequest)


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

    def __init__(self, table: str, ttl_days: int = 90, client: DynamoDBClient | None = None) -> None:
        super().__init__(table, client)
        self.ttl_days = ttl_days

    def create(self, session: Session) -> None:
        expires = int((clock.now() + timedelta(days=self.ttl_days)).timestamp())
        item = {
            **_session_key(session.session_id),
            **aws.to_item({**session.model_dump(mode="json"), "expires_at": expires}),
        }
        try:
            self.client.put_item(
                TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(pk)"
            )
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
        return Session.model_validate(aws.record(item)) if item else None

    def transition(
        self, session_id: str, expected: SessionState, new: SessionState, **fields: Any
    ) -> Session:
        try:
            resp = self.client.update_item(
                TableName=self.table,
                ReturnValues="ALL_NEW",
                **self._transition_args(session_id, expected, new, fields),
            )
        except Exception as exc:
            if aws.is_conditional_failure(exc):
                raise TransitionRefused(f"session {session_id} is not {expected.value}") from None
            raise
        return Session.model_validate(aws.record(resp["Attributes"]))

    def transition_item(self, change: SessionChange) -> dict[str, Any]:
        """The change's guarded move as a TransactWriteItems entry."""
        args = self._transition_args(change.session_id, change.expected, change.new, change.fields)
        return {"Update": {"TableName": self.table, **args}}

    def _transition_args(
        self, session_id: str, expected: SessionState, new: SessionState, fields: dict[str, Any]
    ) -> dict[str, Any]:
        check_transition(expected, new)
        values = {k: _jsonable(v) for k, v in {**fields, "state": new, "updated_at": clock.iso()}.items()}
        args = aws.set_fields(values, "attribute_exists(pk) AND #state = :expected")
        args["ExpressionAttributeNames"]["#state"] = "state"
        args.setdefault("ExpressionAttributeValues", {})[":expected"] = {"S": expected.value}
        return {"Key": _session_key(session_id), **args}


class DynamoApprovalStore(aws.DynamoTable):
    """Approvals and handoff notices in the sessions table; the task token stays here, never in Slack."""

    def put_item(self, request: PersonRequest) -> dict[str, Any]:
        """The create as a TransactWriteItems entry (written with the session's state change)."""
        item = {**_request_key(request.request_id), **aws.to_item(request.model_dump(mode="json"))}
        return {
            "Put": {"TableName": self.table, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}
        }

    def get(self, request_id: str) -> PersonRequest | None:
        key = _request_key(request_id)
        item = self.client.get_item(TableName=self.table, Key=key, ConsistentRead=True).get("Item")
        return _request(item) if item else None

    def task_token(self, approval_id: str) -> str | None:
        item = self.client.get_item(
            TableName=self.table,
            Key=_request_key(approval_id),
            ConsistentRead=True,
            ProjectionExpression="task_token",
        ).get("Item")
        return item["task_token"]["S"] if item and "task_token" in item else None

    def update(self, request_id: str, **fields: Any) -> PersonRequest:
        resp = self.client.update_item(
            TableName=self.table,
            Key=_request_key(request_id),
            ReturnValues="ALL_NEW",
            **aws.set_fields(fields),
        )
        return _request(resp["Attributes"])

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
        return _request(resp["Attributes"])


def _request(item: dict[str, Any]) -> PersonRequest:
    return _REQUEST.validate_python(aws.record(item, drop=frozenset({"task_token"})))


class DynamoAuditLog(aws.DynamoTable):
    """Audit chains in the audit table, written with conditional puts only (never an update or delete)."""

    def __init__(self, table: str, client: DynamoDBClient | None = None) -> None:
        super().__init__(table, client)
        # Last (seq, hash) written per session by this process: saves a read per append within one invocation.
        self._heads: dict[str, tuple[int, str]] = {}

    def append(
        self, session_id: str, drafts: list[AuditDraft], *, new_chain: bool = False
    ) -> list[AuditEntry]:
        if new_chain:
            self._heads[session_id] = (0, GENESIS)
        return self.write(session_id, drafts)

    def write(
        self, session_id: str, drafts: list[AuditDraft], with_items: list[dict[str, Any]] | None = None
    ) -> list[AuditEntry]:
        """Append `drafts` together with `with_items` (a state change, a request) in one transaction.

        Past DynamoDB's 100-item limit the earliest entries go first in transactions of their own: an entry
        may then exist without the state change it precedes, never a state change without its entries.
        Raises TransitionRefused when one of `with_items` fails its condition (nothing of the last
        transaction is written then).
        """
        extra = with_items or []
        room = MAX_TRANSACTION_ITEMS - len(extra)
        while len(drafts) > room:
            self._write_once(session_id, drafts[:MAX_TRANSACTION_ITEMS], [])
            drafts = drafts[MAX_TRANSACTION_ITEMS:]
        return self._write_once(session_id, drafts, extra) if drafts or extra else []

    def _write_once(
        self, session_id: str, drafts: list[AuditDraft], extra: list[dict[str, Any]]
    ) -> list[AuditEntry]:
        for _attempt in range(8):
            entries = chain(session_id, self._heads.get(session_id) or self._read_head(session_id), drafts)
            writes = [*(self._put(e) for e in entries), *extra]
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
                if any(c == "ConditionalCheckFailed" for c in codes[len(entries) :]):
                    raise TransitionRefused(f"a state change for {session_id} was refused") from None
                self._heads.pop(session_id, None)  # another writer appended: read the head again
                continue
            if entries:
                self._heads[session_id] = (entries[-1].seq, entries[-1].hash)
            return entries
        raise RuntimeError(f"audit append for {session_id} lost the race 8 times")

    def _put(self, entry: AuditEntry) -> dict[str, Any]:
        item = aws.to_item({**entry.model_dump(), "details": json.dumps(entry.details, sort_keys=True)})
        return {
            "Put": {"TableName": self.table, "Item": item, "ConditionExpression": "attribute_not_exists(seq)"}
        }

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
        while True:
            resp = getattr(self.client, operation)(**kwargs)
            for item in resp.get("Items", []):
                data = aws.from_item(item)
                data["details"] = json.loads(data.get("details") or "{}")
                yield AuditEntry.model_validate(data)
            if "LastEvaluatedKey" not in resp:
                return
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


class DynamoSessionCommitter:
    """One outcome, one transaction: the session's move, the request it creates, and its audit entries."""

    def __init__(
        self, sessions: DynamoSessionStore, approvals: DynamoApprovalStore, audit: DynamoAuditLog
    ) -> None:
        self.sessions = sessions
        self.approvals = approvals
        self.audit = audit

    def commit(self, change: SessionChange) -> None:
        items = [self.sessions.transition_item(change)]
        if change.request is not None:
            items.append(self.approvals.put_item(change.request))
        self.audit.write(change.session_id, change.entries, items)


class DynamoDailyBudget(aws.DynamoTable):
    """Counter of sessions started per day (a day in the policy's time zone, UTC by default)."""

    def take(self, limit: int, tz: tzinfo) -> Slot:
        day = today(tz)
        expires = int((clock.now() + timedelta(days=_BUDGET_KEEP_DAYS)).timestamp())
        try:
            resp = self.client.update_item(
                TableName=self.table,
                Key={"pk": {"S": f"sessions#{day}"}},
                UpdateExpression="ADD used :one SET expires_at = :ttl, #limit = :max",
                ConditionExpression="attribute_not_exists(used) OR used < :max",
                ExpressionAttributeNames={"#limit": "limit"},
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":max": {"N": str(limit)},
                    ":ttl": {"N": str(expires)},
                },
                ReturnValues="UPDATED_NEW",
            )
        except Exception as exc:
            if aws.is_conditional_failure(exc):
                return Slot(False, day, limit, limit)
            raise
        return Slot(True, day, int(resp["Attributes"]["used"]["N"]), limit)

    def used(self, tz: tzinfo) -> int:
        resp = self.client.get_item(
            TableName=self.table, Key={"pk": {"S": f"sessions#{today(tz)}"}}, ConsistentRead=True
        )
        return int(resp.get("Item", {}).get("used", {}).get("N", "0"))


class DynamoTokenBudget(aws.DynamoTable):
    """Tokens spent by one session, kept on the session item."""

    def charge(self, session_id: str, tokens: int, limit: int) -> int | None:
        if tokens > limit:
            return None
        try:
            resp = self.client.update_item(
                TableName=self.table,
                Key=_session_key(session_id),
                UpdateExpression="ADD tokens_used :n",
                ConditionExpression=(
                    "attribute_exists(pk) AND (attribute_not_exists(tokens_used) OR tokens_used <= :room)"
                ),
                ExpressionAttributeValues={":n": {"N": str(tokens)}, ":room": {"N": str(limit - tokens)}},
                ReturnValues="UPDATED_NEW",
            )
        except Exception as exc:
            if aws.is_conditional_failure(exc):
                return None
            raise
        return int(resp["Attributes"]["tokens_used"]["N"])

    def record_overrun(self, session_id: str, tokens: int) -> int:
        resp = self.client.update_item(
            TableName=self.table,
            Key=_session_key(session_id),
            UpdateExpression="ADD tokens_used :n",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={":n": {"N": str(tokens)}},
            ReturnValues="UPDATED_NEW",
        )
        return int(resp["Attributes"]["tokens_used"]["N"])
