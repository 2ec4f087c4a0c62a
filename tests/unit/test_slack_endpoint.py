"""Slack's interactive endpoint and the notifier on in-memory fakes: who may decide, first decision wins,
what is handed on, and what people see."""

from __future__ import annotations

import time

import pytest
from support_agent.agent.offline import OfflineProvider
from support_agent.models import AgentMessage, Approval
from support_agent.rules.policy import load_policy
from support_agent.slack.render import blocks, escape, plain_text
from support_agent_local import slack_requests
from support_agent_local.memory import MemoryWorld

from tests.helpers import ROOT

POLICY = load_policy(ROOT / "policies" / "acme-support.yaml")
REFUND = "We had a 3-day outage in March and the service was down. I want a refund of the $199 March invoice."


@pytest.fixture
def world() -> MemoryWorld:
    return MemoryWorld(POLICY)


def waiting(world: MemoryWorld, body: str = REFUND, subject: str = "Refund for March", **ticket) -> Approval:
    """A ticket run until it waits on a person, with its Slack message posted by the notifier."""
    ticket.setdefault("customer_id", "cus_jane")
    sid = world.ticket(body, subject=subject, **ticket)
    world.runner(OfflineProvider()).start(sid)
    approval = world.approvals.get(world.sessions.get(sid).approval_id)
    assert isinstance(approval, Approval)
    from support_agent.models import NotifyMessage

    world.notifier().handle(
        NotifyMessage(type="request", session_id=sid, approval_id=approval.approval_id, task_token="tok-1")
    )
    return world.approvals.get(approval.approval_id)


def post(world: MemoryWorld, payload: dict, secret: str | None = None, timestamp: float | None = None):
    body = slack_requests.form_body(payload)
    headers = slack_requests.sign_headers(secret or world.signing_secret, body, timestamp)
    return world.endpoint().handle(headers, body)


def test_approver_click_records_the_decision_and_answers_the_workflow_once(world):
    approval = waiting(world)
    answer = post(world, slack_requests.block_action(approval.approval_id, "approve"))
    assert answer.status == 200
    assert world.approvals.get(approval.approval_id).decision.kind == "approve"
    assert [d.kind for d in world.workflow.answers.values()] == ["approve"]
    update = world.slack.of("chat.update")[-1]
    assert update["text"].startswith("Approved by <@U0APPROVER1>") and "full refund of $199" in update["text"]
    # A second click is told who decided; nothing else moves.
    post(world, slack_requests.block_action(approval.approval_id, "approve", user="U0APPROVER2"))
    assert "Already decided by <@U0APPROVER1>" in world.slack.of("chat.postEphemeral")[-1]["text"]
    assert len(world.workflow.answers) == 1


def test_non_approver_is_refused_and_audited(world):
    approval = waiting(world)
    post(world, slack_requests.block_action(approval.approval_id, "approve", user="U0RANDOM"))
    assert world.approvals.get(approval.approval_id).status == "pending"
    assert world.workflow.answers == {}
    assert ("approval:unauthorized", "refused") in world.audit.actions(approval.session_id)


def test_user_group_member_may_decide(world):
    world.slack.groups["S0SUPPORTLEADS"] = {"U0LEAD"}
    approval = waiting(world)
    post(world, slack_requests.block_action(approval.approval_id, "approve", user="U0LEAD"))
    assert world.approvals.get(approval.approval_id).decision.by == "U0LEAD"


@pytest.mark.parametrize("forgery", ["wrong secret", "stale", "tampered"])
def test_requests_failing_the_signature_change_nothing(world, forgery):
    approval = waiting(world)
    payload = slack_requests.block_action(approval.approval_id, "approve")
    body = slack_requests.form_body(payload)
    if forgery == "wrong secret":
        headers = slack_requests.sign_headers("not-the-secret", body)
    elif forgery == "stale":
        headers = slack_requests.sign_headers(world.signing_secret, body, time.time() - 400)
    else:
        headers = slack_requests.sign_headers(world.signing_secret, body)
        body = body.replace("approve", "deny")
    answer = world.endpoint().handle(headers, body)
    assert answer.status == 401
    assert world.approvals.get(approval.approval_id).status == "pending"
    assert world.workflow.answers == {}


