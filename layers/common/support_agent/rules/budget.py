"""Budgets: sessions per day (taken at intake) and tokens per session (charged by the agent), behind ports.

The DynamoDB implementations (rules.dynamodb) are single conditional updates, so they are exact however
many functions run at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo
from typing import Protocol

from support_agent import clock


@dataclass(frozen=True)
class Slot:
    granted: bool
    day: str
    used: int
    limit: int


def today(tz: tzinfo) -> str:
    """The budget day (ISO date) in the policy's time zone."""
    return clock.now().astimezone(tz).date().isoformat()


class DailyBudget(Protocol):
    def take(self, limit: int, tz: tzinfo) -> Slot:
        """Take one slot of today's budget if one is left; never goes over `limit`."""
        ...

    def used(self, tz: tzinfo) -> int:
        """Sessions taken today."""
        ...


class TokenBudget(Protocol):
    def charge(self, session_id: str, tokens: int, limit: int) -> int | None:
        """Add `tokens` if the session's total stays within `limit`; the new total, or None if refused."""
        ...

    def record_overrun(self, session_id: str, tokens: int) -> int:
        """Record tokens already spent even past the limit (the trail must show what was used)."""
        ...
