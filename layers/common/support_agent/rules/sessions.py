"""Sessions: the states a ticket's run goes through, the allowed moves, and the store behind a port.

A session's id is derived from its source and the sender's event id, so creating it is also the
duplicate-delivery check: the second delivery of the same event finds the session already there.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Protocol

from support_agent import clock
from support_agent.models import PersonRequest, Session, SessionState, Ticket
from support_agent.rules.audit import AuditDraft

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
    """The session was not in the state the caller expected (a duplicate or late message); nothing changed."""


class SessionExists(Exception):
    """A session for this delivery already exists; carries it."""

    def __init__(self, session: Session) -> None:
        super().__init__(session.session_id)
        self.session = session


SESSION_PREFIX = "ses_"  # other audit chains (intake's rejections) have no session record


def session_id_for(source: str, event_id: str) -> str:
    """Stable session id for one delivery of one event from one source."""
    digest = hashlib.sha256(f"{source}\x00{event_id}".encode()).hexdigest()
    return f"{SESSION_PREFIX}{digest[:24]}"


def new_session(session_id: str, ticket: Ticket, state: SessionState, reason: str | None = None) -> Session:
    """A session as first stored."""
    now = clock.iso()
    return Session(
        session_id=session_id, ticket=ticket, state=state, created_at=now, updated_at=now, reason=reason
    )


def check_transition(expected: SessionState, new: SessionState) -> None:
    """Raise ValueError for a move the state machine of sessions does not have (a programming error)."""
    if new not in TRANSITIONS[expected]:
        raise ValueError(f"{expected.value} → {new.value} is not an allowed transition")


class SessionStore(Protocol):
    def create(self, session: Session) -> None:
        """Store a new session, or raise SessionExists with the one already stored."""
        ...

    def get(self, session_id: str) -> Session | None:
        """The session, read consistently, or None."""
        ...

    def transition(
        self, session_id: str, expected: SessionState, new: SessionState, **fields: Any
    ) -> Session:
        """Move expected → new in one guarded write, also setting `fields`; TransitionRefused otherwise."""
        ...


@dataclass(frozen=True)
class SessionChange:
    """One outcome of a session: its move, the request for people it creates (if any), and its audit entries."""

    session_id: str
    expected: SessionState
    new: SessionState
    entries: list[AuditDraft]
    fields: dict[str, Any] = field(default_factory=dict)
    request: PersonRequest | None = None


class SessionCommitter(Protocol):
    """Writes one SessionChange as one transaction: all of it, or nothing (TransitionRefused)."""

    def commit(self, change: SessionChange) -> None: ...
