"""Every ticket ends answered or with a person: leases, takeovers, the sweeper, errors after a claim,
stop reasons, the time left, and resumes that are not the awaited one — on the in-memory fakes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from support_agent import clock
from support_agent.agent.llm import AnthropicProvider, ModelRequest, ModelResponse, ReplayProvider
from support_agent.agent.offline import OfflineProvider
from support_agent.agent.sweeper import Sweeper
from support_agent.agent.tools import HUMAN_GROUP
from support_agent.models import AgentMessage, Decision, SessionState
from support_agent.rules.audit import verify
from support_agent.rules.sessions import TransitionRefused
from support_agent_local.memory import MemoryDailyBudget, MemoryWorld

from tests.unit.test_agent_core import CLASSIFY, POLICY, REFUND, decide, msg, use, waiting_approval

ORDER = "Where is my order ORD-5001? It has been a week."


class Killed(BaseException):
    """What Lambda does to a run at its timeout: nothing after it runs, no handler catches it."""


class DiesOnTheModelCall:
    name = "dies"

    def create(self, request: ModelRequest) -> ModelResponse:
        raise Killed


class Broken:
    name = "broken"

    def create(self, request: ModelRequest) -> ModelResponse:
        raise RuntimeError("the provider's client is misconfigured")


@pytest.fixture
def world() -> MemoryWorld:
    return MemoryWorld(POLICY)


def later(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Move the clock forward."""
    moved = clock.now() + timedelta(seconds=seconds)
    monkeypatch.setattr(clock, "now", lambda: moved)


def killed_while_running(world: MemoryWorld, sid: str) -> None:
    with pytest.raises(Killed):
        world.runner(DiesOnTheModelCall()).start(sid)
    session = world.sessions.get(sid)
    assert session.state is SessionState.RUNNING and session.lease_for == "start"


def test_a_claim_holds_a_lease_that_every_outcome_releases(world):
    sid = world.ticket(ORDER, subject="Order status")
    assert world.runner(OfflineProvider()).start(sid).outcome == "respond"
    session = world.sessions.get(sid)
    assert session.state is SessionState.RESPONDED
    assert (session.lease_id, session.lease_until, session.lease_for) == (None, None, None)


def test_a_killed_run_is_taken_over_by_its_redelivery_once_the_lease_has_run_out(world, monkeypatch):
    sid = world.ticket(ORDER, subject="Order status")
    killed_while_running(world, sid)
    runner = world.runner(OfflineProvider())
    # While the lease holds, a redelivery cannot tell a dead run from a slow one: it leaves it alone.
    assert runner.start(sid).outcome == "skipped"
    later(monkeypatch, 361)
    assert runner.start(sid).outcome == "respond"
    assert ("session:take_over", "running") in world.audit.actions(sid)
    assert len(world.helpdesk.public_replies("generic:T-1")) == 1
    assert verify(world.audit, sid).ok


def test_a_run_that_lost_its_lease_cannot_write_its_outcome(world, monkeypatch):
    sid = world.ticket(ORDER, subject="Order status")

    class Overtaken:
        """A run so slow that its lease runs out and a redelivery finishes the ticket meanwhile."""

        name = "slow"

        def __init__(self) -> None:
            self.inner = OfflineProvider()
            self.calls = 0

        def create(self, request: ModelRequest) -> ModelResponse:
            self.calls += 1
            if self.calls == 1:
                later(monkeypatch, 361)
                assert world.runner(OfflineProvider()).start(sid).outcome == "respond"
            return self.inner.create(request)

    result = world.runner(Overtaken()).start(sid)
    assert result.outcome == "skipped" and "taken over" in result.reason
    assert world.sessions.get(sid).state is SessionState.RESPONDED
    # The reply is keyed by the session: the zombie's reply did not reach the customer a second time.
    assert len(world.helpdesk.public_replies("generic:T-1")) == 1


def test_the_sweeper_hands_a_session_stuck_past_its_lease_to_people(world, monkeypatch):
    stuck = world.ticket(ORDER, subject="Order status")
    killed_while_running(world, stuck)
    sweeper = Sweeper(world.sessions, world.agent_queue, MemoryDailyBudget(), world.policy)
    assert sweeper.sweep().stuck == []  # within its lease
    later(monkeypatch, 361)
    assert sweeper.sweep().stuck == [stuck]
    (message,) = world.agent_queue.sent
    assert isinstance(message, AgentMessage) and message.type == "sweep"
    result = world.runner(OfflineProvider()).handle(message)
    assert (result.outcome, result.reason) == ("handoff", "run_interrupted")
    session = world.sessions.get(stuck)
    assert session.state is SessionState.HANDOFF and session.lease_until is None
    assert world.helpdesk.tickets["generic:T-1"]["assignee"] == HUMAN_GROUP
    assert sweeper.sweep().stuck == []
    # A second sweep message (two sweeper runs) finds nothing to do.
    assert world.runner(OfflineProvider()).handle(message).outcome == "skipped"


