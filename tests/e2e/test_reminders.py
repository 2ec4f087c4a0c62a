"""Reminder and expiry timing of the approval workflow (ReminderSeconds=1, MaxReminders=1)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from support_agent.adapters.embedded import EmbeddedBilling
from support_agent.models import SessionState
from support_agent_local import events, slack_requests
from support_agent_local.emulator import EmbeddedAws
from support_agent_local.functions import invoke
from support_agent_local.runtime import Poller


@pytest.fixture
def fast_stack() -> Iterator[EmbeddedAws]:
    with EmbeddedAws(parameters={"ReminderSeconds": "1", "MaxReminders": "1"}) as stack:
        yield stack


def click(stack, approval_id):
    secret = stack.secret("SlackSecretName")["signing_secret"]
    with stack.environment_of("SlackInteractionFunction"):
        return invoke(
            "slack_interaction",
            slack_requests.signed_event(slack_requests.block_action(approval_id, "approve"), secret),
        )


def pending(stack) -> tuple[str, str]:
    events.invoke_sample(stack, "agent_step_start_refund.json")
    sid = "ses_7f84de5dde89c64c8bbb047f"
    return sid, stack.sessions().get(sid).approval_id


def wait_for(poller: Poller, condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        poller.poll_once()
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def test_reminder_then_approval(fast_stack):
    poller = Poller(fast_stack)
    sid, approval_id = pending(fast_stack)
    wait_for(
        poller,
        lambda: any("Reminder 1/1" in p.get("text", "") for p in fast_stack.slack.of("chat.postMessage")),
    )
    reminder = next(p for p in fast_stack.slack.of("chat.postMessage") if "Reminder" in p.get("text", ""))
    approval = fast_stack.approvals().get(approval_id)
    assert reminder["thread_ts"] == approval.slack_ts  # in the original message's thread
    assert approval.reminders == 1
    assert click(fast_stack, approval_id)["statusCode"] == 200
    wait_for(
        poller,
        lambda: fast_stack.sessions().get(sid).state is SessionState.RESPONDED,
    )
    assert len(EmbeddedBilling(fast_stack.ref("EmbeddedDataTable")).refunds()) == 1


def test_click_after_expiry(fast_stack):
    poller = Poller(fast_stack)
    sid, approval_id = pending(fast_stack)
    wait_for(
        poller,
        lambda: fast_stack.sessions().get(sid).state is SessionState.HANDOFF,
    )
    session = fast_stack.sessions().get(sid)
    assert session.reason == "approval_expired"
    assert fast_stack.approvals().get(approval_id).status == "expired"
    assert "expired" in fast_stack.slack.of("chat.update")[-1]["text"]
    click(fast_stack, approval_id)
    assert "expired" in fast_stack.slack.of("chat.postEphemeral")[-1]["text"]
    assert EmbeddedBilling(fast_stack.ref("EmbeddedDataTable")).refunds() == []
