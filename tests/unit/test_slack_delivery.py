"""A decision and its SendTaskSuccess cannot be separated by a crash, and a click racing a reminder is
decided, on in-memory fakes (slack.delivery). The workflow fake accepts one answer per token and refuses
a token that timed out, as Step Functions does; a test plays the workflow's Resume by handing every
answer to the agent (twice: SQS delivers at least once)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from support_agent import clock
from support_agent.agent.offline import OfflineProvider
from support_agent.models import Approval, Decision, NotifyMessage
from support_agent_local import slack_requests
from support_agent_local.memory import MemoryWorld

from tests.unit.test_slack_endpoint import POLICY, post, waiting


class Killed(Exception):
    """The function was killed here (an exception stands in for the end of the process)."""


@pytest.fixture
def world() -> MemoryWorld:
    return MemoryWorld(POLICY)


def remind(world: MemoryWorld, approval: Approval, token: str, max_reminders: int = 2) -> str:
    """The workflow's wait timed out: the previous token is dead and a reminder carries `token`."""
    for old in {world.approvals.task_token(approval.approval_id) or ""} - {token}:
        world.workflow.time_out(old)
    message = NotifyMessage(
        type="reminder", session_id=approval.session_id, approval_id=approval.approval_id, task_token=token
    )
    return world.notifier(max_reminders).handle(message)


def carry_out(world: MemoryWorld, approval: Approval) -> None:
    """The workflow's Resume state for each answer, delivered twice."""
    runner = world.runner(OfflineProvider())
    for decision in world.workflow.answers.values():
        if decision.kind != "expired":
            for _ in range(2):
                runner.resume(approval.session_id, approval.approval_id, decision)


def refund_entries(world: MemoryWorld, approval: Approval) -> list[tuple[str, str]]:
    return [a for a in world.audit.actions(approval.session_id) if a == ("billing:refund", "executed")]


