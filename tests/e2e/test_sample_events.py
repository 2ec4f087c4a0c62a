"""What the Slack, notifier and resume sample events do, beyond their status codes."""

from __future__ import annotations

from support_agent.adapters.embedded import EmbeddedBilling
from support_agent_local import events

APPROVAL = "apr_d6894576e07f8de31792"


def approvals(stack):
    return stack.approvals()


def test_notifier_request_stores_token_and_posts(stack):
    events.invoke_sample(stack, "notifier_request.json")
    assert approvals(stack).task_token(APPROVAL) == "sample-task-token-from-step-functions"
    assert stack.slack.of("chat.postMessage")[-1]["channel"] == "#support-escalations"


def test_partial_click_opens_modal_and_submission_decides(stack):
    events.invoke_sample(stack, "slack_block_partial.json")
    assert stack.slack.of("views.open")[-1]["view"]["private_metadata"] == APPROVAL
    assert approvals(stack).get(APPROVAL).status == "pending"
    events.invoke_sample(stack, "slack_view_partial.json")
    decision = approvals(stack).get(APPROVAL).decision
    assert (decision.kind, decision.amount) == ("partial", 9950)


def test_approve_then_resume_refunds_once(stack):
    response = events.invoke_sample(stack, "agent_step_resume.json")
    assert response == {"batchItemFailures": []}
    refunds = EmbeddedBilling(stack.ref("EmbeddedDataTable")).refunds()
    assert [(r.invoice_id, r.amount_cents, r.idempotency_key) for r in refunds] == [
        ("in_jane_2026_03", 19900, APPROVAL)
    ]


def test_unsigned_click_changes_nothing(stack):
    assert events.invoke_sample(stack, "slack_block_approve_unsigned.json")["statusCode"] == 401
    assert approvals(stack).get(APPROVAL).status == "pending"
