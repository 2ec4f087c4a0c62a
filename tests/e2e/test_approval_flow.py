"""The whole approval path on the emulated stack: agent → state machine → notifier → Slack → decision →
state machine → agent executes exactly once → customer reply."""

from __future__ import annotations

import json
import threading
from typing import Any

import boto3
import pytest
from support_agent.adapters.embedded import EmbeddedBilling, EmbeddedTickets
from support_agent.models import SessionState
from support_agent.rules.audit import verify
from support_agent_local import events, slack_requests
from support_agent_local.emulator import EmbeddedAws
from support_agent_local.fake_slack import FakeSlack
from support_agent_local.functions import invoke
from support_agent_local.runtime import Poller


@pytest.fixture
def world(stack: EmbeddedAws) -> tuple[EmbeddedAws, FakeSlack, Poller]:
    assert stack.slack is not None
    return stack, stack.slack, Poller(stack)


def refund_ticket(stack: EmbeddedAws, poller: Poller) -> tuple[str, str]:
    response = events.invoke_sample(stack, "intake_webhook_zendesk.json")
    sid = json.loads(response["body"])["session_id"]
    poller.settle(sid)
    session = stack.sessions().get(sid)
    assert session.state is SessionState.AWAITING_APPROVAL
    return sid, session.approval_id


def click(stack: EmbeddedAws, payload: dict[str, Any], timestamp: float | None = None) -> dict[str, Any]:
    secret = stack.secret("SlackSecretName")["signing_secret"]
    with stack.environment_of("SlackInteractionFunction"):
        return invoke("slack_interaction", slack_requests.signed_event(payload, secret, timestamp))


def refunds(stack):
    return EmbeddedBilling(stack.ref("EmbeddedDataTable")).refunds()


