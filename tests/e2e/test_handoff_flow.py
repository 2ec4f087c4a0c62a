"""Handoffs are announced in Slack with Take over / Send agent's draft, and the choice is carried out once."""

from __future__ import annotations

import json

import boto3
from support_agent.adapters.embedded import EmbeddedTickets
from support_agent.models import SessionState
from support_agent_local import slack_requests
from support_agent_local.events import signed_webhook_event
from support_agent_local.functions import invoke
from support_agent_local.runtime import Poller


def complaint(stack) -> str:
    secret = stack.secret("WebhookSecretName")["generic"]
    payload = {
        "event_id": "hof-1",
        "ticket": {
            "id": "H-1",
            "subject": "Rude agent",
            "body": "Your agent was rude to me on the phone. I want to complain.",
            "requester": {"email": "sam.oneill@example.co.uk"},
        },
    }
    event = signed_webhook_event("generic", secret, payload)
    with stack.environment_of("IntakeFunction"):
        sid = json.loads(invoke("intake", event)["body"])["session_id"]
    poller = Poller(stack)
    poller.settle(sid)
    poller.run_until(lambda: bool(stack.slack.of("chat.postMessage")))
    return sid


def click(stack, approval_id, action, user="U0APPROVER1"):
    secret = stack.secret("SlackSecretName")["signing_secret"]
    with stack.environment_of("SlackInteractionFunction"):
        return invoke(
            "slack_interaction",
            slack_requests.signed_event(slack_requests.block_action(approval_id, action, user=user), secret),
        )


def test_handoff_posted_with_its_buttons(stack):
    sid = complaint(stack)
    session = stack.sessions().get(sid)
    assert session.state is SessionState.HANDOFF
    post = stack.slack.of("chat.postMessage")[-1]
    assert post["text"].startswith("Support Handoff — Ticket #H-1")
    buttons = [e["action_id"] for b in post["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert buttons == ["take_over", "send_draft"]
    assert (
        EmbeddedTickets(stack.ref("EmbeddedDataTable")).get_state("generic:H-1")["assignee"]
        == "tier-2-humans"
    )


def test_send_draft_posts_once_and_closes(stack):
    sid = complaint(stack)
    notice_id = stack.sessions().get(sid).notice_id
    assert click(stack, notice_id, "send_draft")["statusCode"] == 200
    Poller(stack).run_until(lambda: stack.sessions().get(sid).state is SessionState.CLOSED)
    session = stack.sessions().get(sid)
    assert session.state is SessionState.CLOSED
    public = [
        c.body
        for c in EmbeddedTickets(stack.ref("EmbeddedDataTable")).list_comments("generic:H-1")
        if c.public
    ]
    assert public == [session.escalation.draft_reply]
    assert "Agent's draft sent by <@U0APPROVER1>" in stack.slack.of("chat.update")[-1]["text"]
    # A redelivered follow-up sends nothing more.
    message = {"type": "handoff_follow_up", "session_id": sid, "notice_id": notice_id}
    boto3.client("sqs").send_message(QueueUrl=stack.queue_url("AgentQueue"), MessageBody=json.dumps(message))
    Poller(stack).run_until_quiet()
    assert (
        len(
            [
                c
                for c in EmbeddedTickets(stack.ref("EmbeddedDataTable")).list_comments("generic:H-1")
                if c.public
            ]
        )
        == 1
    )


def test_take_over_assigns_the_person(stack):
    sid = complaint(stack)
    notice_id = stack.sessions().get(sid).notice_id
    click(stack, notice_id, "take_over", user="U0LEAD")
    tickets = EmbeddedTickets(stack.ref("EmbeddedDataTable"))
    Poller(stack).run_until(lambda: tickets.get_state("generic:H-1")["assignee"] == "slack:U0LEAD")
    assert (
        EmbeddedTickets(stack.ref("EmbeddedDataTable")).get_state("generic:H-1")["assignee"] == "slack:U0LEAD"
    )
    assert stack.sessions().get(sid).state is SessionState.HANDOFF