def test_an_error_after_the_claim_ends_with_people_not_running(world):
    sid = world.ticket(ORDER, subject="Order status")
    result = world.runner(Broken()).start(sid)
    assert (result.outcome, result.reason) == ("handoff", "internal_error")
    session = world.sessions.get(sid)
    assert session.state is SessionState.HANDOFF and session.lease_until is None
    assert ("session:error", "failed") in world.audit.actions(sid)
    notes = [c.body for c in world.helpdesk.comments["generic:T-1"] if not c.public]
    assert "misconfigured" in notes[-1]


def test_when_even_the_handoff_fails_the_redelivery_takes_over_and_finishes(world, monkeypatch):
    sid = world.ticket(ORDER, subject="Order status")
    world.commits.fail_next = 1  # the handoff's commit: DynamoDB is down as well
    with pytest.raises(TransitionRefused):
        world.runner(Broken()).start(sid)
    assert world.sessions.get(sid).state is SessionState.RUNNING
    later(monkeypatch, 361)
    assert world.runner(OfflineProvider()).start(sid).outcome == "respond"


def test_a_stale_resume_cannot_take_the_session_waiting_for_another_approval(world):
    sid = world.ticket(REFUND, subject="Refund for March")
    first = use(
        "issue_refund", "toolu_1", invoice_id="in_jane_2026_03", amount_cents=5000, reason="outage credit"
    )
    second = use(
        "issue_refund", "toolu_2", invoice_id="in_jane_2026_03", amount_cents=4000, reason="rest of it"
    )
    reply = use("reply_to_customer", "toolu_3", body="We refunded $90 in two parts.", status="solved")
    provider = ReplayProvider([msg(CLASSIFY, first), msg(second), msg(reply)])
    runner = world.runner(provider)
    assert runner.start(sid).outcome == "approval"
    a = decide(world, waiting_approval(world, sid), Decision(kind="approve", by="U1", by_name="lee"))
    assert runner.resume(sid, a.approval_id, a.decision).outcome == "approval"
    b = waiting_approval(world, sid)
    assert b.approval_id != a.approval_id
    # A redelivered resume of A: the session waits for B, so nothing runs and nothing moves.
    stale = runner.resume(sid, a.approval_id, a.decision)
    assert stale.outcome == "skipped" and a.approval_id in stale.reason
    assert world.sessions.get(sid).state is SessionState.AWAITING_APPROVAL
    assert runner.expire(sid, a.approval_id).outcome == "skipped"
    assert sorted(r.amount_cents for r in world.customers.refunds.values()) == [5000]
    b = decide(world, b, Decision(kind="approve", by="U1", by_name="lee"))
    assert runner.resume(sid, b.approval_id, b.decision).outcome == "respond"
    assert sorted(r.amount_cents for r in world.customers.refunds.values()) == [4000, 5000]


RESET = use("send_password_reset", "toolu_r")


@pytest.mark.parametrize(
    ("responses", "reason"),
    [
        ([msg(RESET, stop="max_tokens"), msg(RESET, stop="max_tokens")], "model_output_truncated"),
        ([msg({"type": "text", "text": "I can't help with that."}, stop="refusal")], "model_refused"),
        ([msg(RESET, stop="model_context_window_exceeded")], "model_stopped"),
    ],
)
def test_a_turn_that_did_not_end_cleanly_runs_nothing(world, responses, reason):
    sid = world.ticket("I forgot my password, please send a reset link.", subject="Password")
    provider = ReplayProvider(responses)
    result = world.runner(provider).start(sid)
    assert (result.outcome, result.reason) == ("handoff", reason)
    assert world.customers.resets == []
    if reason == "model_output_truncated":  # asked again once, with twice the room
        assert [r.max_tokens for r in provider.requests] == [1500, 3000]


def test_a_truncated_turn_asked_again_with_room_goes_on(world):
    sid = world.ticket("I forgot my password, please send a reset link.", subject="Password")
    reply = use("reply_to_customer", "toolu_2", body="A reset link is on its way.", status="solved")
    provider = ReplayProvider([msg(RESET, stop="max_tokens"), msg(RESET), msg(reply)])
    assert world.runner(provider).start(sid).outcome == "respond"
    assert len(world.customers.resets) == 1


def test_a_paused_turn_is_sent_back_and_continued(world):
    sid = world.ticket("I forgot my password, please send a reset link.", subject="Password")
    paused = msg({"type": "text", "text": "Let me look into this."}, stop="pause_turn")
    reply = use("reply_to_customer", "toolu_2", body="A reset link is on its way.", status="solved")
    provider = ReplayProvider([paused, msg(RESET), msg(reply)])
    assert world.runner(provider).start(sid).outcome == "respond"
    # The second request ends with the paused turn as it was; the continuation joined that same turn.
    assert provider.requests[1].messages[-1]["content"] == paused["content"]
    assert [m["role"] for m in provider.requests[2].messages] == ["user", "assistant", "user"]