def test_approve_runs_the_refund_once_and_replies(world):
    stack, slack, poller = world
    sid, approval_id = refund_ticket(stack, poller)
    post = slack.of("chat.postMessage")[0]
    assert "Support Escalation — Ticket #4829" in post["text"]
    # The account it acts on, in full, and the exact amount and invoice.
    assert "Jane Smith · cus_jane · jane.smith@example.com · Premium, 18mo, $4,200 LTV" in post["text"]
    assert "Target account: “Jane Smith · cus_jane · jane.smith@example.com”" in post["text"]
    assert "Full refund of $199" in post["text"] and "Amount: “$199 — full refund”" in post["text"]
    buttons = [e for b in post["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert [b["action_id"] for b in buttons] == ["approve", "partial", "deny", "reply_manually"]
    assert all(b["value"] == approval_id for b in buttons)
    assert "task_token" not in json.dumps(post)
    assert stack.approvals().task_token(approval_id)

    assert refunds(stack) == []  # nothing runs before a decision
    assert click(stack, slack_requests.block_action(approval_id, "approve"))["statusCode"] == 200
    poller.settle(sid)
    made = refunds(stack)
    assert [(r.invoice_id, r.amount_cents) for r in made] == [("in_jane_2026_03", 19900)]
    session = stack.sessions().get(sid)
    assert session.state is SessionState.RESPONDED
    assert "$199" in session.replies[-1]
    assert session.actions[-1]["approved_by"] == "dana.lead"
    update = slack.of("chat.update")[-1]
    assert update["text"].startswith("Approved by <@U0APPROVER1>") and "full refund of $199" in update["text"]
    assert not any(b["type"] == "actions" for b in update["blocks"])
    assert verify(stack.audit()).ok

    # A second click, and a redelivered resume message, change nothing.
    click(stack, slack_requests.block_action(approval_id, "approve", user="U0APPROVER2"))
    assert "Already decided by <@U0APPROVER1>" in slack.of("chat.postEphemeral")[-1]["text"]
    resume = {
        "type": "resume",
        "session_id": sid,
        "approval_id": approval_id,
        "decision": {"kind": "approve"},
    }
    boto3.client("sqs").send_message(QueueUrl=stack.queue_url("AgentQueue"), MessageBody=json.dumps(resume))
    poller.settle(sid)
    assert len(refunds(stack)) == 1


def test_five_concurrent_clicks_one_refund(world):
    stack, slack, poller = world
    sid, approval_id = refund_ticket(stack, poller)
    users = ["U0APPROVER1", "U0APPROVER2", "U0LEAD", "U0APPROVER1", "U0APPROVER2"]
    results: list[int] = []
    threads = [
        threading.Thread(
            target=lambda u=u: results.append(
                click(stack, slack_requests.block_action(approval_id, "approve", user=u))["statusCode"]
            )
        )
        for u in users
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    poller.settle(sid)
    assert results == [200] * 5
    # One refund, whatever the interleaving: the session claim and the approval id as the refund's
    # idempotency key hold even when moto lets two conditional writes through at once (its writes are not
    # atomic under threads; test_concurrency_dynalite shows that exactly one decision wins on a store whose
    # are).
    assert len(refunds(stack)) == 1
    assert stack.sessions().get(sid).state is SessionState.RESPONDED
    approved = [u for u in slack.of("chat.update") if u["text"].startswith("Approved by")]
    assert len(approved) >= 1
    decided = [e for e in stack.audit().entries(sid) if e.action == "approval:decide"]
    assert len(decided) + len(slack.of("chat.postEphemeral")) == 5  # every click decided or was told


def test_non_approver_is_refused_and_audited(world):
    stack, slack, poller = world
    sid, approval_id = refund_ticket(stack, poller)
    click(stack, slack_requests.block_action(approval_id, "approve", user="U0INTRUDER"))
    assert slack.of("chat.postEphemeral")[-1]["text"] == "You are not an approver for this request."
    assert stack.approvals().get(approval_id).status == "pending"
    actions = [(e.action, e.outcome) for e in stack.audit().entries(sid)]
    assert ("approval:unauthorized", "refused") in actions
    # A member of an approver user group (resolved with usergroups.users.list) may decide.
    click(stack, slack_requests.block_action(approval_id, "approve", user="U0LEAD"))
    poller.settle(sid)
    assert len(refunds(stack)) == 1


def test_stale_bad_and_replayed_signatures(world):
    stack, slack, poller = world
    sid, approval_id = refund_ticket(stack, poller)
    stale = click(
        stack, slack_requests.block_action(approval_id, "approve"), timestamp=__import__("time").time() - 400
    )
    assert stale["statusCode"] == 401
    event = slack_requests.signed_event(slack_requests.block_action(approval_id, "approve"), "wrong-secret")
    with stack.environment_of("SlackInteractionFunction"):
        assert invoke("slack_interaction", event)["statusCode"] == 401
        unsigned = slack_requests.signed_event(slack_requests.block_action(approval_id, "approve"), "x")
        del unsigned["headers"]["x-slack-signature"]
        assert invoke("slack_interaction", unsigned)["statusCode"] == 401
    assert stack.approvals().get(approval_id).status == "pending"
    # A replayed (valid) request decides once; the replay gets "already decided".
    good = slack_requests.signed_event(
        slack_requests.block_action(approval_id, "approve"), stack.secret("SlackSecretName")["signing_secret"]
    )
    with stack.environment_of("SlackInteractionFunction"):
        invoke("slack_interaction", good)
        invoke("slack_interaction", good)
    poller.settle(sid)
    assert len(refunds(stack)) == 1


def test_partial_refund_validated_then_executed(world):
    stack, slack, poller = world
    sid, approval_id = refund_ticket(stack, poller)
    click(stack, slack_requests.block_action(approval_id, "partial"))
    assert slack.of("views.open")[-1]["view"]["callback_id"] == "partial_modal"
    too_much = click(stack, slack_requests.view_submission(approval_id, "partial", "$250"))
    assert json.loads(too_much["body"])["response_action"] == "errors"
    assert stack.approvals().get(approval_id).status == "pending"
    click(stack, slack_requests.view_submission(approval_id, "partial", "$99.50"))
    poller.settle(sid)
    assert [r.amount_cents for r in refunds(stack)] == [9950]
    transcript_args = [
        b["input"]
        for m in stack.sessions().get(sid).transcript
        if m["role"] == "assistant" and isinstance(m["content"], list)
        for b in m["content"]
        if b.get("name") == "issue_refund"
    ]
    assert transcript_args == []  # transcript cleared once answered; the decided amount is in the actions
    assert stack.sessions().get(sid).actions[-1]["args"]["amount_cents"] == 9950


def test_deny_feeds_reason_into_reply(world):
    stack, slack, poller = world
    sid, approval_id = refund_ticket(stack, poller)
    click(stack, slack_requests.view_submission(approval_id, "deny", "the outage credit was already applied"))
    poller.settle(sid)
    session = stack.sessions().get(sid)
    assert refunds(stack) == []
    assert session.state is SessionState.RESPONDED
    assert "the outage credit was already applied" in session.replies[-1]


def test_deny_reason_at_the_modal_limit_round_trips_through_dynamodb(world):
    """The longest reason the modal accepts is stored, read back by the agent, and shown cut in Slack."""
    stack, slack, poller = world
    sid, approval_id = refund_ticket(stack, poller)
    reason = ("The outage credit was already applied. " * 100)[:3000]
    assert click(stack, slack_requests.view_submission(approval_id, "deny", reason))["statusCode"] == 200
    poller.settle(sid)
    assert stack.approvals().get(approval_id).decision.reason == reason.strip()
    assert stack.sessions().get(sid).state is SessionState.RESPONDED
    line = slack.of("chat.update")[-1]["blocks"][-1]["elements"][0]["text"]
    assert line.startswith("Denied by") and line.endswith("…") and len(line) <= 3000


def test_reply_manually_posts_human_text(world):
    stack, slack, poller = world
    sid, approval_id = refund_ticket(stack, poller)
    text = "Hi Jane, I have looked at this personally and will call you tomorrow. — Dana"
    click(stack, slack_requests.view_submission(approval_id, "reply_manually", text))
    poller.settle(sid)
    assert stack.sessions().get(sid).replies[-1] == text
    public = [
        c.body
        for c in EmbeddedTickets(stack.ref("EmbeddedDataTable")).list_comments("zendesk:4829")
        if c.public
    ]
    assert public[-1] == text
    assert refunds(stack) == []
