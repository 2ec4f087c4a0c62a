"""Sessions in DynamoDB, with explicit state transitions written as conditional updates.

A session's id is derived from its source and the sender's event id, so creating it is also the
duplicate-delivery check: the second delivery of the same event finds the session already there.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from support_agent import aws, clock
from support_agent.models import Session, SessionState, Ticket

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

S = SessionState
TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    S.QUEUED: frozenset({S.RUNNING, S.HANDOFF}),
    S.RUNNING: frozenset({S.RESPONDED, S.AWAITING_APPROVAL, S.HANDOFF, S.CLOSED}),
    S.AWAITING_APPROVAL: frozenset({S.RUNNING, S.HANDOFF}),
    S.RESPONDED: frozenset({S.CLOSED}),
    S.HANDOFF: frozenset({S.CLOSED}),
    S.CLOSED: frozenset(),
}


class TransitionRefused(Exception):
    """The session was not in the state the caller expected (a duplicate or late message)."""


class SessionExists(Exception):
    """A session for this delivery already exists; carries it."""

    def __init__(self, session: Session) -> None:
        super().__init__(session.session_id)
        self.session = session


def session_id_for(source: str, event_id: str) -> str:
    """Stable session id for one delivery of one event from one source."""
    digest = hashlib.sha256(f"{source}\x00{event_id}".encode()).hexdigest()
    return f"ses_{digest[:24]}"


def _key(session_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"SESSION#{session_id}"}, "sk": {"S": "SESSION"}}


class SessionRepository(aws.DynamoTable):
    """Create, read and move sessions."""

    def __init__(self, table: str, ttl_days: int = 90, client: DynamoDBClient | None = None) -> None:
        super().__init__(table, client)
        self.ttl_days = ttl_days

    def create(
        self, session_id: str, ticket: Ticket, state: SessionState, reason: str | None = None
    ) -> Session:
        """Create the session, or raise SessionExists with the one already stored."""
        now = clock.iso()
        session = Session(
            session_id=session_id, ticket=ticket, state=state, created_at=now, updated_at=now, reason=reason
        )
        expires = int((clock.now() + timedelta(days=self.ttl_days)).timestamp())
        item = {**_key(session_id), **aws.to_item({**session.model_dump(mode="json"), "expires_at": expires})}
        try:
            self.client.put_item(
                TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(pk)"
            )
        except Exception as exc:
            if not aws.is_conditional_failure(exc):
                raise
            existing = self.get(session_id)
            if existing is None:  # expired between the two calls; let the caller retry
                raise
            raise SessionExists(existing) from None
        return session

    def get(self, session_id: str) -> Session | None:
        """The session, read consistently, or None."""
        resp = self.client.get_item(TableName=self.table, Key=_key(session_id), ConsistentRead=True)
        item = resp.get("Item")
        return _session(item) if item else None

    def transition(
        self, session_id: str, expected: SessionState, new: SessionState, **fields: Any
    ) -> Session:
        """Move expected → new in one conditional write, also setting `fields`; refuses otherwise."""
        if new not in TRANSITIONS[expected]:
            raise ValueError(f"{expected.value} → {new.value} is not an allowed transition")
        return self.update(session_id, expected, state=new, **fields)

    def transition_item(
        self, session_id: str, expected: SessionState, new: SessionState, **fields: Any
    ) -> dict[str, Any]:
        """The same guarded transition as `transition`, as an item for a TransactWriteItems call."""
        if new not in TRANSITIONS[expected]:
            raise ValueError(f"{expected.value} → {new.value} is not an allowed transition")
        return {
            "Update": {
                "TableName": self.table,
                **self._update_args(session_id, expected, state=new, **fields),
            }
        }

    def _update_args(self, session_id: str, expected: SessionState, **fields: Any) -> dict[str, Any]:
        fields["updated_at"] = clock.iso()
        names = {f"#f{i}": name for i, name in enumerate(fields)}
        values = aws.to_item({f":v{i}": _jsonable(v) for i, v in enumerate(fields.values())})
        sets = ", ".join(f"#f{i} = :v{i}" for i in range(len(fields)) if f":v{i}" in values)
        removes = ", ".join(f"#f{i}" for i in range(len(fields)) if f":v{i}" not in values)
        return {
            "Key": _key(session_id),
            "UpdateExpression": f"SET {sets}" + (f" REMOVE {removes}" if removes else ""),
            "ConditionExpression": "attribute_exists(pk) AND #state = :expected",
            "ExpressionAttributeNames": {**names, "#state": "state"},
            "ExpressionAttributeValues": {**values, ":expected": {"S": expected.value}},
        }

    def update(self, session_id: str, expected: SessionState, **fields: Any) -> Session:
        """Set fields on a session that is still in `expected` state (a guarded write)."""
        try:
            resp = self.client.update_item(
                TableName=self.table,
                ReturnValues="ALL_NEW",
                **self._update_args(session_id, expected, **fields),
            )
        except Exception as exc:
            if aws.is_conditional_failure(exc):
                raise TransitionRefused(f"session {session_id} is not {expected.value}") from None
            raise
        return _session(resp["Attributes"])


def _jsonable(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, SessionState):
        return value.value
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _session(item: dict[str, Any]) -> Session:
    data = aws.from_item(item)
    for key in ("pk", "sk", "expires_at"):
        data.pop(key, None)
    return Session.model_validate(data)
