"""The real `anthropic` SDK against a strict Messages API stand-in, through the local runtime end to end:
parallel tool calls around an approval, a rotated key, a truncated turn and a refusal each end with one
refund and a reply, or with a person — and every request the agent sent was one the API accepts."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from support_agent.models import SessionState
from support_agent_local import events, slack_requests
from support_agent_local.emulator import EmbeddedAws
from support_agent_local.messages_api import MessagesApiStandIn, tool_use
from support_agent_local.runtime import Poller

from tests.e2e.test_approval_flow import click, refunds

pytestmark = pytest.mark.slow


@contextmanager
def claude_stack(
    responder: Callable[[dict[str, Any]], dict[str, Any]], api_key: str = "sk-ant-test"
) -> Iterator[tuple[EmbeddedAws, MessagesApiStandIn, Poller]]:
    """The emulated stack with MODEL_PROVIDER=anthropic, its key in Secrets Manager, the API on 127.0.0.1."""
    with (
        MessagesApiStandIn(responder) as api,
        EmbeddedAws(
            parameters={"ModelProvider": "anthropic"}, environment={"ANTHROPIC_BASE_URL": api.url}
        ) as stack,
    ):
        stack.put_secret("AnthropicSecretName", {"api_key": api_key})
        yield stack, api, Poller(stack)


def ticket(stack: EmbeddedAws, poller: Poller, sample: str = "intake_webhook_zendesk.json") -> str:
    response = events.invoke_sample(stack, sample)
    sid = json.loads(response["body"])["session_id"]
    poller.settle(sid)
    return sid


def parallel_refund(body: dict[str, Any]) -> dict[str, Any]:
    """The first turn asks for everything at once (classification, reads, the refund, a search); every
    later turn replies."""
    if len(body["messages"]) == 1:
        return {
            "stop_reason": "tool_use",
            "content": [
                {"type": "text", "text": "Let me look at the invoice and the outage policy."},
                tool_use(
                    "classify_ticket",
                    {
                        "category": "refund_request",
                        "confidence": 0.9,
                        "sentiment": "negative",
                        "language": "en",
                    },
                ),
                tool_use("list_invoices", {}),
                tool_use(
                    "issue_refund",
                    {
                        "invoice_id": "in_jane_2026_03",
                        "amount_cents": 19900,
                        "reason": "3-day outage in March",
                    },
                ),
                tool_use("search_help_center", {"query": "outage refund"}),
            ],
        }
    reply = {
        "body": "We refunded the $199 March invoice; it reaches your card in 5-10 days.",
        "status": "solved",
    }
    return {"stop_reason": "tool_use", "content": [tool_use("reply_to_customer", reply)]}


def test_parallel_calls_around_an_approval_end_with_one_refund_and_a_reply():
    with claude_stack(parallel_refund) as (stack, api, poller):
        sid = ticket(stack, poller)
        session = stack.sessions().get(sid)
        assert session.state is SessionState.AWAITING_APPROVAL
        assert refunds(stack) == []
        assert click(stack, slack_requests.block_action(session.approval_id, "approve"))["statusCode"] == 200
        poller.settle(sid)
        assert [(r.invoice_id, r.amount_cents) for r in refunds(stack)] == [("in_jane_2026_03", 19900)]
        session = stack.sessions().get(sid)
        assert session.state is SessionState.RESPONDED and "$199" in session.replies[-1]
        # Every request was accepted: no 400 from the strict stand-in, two model calls in all.
        assert api.statuses() == [200, 200]
        last = api.calls[-1][1]["messages"]
        results = [b for b in last[2]["content"] if b["type"] == "tool_result"]
        assert len(results) == 4  # the siblings' results and the approved refund's, in one message


def test_a_rotated_key_ends_with_a_person():
    with claude_stack(parallel_refund, api_key="sk-ant-rotated") as (stack, api, poller):
        sid = ticket(stack, poller, "intake_webhook_generic.json")
        session = stack.sessions().get(sid)
        assert (session.state, session.reason) == (SessionState.HANDOFF, "model_unavailable")
        assert "401" in session.escalation.issue
        assert api.statuses() == [401]  # 401 is not retried: no retry fixes a wrong key


def truncated(body: dict[str, Any]) -> dict[str, Any]:
    return {"stop_reason": "max_tokens", "content": [tool_use("send_password_reset", {})]}


def refusal(body: dict[str, Any]) -> dict[str, Any]:
    return {"stop_reason": "refusal", "content": [{"type": "text", "text": "I can't help with that."}]}


@pytest.mark.parametrize(
    ("responder", "reason", "calls"),
    [(truncated, "model_output_truncated", 2), (refusal, "model_refused", 1)],
)
def test_a_turn_that_did_not_end_cleanly_runs_nothing_and_ends_with_a_person(responder, reason, calls):
    with claude_stack(responder) as (stack, api, poller):
        sid = ticket(stack, poller, "intake_webhook_generic.json")
        session = stack.sessions().get(sid)
        assert (session.state, session.reason) == (SessionState.HANDOFF, reason)
        assert api.statuses() == [200] * calls
        ran = [e.details.get("tool") for e in stack.audit().entries(sid) if e.outcome == "ok"]
        assert "send_password_reset" not in ran
        if responder is truncated:
            assert [c[1]["max_tokens"] for c in api.calls] == [1500, 3000]
