"""Reminder and expiry timing of the approval workflow (ReminderSeconds=1, MaxReminders=1)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import boto3
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


def refunds(stack: EmbeddedAws) -> list:
    return EmbeddedBilling(stack.ref("EmbeddedDataTable")).refunds()


def executed(stack: EmbeddedAws, sid: str) -> list[tuple[str, str]]:
    """The refunds the audit trail says ran."""
    entries = stack.audit().entries(sid)
    return [(e.action, e.outcome) for e in entries if (e.action, e.outcome) == ("billing:refund", "executed")]


def waiting_notifications(stack: EmbeddedAws) -> int:
    """Messages sitting on NotifyQueue (sent by the state machine, not yet polled)."""
    attributes = boto3.client("sqs", region_name="us-east-1").get_queue_attributes(
        QueueUrl=stack.queue_url("NotifyQueue"), AttributeNames=["ApproximateNumberOfMessages"]
    )
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def reminded(stack: EmbeddedAws) -> bool:
    return any("Reminder 1/1" in p.get("text", "") for p in stack.slack.of("chat.postMessage"))


def test_reminder_then_approval(fast_stack):
    """A click after a reminder is carried out whichever token it reads: the reminder's (answered at
    once), or — on a loaded machine, when the reminder's 1 s wait has already timed out — the previous
    one (the notifier then delivers the recorded decision with the next token instead of expiring it)."""
    poller = Poller(fast_stack)
    sid, approval_id = pending(fast_stack)
    wait_for(poller, lambda: reminded(fast_stack))
    reminder = next(p for p in fast_stack.slack.of("chat.postMessage") if "Reminder" in p.get("text", ""))
    approval = fast_stack.approvals().get(approval_id)
    assert reminder["thread_ts"] == approval.slack_ts  # in the original message's thread
    assert approval.reminders == 1
    assert click(fast_stack, approval_id)["statusCode"] == 200
    wait_for(poller, lambda: fast_stack.sessions().get(sid).state is SessionState.RESPONDED)
    assert fast_stack.approvals().get(approval_id).status == "decided"
    assert len(refunds(fast_stack)) == 1
    assert len(executed(fast_stack, sid)) == 1


def test_click_holding_a_timed_out_token_is_decided_not_expired(fast_stack):
    """The race made certain: the click reads the token after its wait timed out and before the notifier
    stored the next one (the last reminder, which would expire the request)."""
    poller = Poller(fast_stack)
    sid, approval_id = pending(fast_stack)
    wait_for(poller, lambda: reminded(fast_stack))
    stale = fast_stack.approvals().task_token(approval_id)
    # Do not poll: let the reminder's wait time out and the next message sit on NotifyQueue.
    deadline = time.monotonic() + 15
    while waiting_notifications(fast_stack) == 0:
        assert time.monotonic() < deadline, "the state machine sent no further reminder"
        time.sleep(0.05)
    assert fast_stack.approvals().task_token(approval_id) == stale
    assert click(fast_stack, approval_id)["statusCode"] == 200
    actions = [(e.action, e.outcome) for e in fast_stack.audit().entries(sid)]
    assert ("approval:deliver_deferred", "left_to_notifier") in actions
    assert "expired" not in " ".join(p["text"] for p in fast_stack.slack.of("chat.postEphemeral"))
    wait_for(poller, lambda: fast_stack.sessions().get(sid).state is SessionState.RESPONDED)
    actions = [(e.action, e.outcome) for e in fast_stack.audit().entries(sid)]
    assert ("approval:deliver", "approve") in actions and ("approval:expire", "expired") not in actions
    assert fast_stack.approvals().get(approval_id).status == "decided"
    assert len(refunds(fast_stack)) == 1 and len(executed(fast_stack, sid)) == 1


def test_endpoint_killed_before_send_task_success_is_carried_out_once(fast_stack, monkeypatch):
    """A crash between the recorded decision and SendTaskSuccess: the notifier's next run delivers the
    stored decision; one refund, one executed entry, and the Slack message shows the decision."""
    from support_agent.messaging import StepFunctionsWorkflow

    poller = Poller(fast_stack)
    sid, approval_id = pending(fast_stack)
    wait_for(poller, lambda: bool(fast_stack.approvals().get(approval_id).slack_ts))

    def killed(self, token, decision):
        raise SystemExit("SlackInteraction killed before SendTaskSuccess")

    with monkeypatch.context() as patch:
        patch.setattr(StepFunctionsWorkflow, "answer", killed)
        with pytest.raises(SystemExit):
            click(fast_stack, approval_id)
    assert fast_stack.approvals().get(approval_id).status == "decided"
    assert fast_stack.sessions().get(sid).state is SessionState.AWAITING_APPROVAL
    wait_for(poller, lambda: fast_stack.sessions().get(sid).state is SessionState.RESPONDED)
    poller.run_until_quiet(quiet_seconds=1.5)  # nothing further arrives (no expiry, no second resume)
    assert len(refunds(fast_stack)) == 1
    assert len(executed(fast_stack, sid)) == 1
    actions = [(e.action, e.outcome) for e in fast_stack.audit().entries(sid)]
    # Delivered at least once; under load a redelivered reminder may try again, which Step Functions
    # refuses (one answer per token) and which changes nothing: one refund, one executed entry above.
    assert actions.count(("approval:deliver", "approve")) >= 1
    assert not any(a.startswith("slack:remind") or a == "approval:expire" for a, _ in actions)
    assert fast_stack.slack.of("chat.update")[-1]["text"].startswith("Approved by")
    assert fast_stack.sessions().get(sid).state is SessionState.RESPONDED


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


def test_endpoint_killed_after_send_task_success_the_workflow_redraws_the_message(fast_stack, monkeypatch):
    """A crash after SendTaskSuccess, before chat.update: the decision runs once and the workflow's
    ShowDecided has the notifier redraw the message from the stored decision."""
    from support_agent.slack.endpoint import SlackEndpoint

    poller = Poller(fast_stack)
    sid, approval_id = pending(fast_stack)
    wait_for(poller, lambda: bool(fast_stack.approvals().get(approval_id).slack_ts))

    def killed(self, request, decision):
        raise SystemExit("SlackInteraction killed before chat.update")

    with monkeypatch.context() as patch:
        patch.setattr(SlackEndpoint, "_update_message", killed)
        with pytest.raises(SystemExit):
            click(fast_stack, approval_id)
    assert fast_stack.slack.of("chat.update") == []
    wait_for(poller, lambda: fast_stack.sessions().get(sid).state is SessionState.RESPONDED)
    wait_for(poller, lambda: bool(fast_stack.slack.of("chat.update")))
    assert fast_stack.slack.of("chat.update")[-1]["text"].startswith("Approved by <@U0APPROVER1>")
    assert len(refunds(fast_stack)) == 1 and len(executed(fast_stack, sid)) == 1
