"""Budgets: sessions per day (taken at intake) and tokens per session (reserved and settled by the agent),
behind ports.

The DynamoDB implementations (rules.dynamodb) are single conditional updates, so they are exact however
many functions run at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import tzinfo
from typing import TYPE_CHECKING, Protocol

from support_agent import clock
from support_agent.models import Session

if TYPE_CHECKING:
    from support_agent.rules.audit import AuditDraft


@dataclass(frozen=True)
class Slot:
    granted: bool
    day: str
    used: int | None  # None when the write that took it returns nothing (a transaction)
    limit: int


def today(tz: tzinfo) -> str:
    """The budget day (ISO date) in the policy's time zone."""
    return clock.now().astimezone(tz).date().isoformat()


class DailyBudget(Protocol):
    def take(self, limit: int, tz: tzinfo) -> Slot:
        """Take one slot of today's budget if one is left; never goes over `limit`."""
        ...

    def open(self, session: Session, limit: int, tz: tzinfo, entries: Sequence[AuditDraft] = ()) -> Slot:
        """Store a new session, take its slot of today's budget and start its audit chain with `entries`,
        in one write, so a session is counted exactly once whatever the retries. SessionExists (nothing
        taken) for a duplicate; nothing is stored when no slot is left (Slot.granted False)."""
        ...

    def used(self, tz: tzinfo) -> int:
        """Sessions taken today."""
        ...


class TokenBudget(Protocol):
    """Tokens per session, reserved before model calls and settled by the outcome's commit.

    The session keeps two counters: `tokens_used` (what calls really used) and `tokens_committed` (used
    plus what runs have reserved). A reservation is granted only while `tokens_committed` stays within the
    limit, and a call never uses more than it reserved, so the limit holds however runs interleave. The
    outcome's commit sets both counters to the tokens used (the run holds the session's lease, so it is
    the only writer); a run killed mid-call leaves its reservation counted, which errs on the side of less
    spending, until the run that takes the session over commits.
    """

    def reserve(self, session_id: str, tokens: int, limit: int) -> bool:
        """Reserve `tokens` if the session's committed total stays within `limit`."""
        ...