def test_partial_opens_a_bounded_modal_and_refuses_more_than_proposed(world):
    approval = waiting(world)
    post(world, slack_requests.block_action(approval.approval_id, "partial"))
    view = world.slack.of("views.open")[-1]["view"]
    assert "at most $199" in view["blocks"][0]["label"]["text"]
    too_much = post(world, slack_requests.view_submission(approval.approval_id, "partial", "250"))
    assert too_much.body["response_action"] == "errors"
    assert world.approvals.get(approval.approval_id).status == "pending"
    post(world, slack_requests.view_submission(approval.approval_id, "partial", "$99.50"))
    decided = world.approvals.get(approval.approval_id)
    assert (decided.decision.kind, decided.decision.amount) == ("partial", 9950)
    assert "Partially approved" in world.slack.of("chat.update")[-1]["text"]


def test_a_choice_the_request_does_not_offer_is_refused(world):
    approval = waiting(
        world,
        "Please delete my account and all my data, I no longer need the service.",
        subject="Delete my account",
        email="lucia.garcia@example.es",
        customer_id=None,
    )
    assert [o.kind for o in approval.offers] == ["approve", "deny", "reply_manually"]
    post(world, slack_requests.block_action(approval.approval_id, "partial"))
    assert world.approvals.get(approval.approval_id).status == "pending"
    assert world.slack.of("views.open") == []
    # Deletion is destructive: its approve button asks for confirmation first.
    approve = next(b for b in blocks(approval)[-1]["elements"] if b["action_id"] == "approve")
    assert approve["style"] == "danger" and "cannot be undone" in approve["confirm"]["text"]["text"]


def test_handoff_notice_choice_goes_to_the_agent_queue_not_the_workflow(world):
    sid = world.ticket("Your agent was rude to me, I want to complain about your staff.", subject="Rude")
    world.runner(OfflineProvider()).start(sid)
    notice_id = world.sessions.get(sid).notice_id
    post(world, slack_requests.block_action(notice_id, "take_over"))
    assert world.agent_queue.sent == [
        AgentMessage(type="handoff_follow_up", session_id=sid, notice_id=notice_id)
    ]
    assert world.workflow.answers == {}


def test_customer_text_cannot_mention_people_or_forge_links(world):
    approval = waiting(world)
    hostile = approval.model_copy(
        update={
            "escalation": approval.escalation.model_copy(
                update={"issue": "<!channel> <https://evil.example|Approve>"}
            )
        }
    )
    # Customer text is only ever plain_text (which Slack never formats); no mrkdwn text carries it.
    texts = [t for block in blocks(hostile) for t in text_objects(block)]
    mrkdwn = " ".join(t["text"] for t in texts if t["type"] == "mrkdwn")
    assert "<!channel>" not in mrkdwn and "<https://evil" not in mrkdwn
    assert any(t["type"] == "plain_text" and "<!channel>" in t["text"] for t in texts)
    assert "<!channel>" not in plain_text(hostile)
    assert escape("<!here> & <@U1>") == "&lt;!here&gt; &amp; &lt;@U1&gt;"


def text_objects(node: object) -> list[dict]:
    """Every text object (mrkdwn or plain_text) in a Block Kit structure."""
    if isinstance(node, dict):
        found = [node] if node.get("type") in {"mrkdwn", "plain_text"} and "text" in node else []
        return found + [t for value in node.values() for t in text_objects(value)]
    if isinstance(node, list):
        return [t for item in node for t in text_objects(item)]
    return []


def test_reminders_then_expiry_answer_the_task_as_expired(world):
    approval = waiting(world)
    notifier = world.notifier(max_reminders=1)
    from support_agent.models import NotifyMessage

    def remind(token: str) -> str:
        message = NotifyMessage(
            type="reminder",
            session_id=approval.session_id,
            approval_id=approval.approval_id,
            task_token=token,
        )
        return notifier.handle(message)

    assert remind("tok-2") == "reminded"
    assert world.slack.of("chat.postMessage")[-1]["thread_ts"] == approval.slack_ts
    assert remind("tok-3") == "expired"
    assert world.workflow.answers["tok-3"].kind == "expired"