def test_too_little_time_left_for_a_model_call_hands_off_before_the_call(world):
    sid = world.ticket(ORDER, subject="Order status")
    provider = ReplayProvider([])
    runner = world.runner(provider)
    runner.loop.remaining = lambda: 45.0  # one call may take 30 s, and the outcome needs 20 s
    result = runner.start(sid)
    assert (result.outcome, result.reason) == ("handoff", "out_of_time")
    assert provider.requests == []


@pytest.mark.parametrize(
    ("seconds", "retries"), [(None, 3), (45.0, 0), (68.0, 1), (105.0, 1), (106.0, 2), (144.0, 3), (900.0, 3)]
)
def test_the_sdk_retries_only_as_often_as_the_time_left_allows(seconds, retries):
    provider = AnthropicProvider(client=None, model="claude-test", timeout=30.0, max_retries=3)
    assert provider.retries_within(seconds) == retries


def test_lease_fields_survive_a_round_trip_through_the_models():
    data: dict[str, Any] = {"lease_id": "x", "lease_until": "2026-01-01T00:00:00.000Z", "lease_for": "start"}
    world = MemoryWorld(POLICY)
    sid = world.ticket(ORDER)
    session = world.sessions.transition(sid, SessionState.QUEUED, SessionState.RUNNING, **data)
    assert (session.lease_id, session.lease_until, session.lease_for) == tuple(data.values())
    running = SessionState.RUNNING
    assert world.sessions.expired_leases(running, "2026-01-01T00:00:00.001Z") == [sid]
    assert world.sessions.expired_leases(running, "2026-01-01T00:00:00.000Z") == []


def test_a_queued_session_never_started_is_started_again_by_the_sweeper(world, monkeypatch):
    # Intake stored the session and died before queueing it; the sender did not retry.
    sid = world.ticket(ORDER, subject="Order status")
    sweeper = Sweeper(world.sessions, world.agent_queue, MemoryDailyBudget(), world.policy)
    assert sweeper.sweep().requeued == []
    later(monkeypatch, 15 * 60 + 1)
    swept = sweeper.sweep()
    assert (swept.stuck, swept.requeued) == ([], [sid])
    (message,) = world.agent_queue.sent
    assert world.runner(OfflineProvider()).handle(message).outcome == "respond"
    assert sweeper.sweep().requeued == []  # claimed: the queue grace is gone with the lease fields


def test_an_expiry_that_arrives_after_a_persons_decision_does_nothing(world):
    sid = world.ticket(REFUND, subject="Refund for March")
    runner = world.runner(OfflineProvider())
    assert runner.start(sid).outcome == "approval"
    approval = decide(world, waiting_approval(world, sid), Decision(kind="approve", by="U1", by_name="lee"))
    late = runner.expire(sid, approval.approval_id)
    assert late.outcome == "skipped" and "approve" in late.reason
    assert world.sessions.get(sid).state is SessionState.AWAITING_APPROVAL
    assert runner.resume(sid, approval.approval_id, approval.decision).outcome == "respond"


def test_the_sweeper_publishes_the_share_of_the_daily_budget_used(world):
    budget = MemoryDailyBudget()
    world.policy.document.budget.max_sessions_per_day = 8
    sweeper = Sweeper(world.sessions, world.agent_queue, budget, world.policy)
    assert sweeper.sweep().budget_used_percent == 0.0
    for _ in range(3):
        budget.take(8, world.policy.timezone)
    assert sweeper.sweep().budget_used_percent == 37.5


def test_a_refused_send_does_not_keep_the_sweeper_from_the_others(world, monkeypatch):
    first, second = world.ticket(ORDER, subject="Order one"), world.ticket(ORDER, subject="Order two")
    killed_while_running(world, first)
    killed_while_running(world, second)
    later(monkeypatch, 361)
    sent = world.agent_queue.send
    refused = [True]

    def flaky(message: object) -> None:
        if refused.pop() if refused else False:
            raise ConnectionError("SQS down")
        sent(message)  # type: ignore[arg-type]

    monkeypatch.setattr(world.agent_queue, "send", flaky)
    swept = Sweeper(world.sessions, world.agent_queue, MemoryDailyBudget(), world.policy).sweep()
    assert sorted(swept.stuck) == sorted([first, second]) and len(swept.unsent) == 1
    assert [m.session_id for m in world.agent_queue.sent] == [s for s in swept.stuck if s not in swept.unsent]
    # The next run finds the unsent one again (it is still running past its lease) and sends it.
    monkeypatch.setattr(world.agent_queue, "send", sent)
    again = Sweeper(world.sessions, world.agent_queue, MemoryDailyBudget(), world.policy).sweep()
    assert swept.unsent[0] in again.stuck and again.unsent == []
