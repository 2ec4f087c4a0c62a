"""The agent core on in-memory fakes: outcomes, approvals, decisions, and the conversation the API sees."""

from __future__ import annotations

from typing import Any

import pytest
from support_agent.agent.conversation import ConversationError, check
from support_agent.agent.llm import ReplayProvider
from support_agent.agent.offline import OfflineProvider
from support_agent.models import Approval, Decision, SessionState
from support_agent.rules.audit import verify
from support_agent.rules.policy import load_policy
from support_agent_local.memory import MemoryWorld

from tests.helpers import ROOT

POLICY = load_policy(ROOT / "policies" / "acme-support.yaml")
REFUND = "We had a 3-day outage in March and the service was down. I want a refund of the $199 March invoice."


@pytest.fixture
def world() -> MemoryWorld:
    return MemoryWorld(POLICY)


def msg(*blocks: dict[str, Any], stop: str = "tool_use") -> dict[str, Any]:
    return {
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": list(blocks),
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": 1000, "output_tokens": 50},
    }


def use(name: str, id_: str, **args: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": id_, "name": name, "input": args}


CLASSIFY = use(
    "classify_ticket",
    "toolu_c",
    category="refund_request",
    confidence=0.9,
    sentiment="neutral",
    language="en",
)


def waiting_approval(world: MemoryWorld, sid: str) -> Approval:
    session = world.sessions.get(sid)
    assert session is not None and session.state is SessionState.AWAITING_APPROVAL
    approval = world.approvals.get(session.approval_id or "")
    assert isinstance(approval, Approval)
    return approval


def decide(world: MemoryWorld, approval: Approval, decision: Decision) -> Approval:
    decided = world.approvals.decide(approval.approval_id, decision)
    assert isinstance(decided, Approval)
    return decided


def test_order_question_is_answered_from_the_customers_own_order(world):
    # Given a customer asking where their order is
    sid = world.ticket("Where is my order ORD-5001?", subject="Order status", customer_id="cus_jane")
    # When the agent runs
    result = world.runner(OfflineProvider()).start(sid)
    # Then it replies with the order's tracking, solves the ticket, and the trail verifies
    assert result.outcome == "respond"
    reply = world.helpdesk.public_replies("generic:T-1")[0]
    assert "ORD-5001" in reply and "1Z999AA10123456784" in reply
    assert world.helpdesk.tickets["generic:T-1"]["status"] == "solved"
    assert world.sessions.get(sid).state is SessionState.RESPONDED
    assert verify(world.audit, sid).ok


def test_refund_waits_for_a_person_with_exactly_what_will_run(world):
    sid = world.ticket(REFUND, subject="Refund for March", customer_id="cus_jane")
    result = world.runner(OfflineProvider()).start(sid)
    assert result.outcome == "approval"
    approval = waiting_approval(world, sid)
    assert [o.kind for o in approval.offers] == ["approve", "partial", "deny", "reply_manually"]
    assert approval.partial is not None and approval.partial.maximum == 19900
    assert approval.escalation.recommendation.startswith("Full refund of $199 (invoice in_jane_2026_03")
    # The grounds come from the help center article the agent read, not from the code.
    assert (
        "2026-03-10" in approval.escalation.agent_notes
        and "SLA Section 4.2" in approval.escalation.agent_notes
    )
    assert list(world.workflow.started) == [approval.approval_id]
    assert world.customers.refunds == {}
    assert ("approval:request", "awaiting_approval") in world.audit.actions(sid)


def test_approved_refund_runs_once_and_the_customer_hears(world):
    sid = world.ticket(REFUND, subject="Refund for March", customer_id="cus_jane")
    runner = world.runner(OfflineProvider())
    runner.start(sid)
    approval = decide(world, waiting_approval(world, sid), Decision(kind="approve", by="U1", by_name="lee"))
    assert runner.resume(sid, approval.approval_id, approval.decision).outcome == "respond"
    # A redelivered resume finds nothing waiting.
    assert runner.resume(sid, approval.approval_id, approval.decision).outcome == "skipped"
    assert [(r.invoice_id, r.amount_cents, r.idempotency_key) for r in world.customers.refunds.values()] == [
        ("in_jane_2026_03", 19900, approval.approval_id)
    ]
    assert "refunded $199" in world.helpdesk.public_replies("generic:T-1")[0]
    assert world.sessions.get(sid).actions[-1]["approved_by"] == "lee"
    assert verify(world.audit, sid).ok


@pytest.mark.parametrize(
    ("amount", "outcome", "refunded"), [(5000, "respond", 5000), (19901, "handoff", None)]
)
def test_partial_decision_runs_the_decided_amount_within_the_bound(world, amount, outcome, refunded):
    sid = world.ticket(REFUND, subject="Refund for March", customer_id="cus_jane")
    runner = world.runner(OfflineProvider())
    runner.start(sid)
    approval = decide(world, waiting_approval(world, sid), Decision(kind="partial", by="U1", amount=amount))
    result = runner.resume(sid, approval.approval_id, approval.decision)
    assert result.outcome == outcome
    assert [r.amount_cents for r in world.customers.refunds.values()] == ([refunded] if refunded else [])
    if outcome == "handoff":
        assert result.reason == "partial_amount_invalid"


def test_denial_reason_reaches_the_customer_and_nothing_runs(world):
    sid = world.ticket(REFUND, subject="Refund for March", customer_id="cus_jane")
    runner = world.runner(OfflineProvider())
    runner.start(sid)
    reason = "the outage credit was already applied to your April invoice"
    approval = decide(world, waiting_approval(world, sid), Decision(kind="deny", by="U1", reason=reason))
    assert runner.resume(sid, approval.approval_id, approval.decision).outcome == "respond"
    assert reason in world.helpdesk.public_replies("generic:T-1")[0]
    assert world.customers.refunds == {}


def test_expiry_hands_the_ticket_to_people_and_a_late_decision_does_nothing(world):
    sid = world.ticket(REFUND, subject="Refund for March", customer_id="cus_jane")
    runner = world.runner(OfflineProvider())
    runner.start(sid)
    approval = waiting_approval(world, sid)
    assert runner.expire(sid, approval.approval_id).reason == "approval_expired"
    late = decide(world, approval, Decision(kind="approve", by="U1"))
    assert runner.resume(sid, approval.approval_id, late.decision).outcome == "skipped"
    assert world.customers.refunds == {}
    assert world.helpdesk.tickets["generic:T-1"]["assignee"] == "tier-2-humans"


def test_workflow_down_hands_off_instead_of_waiting_forever(world):
    world.workflow.fail_start = True
    sid = world.ticket(REFUND, subject="Refund for March", customer_id="cus_jane")
    result = world.runner(OfflineProvider()).start(sid)
    assert (result.outcome, result.reason) == ("handoff", "approval_workflow_unavailable")
    assert world.sessions.get(sid).state is SessionState.HANDOFF


def test_sibling_calls_of_a_gated_call_are_answered_so_the_conversation_stays_valid(world):
    # Given a model that asks for a refund in the same turn as two lookups
    sid = world.ticket(REFUND, subject="Refund for March", customer_id="cus_jane")
    replay = ReplayProvider(
        [
            msg(
                CLASSIFY,
                use("list_invoices", "toolu_i"),
                use(
                    "issue_refund",
                    "toolu_r",
                    invoice_id="in_jane_2026_03",
                    amount_cents=19900,
                    reason="47-hour outage",
                ),
                use("search_help_center", "toolu_s", query="refund policy"),
            ),
            msg(
                use(
                    "reply_to_customer",
                    "toolu_done",
                    body="Hi Jane, we have refunded your March invoice.",
                    status="solved",
                )
            ),
        ]
    )
    runner = world.runner(replay)
    assert runner.start(sid).outcome == "approval"
    approval = decide(world, waiting_approval(world, sid), Decision(kind="approve", by="U1"))
    # When the person approves and the model is asked again
    assert runner.resume(sid, approval.approval_id, approval.decision).outcome == "respond"
    # Then the request carried a result for every tool_use of that turn (the replay checks the API's rules)
    after = replay.requests[-1].messages
    answered = {b["tool_use_id"] for b in after[-1]["content"]}
    assert answered == {"toolu_c", "toolu_i", "toolu_r", "toolu_s"}
    assert len(world.customers.refunds) == 1


def test_conversation_rules_catch_what_the_api_rejects():
    user = {"role": "user", "content": "hi"}
    asks = {"role": "assistant", "content": [use("list_orders", "t1", customer_id="c")]}
    with pytest.raises(ConversationError, match="no tool_result"):
        check([user, asks])
    with pytest.raises(ConversationError, match="not answered"):
        check([user, asks, {"role": "user", "content": [{"type": "text", "text": "?"}]}])
    with pytest.raises(ConversationError, match="alternate"):
        check([user, user])
    with pytest.raises(ConversationError, match="first"):
        check(
            [
                user,
                asks,
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "x"},
                        {"type": "tool_result", "tool_use_id": "t1", "content": "ok"},
                    ],
                },
            ]
        )
    check(
        [
            user,
            asks,
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]},
        ]
    )


