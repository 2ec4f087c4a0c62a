"""The sweeper, run on a schedule, finds what nothing else will finish:

- sessions still RUNNING after their lease ran out (the run holding them was killed: a Lambda timeout, an
  out-of-memory, a crash between two writes): each goes to AgentStep as a `sweep` message, which takes
  the lease over and hands the ticket to people;
- sessions still QUEUED long after intake stored them (intake died between storing and queueing, and the
  sender did not retry): their `start` message is sent again (a duplicate start is skipped by the claim).

The count of the first kind is the `SessionsStuck` metric (0 included, so the alarm clears). Each run
also reads today's session count for the `DailyBudgetUsedPercent` gauge, so intake does not read it back
for every ticket.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from support_agent import clock
from support_agent.messaging import Queue
from support_agent.models import AgentMessage, SessionState
from support_agent.rules.budget import DailyBudget
from support_agent.rules.policy import Policy
from support_agent.rules.sessions import SessionStore


@dataclass(frozen=True)
class Swept:
    stuck: list[str] = field(default_factory=list)  # running past their lease: handed to people
    requeued: list[str] = field(default_factory=list)  # queued past their grace: started again
    budget_used_percent: float = 0.0  # today's sessions, in percent of max_sessions_per_day
    # Found, but its message could not be sent (the queue refused): found again by the next run, and a
    # stuck one keeps SessionsStuck above zero until then.
    unsent: list[str] = field(default_factory=list)


@dataclass
class Sweeper:
    sessions: SessionStore
    queue: Queue
    budget: DailyBudget
    policy: Policy

    def sweep(self, now: datetime | None = None) -> Swept:
        """Send a message for every session whose lease (or queue grace) ran out before `now`."""
        before = clock.iso(now)
        swept = Swept(
            self.sessions.expired_leases(SessionState.RUNNING, before),
            self.sessions.expired_leases(SessionState.QUEUED, before),
            self._budget_used_percent(),
        )
        messages = [AgentMessage(type="sweep", session_id=s) for s in swept.stuck] + [
            AgentMessage(type="start", session_id=s) for s in swept.requeued
        ]
        for message in messages:
            # One refused send must not keep the others from going out.
            try:
                self.queue.send(message)
            except Exception:
                swept.unsent.append(message.session_id)
        return swept

    def _budget_used_percent(self) -> float:
        limit = self.policy.budget.max_sessions_per_day
        return round(100 * self.budget.used(self.policy.timezone) / limit, 1) if limit else 100.0