def kill_once(world: MemoryWorld, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The next SendTaskSuccess never happens: the process dies just before it."""
    answer = world.workflow.answer
    killed: list[str] = []

    def dying(token: str, decision: Decision) -> None:
        if not killed:
            killed.append(token)
            raise Killed(token)
        answer(token, decision)

    monkeypatch.setattr(world.workflow, "answer", dying)
    return killed


def test_endpoint_killed_before_send_task_success_the_reminder_delivers_once(world, monkeypatch):
    approval = waiting(world)
    killed = kill_once(world, monkeypatch)
    with pytest.raises(Killed):
        post(world, slack_requests.block_action(approval.approval_id, "approve"))
    assert killed == ["tok-1"] and world.workflow.answers == {}
    assert world.approvals.get(approval.approval_id).status == "decided"  # recorded, not handed on
    # The wait times out; the notifier finds the approval decided: no reminder, no expiry — delivery.
    assert remind(world, approval, "tok-2", max_reminders=0) == "delivered"
    assert {t: d.kind for t, d in world.workflow.answers.items()} == {"tok-2": "approve"}
    assert not [p for p in world.slack.of("chat.postMessage") if p["thread_ts"]]  # nobody reminded
    assert world.slack.of("chat.update")[-1]["text"].startswith("Approved by <@U0APPROVER1>")
    # A redelivered reminder finds its token answered and changes nothing.
    assert remind(world, approval, "tok-2", max_reminders=0) == "already_delivered"
    carry_out(world, approval)
    assert len(world.customers.refunds) == 1
    assert len(refund_entries(world, approval)) == 1
    assert world.sessions.get(approval.session_id).state.value == "responded"


def test_a_second_click_after_the_deciders_run_delivers_at_once(world, monkeypatch):
    approval = waiting(world)
    kill_once(world, monkeypatch)
    with pytest.raises(Killed):
        post(world, slack_requests.block_action(approval.approval_id, "approve"))
    # Within the decider's own run a second click only says who decided (the decider may still answer).
    post(world, slack_requests.block_action(approval.approval_id, "approve", user="U0APPROVER2"))
    assert world.workflow.answers == {}
    later = clock.now() + timedelta(seconds=30)
    monkeypatch.setattr(clock, "now", lambda: later)
    post(world, slack_requests.block_action(approval.approval_id, "deny", user="U0APPROVER2"))
    # The stored decision is delivered, not the second click's choice.
    assert {t: d.kind for t, d in world.workflow.answers.items()} == {"tok-1": "approve"}
    assert "Already decided by <@U0APPROVER1>: approve." in world.slack.of("chat.postEphemeral")[-1]["text"]
    assert world.slack.of("chat.update")[-1]["text"].startswith("Approved by <@U0APPROVER1>")
    assert ("approval:deliver", "approve") in world.audit.actions(approval.session_id)
    carry_out(world, approval)
    assert len(world.customers.refunds) == 1


def test_a_forged_click_after_a_crash_changes_nothing(world, monkeypatch):
    approval = waiting(world)
    kill_once(world, monkeypatch)
    with pytest.raises(Killed):
        post(world, slack_requests.block_action(approval.approval_id, "approve"))
    later = clock.now() + timedelta(seconds=30)
    monkeypatch.setattr(clock, "now", lambda: later)
    forged = post(world, slack_requests.block_action(approval.approval_id, "deny"), secret="not-the-secret")
    assert forged.status == 401
    outsider = post(world, slack_requests.block_action(approval.approval_id, "approve", user="U0RANDOM"))
    assert outsider.status == 200
    assert world.workflow.answers == {}
    assert "not an approver" in world.slack.of("chat.postEphemeral")[-1]["text"]


def racing(world: MemoryWorld, monkeypatch: pytest.MonkeyPatch, between: Any) -> list[str | None]:
    """The click's first token read returns, then `between` runs before the click answers."""
    read = world.approvals.task_token
    reads: list[str | None] = []

    def racing_read(approval_id: str, *, reread: bool = True) -> str | None:
        token = read(approval_id, reread=reread)
        reads.append(token)
        if len(reads) == 1:
            between()
        return token

    monkeypatch.setattr(world.approvals, "task_token", racing_read)
    return reads


def test_click_reading_the_token_a_reminder_replaces_retries_with_the_new_one(world, monkeypatch):
    approval = waiting(world)

    def reminder_stores_its_token() -> None:  # the notifier is between its write and its delivery
        world.workflow.time_out("tok-1")
        world.approvals.update(approval.approval_id, task_token="tok-2")

    reads = racing(world, monkeypatch, reminder_stores_its_token)
    assert post(world, slack_requests.block_action(approval.approval_id, "approve")).status == 200
    assert reads == ["tok-1", "tok-2"]  # rejected, re-read, answered
    assert {t: d.kind for t, d in world.workflow.answers.items()} == {"tok-2": "approve"}
    assert world.slack.of("chat.update")[-1]["text"].startswith("Approved by")
    assert world.slack.of("chat.postEphemeral") == []  # never told "expired"
    # The notifier goes on: its token is answered already, so it neither reminds nor answers again.
    assert remind(world, approval, "tok-2") == "already_delivered"
    assert len(world.workflow.answers) == 1


def test_reminder_landing_between_the_decision_and_its_answer_delivers_it(world, monkeypatch):
    approval = waiting(world)
    racing(world, monkeypatch, lambda: remind(world, approval, "tok-2", max_reminders=0))
    assert post(world, slack_requests.block_action(approval.approval_id, "approve")).status == 200
    # The notifier found the approval decided and delivered it (not expired, though it was the last wait).
    assert {t: d.kind for t, d in world.workflow.answers.items()} == {"tok-2": "approve"}
    assert world.approvals.get(approval.approval_id).status == "decided"
    carry_out(world, approval)
    assert len(world.customers.refunds) == 1


def test_click_answered_before_the_reminder_stores_its_token_is_delivered_by_the_notifier(world):
    approval = waiting(world)
    world.workflow.time_out("tok-1")  # the wait timed out; the reminder is still on its way
    assert post(world, slack_requests.block_action(approval.approval_id, "approve")).status == 200
    assert world.workflow.answers == {}
    assert ("approval:deliver_deferred", "left_to_notifier") in world.audit.actions(approval.session_id)
    assert world.slack.of("chat.update")[-1]["text"].startswith("Approved by")  # decided, as shown
    # The last reminder would have expired it; the approval is decided, so it is delivered instead.
    assert remind(world, approval, "tok-2", max_reminders=0) == "delivered"
    assert {t: d.kind for t, d in world.workflow.answers.items()} == {"tok-2": "approve"}
    assert world.approvals.get(approval.approval_id).status == "decided"
    carry_out(world, approval)
    assert len(world.customers.refunds) == 1 and len(refund_entries(world, approval)) == 1


def test_expiry_is_recorded_before_it_is_answered_and_a_later_click_is_refused(world):
    approval = waiting(world)
    assert remind(world, approval, "tok-2", max_reminders=0) == "expired"
    assert world.approvals.get(approval.approval_id).status == "expired"
    assert {t: d.kind for t, d in world.workflow.answers.items()} == {"tok-2": "expired"}
    post(world, slack_requests.block_action(approval.approval_id, "approve"))
    assert "expired" in world.slack.of("chat.postEphemeral")[-1]["text"]
    assert len(world.workflow.answers) == 1
    # The workflow's NotifyExpired: the message shows the expiry (the record says so already).
    expired = NotifyMessage(type="expired", session_id=approval.session_id, approval_id=approval.approval_id)
    assert world.notifier().handle(expired) == "marked_expired"
    assert "expired" in world.slack.of("chat.update")[-1]["text"]


def test_notifier_killed_between_expiry_and_its_answer_answers_on_redelivery(world, monkeypatch):
    approval = waiting(world)
    kill_once(world, monkeypatch)
    with pytest.raises(Killed):
        remind(world, approval, "tok-2", max_reminders=0)
    assert world.approvals.get(approval.approval_id).status == "expired" and world.workflow.answers == {}
    # A click now is refused: the expiry was recorded first.
    post(world, slack_requests.block_action(approval.approval_id, "approve"))
    assert world.approvals.get(approval.approval_id).decision.kind == "expired"
    # SQS redelivers the same reminder.
    assert remind(world, approval, "tok-2", max_reminders=0) == "delivered"
    assert {t: d.kind for t, d in world.workflow.answers.items()} == {"tok-2": "expired"}
    assert world.audit.actions(approval.session_id).count(("approval:expire", "expired")) == 1


def test_a_redelivered_request_does_not_bring_back_a_replaced_token(world):
    approval = waiting(world)
    assert remind(world, approval, "tok-2") == "reminded"
    again = NotifyMessage(
        type="request", session_id=approval.session_id, approval_id=approval.approval_id, task_token="tok-1"
    )
    assert world.notifier().handle(again) == "token_refreshed"
    assert world.approvals.task_token(approval.approval_id) == "tok-2"


def test_endpoint_timeout_agrees_with_its_slack_client_and_the_redelivery_wait():
    from support_agent.slack.client import BACKGROUND, INTERACTIVE
    from support_agent.slack.endpoint import DECIDER_SECONDS
    from support_agent_local.template import load_template

    functions = load_template()["Resources"]
    endpoint = functions["SlackInteractionFunction"]["Properties"]["Timeout"]
    notifier = functions["NotifierFunction"]["Properties"]["Timeout"]
    # A second click re-delivers only once the first decider's run is surely over.
    assert endpoint == DECIDER_SECONDS
    # Two Slack calls at most per interactive path, none retried, plus a second for a cold start and one
    # for AWS, fit the function: a slow Slack never kills it between the decision and SendTaskSuccess.
    assert INTERACTIVE.retries == 0 and 2 * INTERACTIVE.timeout + 2 <= endpoint
    # The notifier's calls, each retried per kind of failure, fit its timeout for one message at least.
    assert 2 * BACKGROUND.timeout * (1 + BACKGROUND.retries) <= notifier


def test_the_workflows_decided_message_redraws_only_a_decided_request(world):
    approval = waiting(world)
    decided = NotifyMessage(type="decided", session_id=approval.session_id, approval_id=approval.approval_id)
    assert world.notifier().handle(decided) == "not_decided"
    assert world.slack.of("chat.update") == []
    post(world, slack_requests.block_action(approval.approval_id, "approve"))
    before = len(world.slack.of("chat.update"))
    assert world.notifier().handle(decided) == "shown"
    assert len(world.slack.of("chat.update")) == before + 1
    assert world.slack.of("chat.update")[-1]["text"].startswith("Approved by <@U0APPROVER1>")


def test_a_failing_message_update_after_the_decision_still_answers_the_click(world, monkeypatch, caplog):
    """chat.update times out once the decision is recorded and handed on: the click is answered 200 (the
    clicker must not think nothing happened) and the workflow's decided message redraws it later."""
    approval = waiting(world)

    def timed_out(*_args: object, **_kwargs: object) -> None:
        raise TimeoutError("timed out")

    monkeypatch.setattr(world.slack, "update_message", timed_out)
    answer = post(world, slack_requests.block_action(approval.approval_id, "approve"))
    assert answer.status == 200
    assert {t: d.kind for t, d in world.workflow.answers.items()} == {"tok-1": "approve"}
    assert world.approvals.get(approval.approval_id).status == "decided"
    assert "chat.update failed after the decision was recorded" in caplog.text