def test_handoff_notice_follow_up_sends_the_draft_once(world):
    sid = world.ticket(
        "Your agent was rude to me, I want to complain about your staff.", subject="Rude support"
    )
    runner = world.runner(OfflineProvider())
    assert runner.start(sid).outcome == "handoff"
    session = world.sessions.get(sid)
    assert session.notice_id and world.notify_queue.sent[-1].notice_id == session.notice_id
    world.approvals.decide(session.notice_id, Decision(kind="send_draft", by="U1"))
    assert runner.follow_up(sid, session.notice_id).outcome == "respond"
    assert runner.follow_up(sid, session.notice_id).outcome == "skipped"
    assert world.helpdesk.public_replies("generic:T-1") == [session.escalation.draft_reply]
    assert world.sessions.get(sid).state is SessionState.CLOSED


def test_a_ticket_a_person_answered_meanwhile_is_left_to_them(world):
    sid = world.ticket("Where is my order ORD-5001?", subject="Order status", customer_id="cus_jane")
    world.helpdesk.reply_as_staff("generic:T-1", "Hi Jane, I checked: it arrives tomorrow. — Lee")
    result = world.runner(OfflineProvider()).start(sid)
    assert (result.outcome, result.reason) == ("handoff", "answered_by_a_person")
    assert world.helpdesk.public_replies("generic:T-1") == ["Hi Jane, I checked: it arrives tomorrow. — Lee"]
    assert "ORD-5001" in world.sessions.get(sid).escalation.draft_reply
