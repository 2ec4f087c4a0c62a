"""The daily session budget counts each session exactly once, whatever the retries: the session and its
slot are one write, so a redelivered webhook, or a retry after intake died before queueing, takes none."""

from __future__ import annotations

import json
from datetime import UTC

import pytest
from support_agent.intake.service import IntakeService
from support_agent.models import AgentMessage, SessionState
from support_agent.rules.policy import load_policy
from support_agent_local.events import webhook_headers
from support_agent_local.memory import MemoryAuditLog, MemoryDailyBudget, MemoryQueue, MemorySessionStore

from tests.helpers import ROOT

SECRET = "generic-secret-value"


class Secrets:
    def get_json(self, name: str) -> dict[str, str]:
        return {"generic": SECRET}


class DiesOnSend(MemoryQueue):
    """Intake's queue, failing the first `failures` sends (the function dies before queueing)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def send(self, message: object) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("SQS unreachable")
        super().send(message)  # type: ignore[arg-type]


def service(queue: MemoryQueue, per_day: int = 500) -> tuple[IntakeService, MemoryDailyBudget]:
    policy = load_policy(ROOT / "policies" / "acme-support.yaml")
    policy.document.budget.max_sessions_per_day = per_day
    sessions = MemorySessionStore()
    audit = MemoryAuditLog(sessions=sessions)
    budget = MemoryDailyBudget(sessions, audit)
    intake = IntakeService(policy, sessions, budget, audit, queue, Secrets(), "webhooks")
    return intake, budget


def deliver(intake: IntakeService, event_id: str, queue: str = "tier-1") -> int:
    body = json.dumps(
        {
            "event_id": event_id,
            "ticket": {
                "queue": queue,
                "id": event_id,
                "subject": "Order?",
                "body": "Where is ORD-5001?",
                "requester": {"email": "jane.smith@example.com"},
            },
        }
    ).encode()
    try:
        return intake.receive("generic", webhook_headers("generic", SECRET, body), body).status
    except ConnectionError:
        return 500  # API Gateway's answer when the function fails: the sender delivers again


def test_a_redelivered_webhook_takes_no_second_slot():
    queue = MemoryQueue()
    intake, budget = service(queue)
    assert [deliver(intake, "evt-1") for _ in range(3)] == [202, 200, 200]
    assert budget.used(UTC) == 1
    # A queued session's start is sent again on each delivery (its message may be what was lost); the
    # agent's claim is a guarded move, so only one of them runs it.
    assert {(m.type, m.session_id) for m in queue.sent if isinstance(m, AgentMessage)} == {
        ("start", next(iter(intake.sessions.items)))  # type: ignore[attr-defined]
    }


def test_a_retry_after_intake_died_before_queueing_queues_it_once_and_counts_it_once():
    queue = DiesOnSend(failures=2)
    intake, budget = service(queue)
    assert [deliver(intake, "evt-1") for _ in range(3)] == [500, 500, 200]
    assert budget.used(UTC) == 1
    assert len(queue.sent) == 1


@pytest.mark.parametrize("per_day", [1, 2])
def test_no_slot_left_keeps_the_ticket_for_people_and_takes_nothing(per_day):
    queue = MemoryQueue()
    intake, budget = service(queue, per_day)
    statuses = [deliver(intake, f"evt-{i}") for i in range(per_day + 2)]
    assert statuses == [202] * (per_day + 2)
    assert budget.used(UTC) == per_day
    over = [s for s in intake.sessions.items.values() if s.state is SessionState.HANDOFF]  # type: ignore[attr-defined]
    assert len(over) == 2 and all(s.reason == "daily_budget_exhausted" for s in over)
    assert len(queue.sent) == per_day


def test_a_ticket_from_a_queue_the_policy_does_not_allow_is_kept_for_people_without_a_slot():
    queue = MemoryQueue()
    intake, budget = service(queue)
    assert deliver(intake, "evt-1", queue="vip") == 202
    (session,) = intake.sessions.items.values()  # type: ignore[attr-defined]
    assert (session.state, session.reason) == (SessionState.HANDOFF, "queue_not_allowed_by_policy")
    assert budget.used(UTC) == 0 and queue.sent == []
    assert deliver(intake, "evt-1", queue="vip") == 200  # a redelivery finds it, and queues nothing
    assert queue.sent == []
