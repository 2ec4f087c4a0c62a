"""Sessions: the states a ticket's run goes through, the allowed moves, and the store behind a port.

A session's id is derived from its source and the sender's event id, so creating it is also the
duplicate-delivery check: the second delivery of the same event finds the session already there.

A run holds a RUNNING session under a lease: an id, an expiry longer than one invocation can run, and the
work it is doing (`start`, `resume:<approval>`, …). A redelivered message for the same work takes the
session over once the lease has expired (its holder was killed); the outcome's commit is fenced by the
lease id, so a holder that lost its lease cannot commit. Leaving RUNNING removes the lease, so the
sessions index of leases (`ByLease`) holds exactly the running sessions, for the sweeper.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from support_agent import clock
from support_agent.models import PersonRequest, Session, SessionState, Ticket
from support_agent.rules.audit import AuditDraft

S = SessionState
TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    S.QUEUED: frozenset({S.RUNNING, S.HANDOFF}),
    # RUNNING → RUNNING is a takeover: a new lease replaces an expired one.
    S.RUNNING: frozenset({S.RUNNING, S.RESPONDED, S.AWAITING_APPROVAL, S.HANDOFF, S.CLOSED}),
    S.AWAITING_APPROVAL: frozenset({S.RUNNING, S.HANDOFF}),
    S.RESPONDED: frozenset({S.CLOSED}),
    S.HANDOFF: frozenset({S.CLOSED}),
    S.CLOSED: frozenset(),
}


class TransitionRefused(Exception):
    """The session was not in the state the caller expected (a duplicate or late message); nothing changed.

    `codes`: for a write of several items, each item's cancellation code ("ConditionalCheckFailed", "None").
    """

    def __init__(self, message: str, codes: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.codes = codes


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
    """A session as first stored. A queued one must be claimed within QUEUE_GRACE, or the sweeper sends its
    start message again (intake may have died between storing it and queueing it)."""
    now = clock.now()
    session = Session(
        session_id=session_id,
        ticket=ticket,
        state=state,
        created_at=clock.iso(now),
        updated_at=clock.iso(now),
        reason=reason,
    )
    if state is SessionState.QUEUED:
        session.lease_until = clock.iso(now + QUEUE_GRACE)
        session.lease_for = "queue"
    return session


def check_transition(expected: SessionState, new: SessionState) -> None:
    """Raise ValueError for a move the state machine of sessions does not have (a programming error)."""
    if new not in TRANSITIONS[expected]:
        raise ValueError(f"{expected.value} → {new.value} is not an allowed transition")


@dataclass(frozen=True)
class Lease:
    """A run's hold on a RUNNING session."""

    lease_id: str
    until: str
    work: str

    @classmethod
    def new(cls, work: str, seconds: float) -> Lease:
        return cls(uuid.uuid4().hex, clock.iso(clock.now() + timedelta(seconds=seconds)), work)

    def fields(self) -> dict[str, Any]:
        return {"lease_id": self.lease_id, "lease_until": self.until, "lease_for": self.work}


LEASE_FIELDS = ("lease_id", "lease_until", "lease_for")
# How long a queued session may wait to be claimed before the sweeper queues it again (a duplicate start is
# harmless: the claim is a guarded move). Longer than a backlog should ever be.
QUEUE_GRACE = timedelta(minutes=15)


@dataclass(frozen=True)
class Guard:
    """Conditions a move needs beyond the expected state (each one that is set must hold)."""

    approval_id: str | None = None  # the approval the session waits for
    lease_id: str | None = None  # the caller still holds the lease (fencing)
    lease_for: str | None = None  # the lease was taken for this work
    expired_at: str | None = None  # the lease ran out before this time (or there is none)

    def holds(self, session: Session) -> bool:
        """The same test the stores run as a condition, on a session in hand."""
        return (
            (self.approval_id is None or session.approval_id == self.approval_id)
            and (self.lease_id is None or session.lease_id == self.lease_id)
            and (self.lease_for is None or session.lease_for == self.lease_for)
            and (
                self.expired_at is None
                or session.lease_until is None
                or session.lease_until < self.expired_at
            )
        )


def moved_fields(new: SessionState, fields: dict[str, Any]) -> dict[str, Any]:
    """`fields` for a move to `new`: a session that stops running loses its lease."""
    if new is SessionState.RUNNING:
        return fields
    return {**dict.fromkeys(LEASE_FIELDS), **fields}


class SessionStore(Protocol):
    def create(self, session: Session) -> None:
        """Store a new session, or raise SessionExists with the one already stored."""
        ...

    def get(self, session_id: str) -> Session | None:
        """The session, read consistently, or None."""
        ...

    def transition(
        self,
        session_id: str,
        expected: SessionState,
        new: SessionState,
        guard: Guard | None = None,
        **fields: Any,
    ) -> Session:
        """Move expected → new in one guarded write, also setting `fields`; TransitionRefused otherwise."""
        ...

    def expired_leases(self, state: SessionState, before: str) -> list[str]:
        """Ids of the sessions in `state` (RUNNING, or QUEUED) whose lease ran out before `before`."""
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
    guard: Guard | None = None


class SessionCommitter(Protocol):
    """Writes one SessionChange as one transaction: all of it, or nothing (TransitionRefused)."""

    def commit(self, change: SessionChange) -> None: ...
