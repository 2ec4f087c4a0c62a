"""The whole pipeline with real backends on the local runtime: Zendesk (the stand-in over HTTP, reached
by the Zendesk adapter), Stripe (localstripe, reached by the stripe SDK), the customer API (over HTTP) and
Cognito (moto's cognito-idp), chosen by template parameters and secrets as a deployment chooses them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import stripe
from support_agent.models import SessionState
from support_agent_local import slack_requests
from support_agent_local.backends import RealBackends
from support_agent_local.emulator import EmbeddedAws
from support_agent_local.events import signed_webhook_event
from support_agent_local.functions import invoke
from support_agent_local.runtime import Poller

pytestmark = pytest.mark.slow


@pytest.fixture
def world() -> Iterator[tuple[EmbeddedAws, RealBackends, Poller]]:
    with RealBackends() as systems, EmbeddedAws() as stack:
        systems.attach(stack)
        yield stack, systems, Poller(stack)


def open_ticket(
    stack: EmbeddedAws, systems: RealBackends, poller: Poller, customer: str, subject: str, body: str
):
    payload = systems.open_ticket(customer, subject, body)
    secret = stack.secret("WebhookSecretName")["zendesk"]
    with stack.environment_of("IntakeFunction"):
        answer = invoke("intake", signed_webhook_event("zendesk", secret, payload))
    assert answer["statusCode"] == 202, answer
    sid = json.loads(answer["body"])["session_id"]
    poller.settle(sid)
    return sid, payload["ticket"]["id"]


def decide(stack: EmbeddedAws, approval_id: str, action: str, value: str = "") -> None:
    secret = stack.secret("SlackSecretName")["signing_secret"]
    payload = (
        slack_requests.view_submission(approval_id, action, value)
        if value
        else slack_requests.block_action(approval_id, action)
    )
    with stack.environment_of("SlackInteractionFunction"):
        assert invoke("slack_interaction", slack_requests.signed_event(payload, secret))["statusCode"] == 200


def public_replies(systems: RealBackends, ticket_id: str) -> list[str]:
    author = int(systems.zendesk.agent_id)
    return [c["body"] for c in systems.zendesk.comments(ticket_id, public=True) if c["author_id"] == author]


def stripe_refunds(systems: RealBackends) -> list[Any]:
    assert systems.stripe is not None
    client = stripe.StripeClient(systems.stripe.api_key, base_addresses={"api": systems.stripe.url})
    return list(client.refunds.list().data)


def test_a_zendesk_ticket_is_answered_in_zendesk(world):
    stack, systems, poller = world
    sid, ticket_id = open_ticket(
        stack, systems, poller, "cus_jane", "Where is my order?", "Where is ORD-5001?"
    )
    assert stack.sessions().get(sid).state is SessionState.RESPONDED
    (reply,) = public_replies(systems, ticket_id)
    assert "ORD-5001" in reply and "1Z999AA10123456784" in reply  # from the customer API, over HTTP
    ticket = systems.zendesk.ticket(ticket_id)
    assert ticket["status"] == "solved" and "ai_answered" in ticket["tags"]


def test_a_refund_runs_once_in_stripe_after_approval_and_the_customer_hears(world):
    stack, systems, poller = world
    body = "We had a 3-day outage in March and the service was down the whole time. I want a refund of the March invoice."
    sid, ticket_id = open_ticket(stack, systems, poller, "cus_jane", "Refund for March invoice", body)
    session = stack.sessions().get(sid)
    assert session.state is SessionState.AWAITING_APPROVAL and stripe_refunds(systems) == []
    decide(stack, session.approval_id, "approve")
    poller.settle(sid)
    # A redelivered resume, and a crash-and-retry of the whole step, run nothing again.
    resume = {
        "type": "resume",
        "session_id": sid,
        "approval_id": session.approval_id,
        "decision": stack.approvals().get(session.approval_id).decision.model_dump(mode="json"),
    }
    boto3.client("sqs").send_message(QueueUrl=stack.queue_url("AgentQueue"), MessageBody=json.dumps(resume))
    poller.run_until_quiet()
    refunds = stripe_refunds(systems)
    assert len(refunds) == 1 and refunds[0].amount == 19900
    assert stack.sessions().get(sid).state is SessionState.RESPONDED
    assert any("refunded $199" in r for r in public_replies(systems, ticket_id))


@pytest.mark.parametrize(("decision", "gone"), [("approve", True), ("deny", False)])
def test_a_deletion_removes_the_cognito_user_only_after_approval(world, decision, gone):
    stack, systems, poller = world
    body = "Please delete my account and all my data, I no longer need the service."
    sid, _ticket = open_ticket(stack, systems, poller, "cus_lucia", "Delete my account", body)
    session = stack.sessions().get(sid)
    assert session.state is SessionState.AWAITING_APPROVAL
    if decision == "deny":
        decide(stack, session.approval_id, "deny", "we need the account open until your last order ships")
    else:
        decide(stack, session.approval_id, "approve")
    poller.settle(sid)
    users = boto3.client("cognito-idp").list_users(UserPoolId=systems.pool_id)["Users"]
    assert ("cus_lucia" not in {u["Username"] for u in users}) is gone
