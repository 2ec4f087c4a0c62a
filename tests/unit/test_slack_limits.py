"""Every text limit of Slack and of our models agrees: the longest texts render within Block Kit's limits
(cut with an ellipsis), what a modal accepts is what a decision stores and reads back, and what Slack
cannot send is refused with a message instead of a 5xx.

Block Kit's limits checked here are the documented ones (docs.slack.dev, Block Kit reference)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter
from support_agent.models import Approval, Decision, HandoffNotice, StoredRequest
from support_agent.slack.endpoint import modal
from support_agent.slack.render import blocks, decided_blocks
from support_agent_local import slack_requests
from support_agent_local.memory import MemoryWorld

from tests.unit.test_slack_endpoint import POLICY, post, waiting

# Characters: Block Kit's documented maxima.
HEADER, SECTION, FIELD, TEXT_OBJECT, BUTTON, BUTTON_VALUE = 150, 3000, 2000, 3000, 75, 2000
CONFIRM_TITLE, CONFIRM_TEXT, CONFIRM_BUTTON, LABEL, INPUT, MODAL_TITLE, ID = 100, 300, 30, 2000, 3000, 24, 255
MESSAGE_BLOCKS, FIELDS, CONTEXT_ELEMENTS, ACTION_ELEMENTS = 50, 10, 10, 25


@pytest.fixture
def world() -> MemoryWorld:
    return MemoryWorld(POLICY)


def violations(block_list: list[dict[str, Any]], *, surface: str = "message") -> list[str]:
    """Where `block_list` breaks a Block Kit limit (empty when it is within all of them)."""
    found: list[str] = []

    def over(what: str, text: str, limit: int) -> None:
        if not 0 < len(text) <= limit:
            found.append(f"{what}: {len(text)} characters (limit {limit})")

    if surface == "message" and len(block_list) > MESSAGE_BLOCKS:
        found.append(f"{len(block_list)} blocks")
    for block in block_list:
        kind = block["type"]
        over(f"{kind}.block_id", block.get("block_id", "x"), ID)
        if kind == "header":
            over("header", block["text"]["text"], HEADER)
        elif kind == "section":
            if "text" in block:
                over("section.text", block["text"]["text"], SECTION)
            fields = block.get("fields", [])
            if len(fields) > FIELDS:
                found.append(f"section with {len(fields)} fields")
            for field in fields:
                over("section.field", field["text"], FIELD)
        elif kind == "context":
            if len(block["elements"]) > CONTEXT_ELEMENTS:
                found.append("context with too many elements")
            for element in block["elements"]:
                over("context element", element["text"], TEXT_OBJECT)
        elif kind == "actions":
            if len(block["elements"]) > ACTION_ELEMENTS:
                found.append("actions with too many elements")
            for button in block["elements"]:
                over("button.text", button["text"]["text"], BUTTON)
                over("button.value", button["value"], BUTTON_VALUE)
                over("button.action_id", button["action_id"], ID)
                confirm = button.get("confirm")
                if confirm:
                    over("confirm.title", confirm["title"]["text"], CONFIRM_TITLE)
                    over("confirm.text", confirm["text"]["text"], CONFIRM_TEXT)
                    over("confirm.confirm", confirm["confirm"]["text"], CONFIRM_BUTTON)
                    over("confirm.deny", confirm["deny"]["text"], CONFIRM_BUTTON)
        elif kind == "input":
            over("input.label", block["label"]["text"], LABEL)
            element = block["element"]
            if not 1 <= element["max_length"] <= INPUT:
                found.append(f"max_length {element['max_length']}")
            if len(element.get("initial_value", "")) > element["max_length"]:
                found.append("initial_value longer than max_length")
        else:
            found.append(f"unexpected block {kind}")
    return found


def cut_texts(block_list: list[dict[str, Any]]) -> list[str]:
    """The texts that were cut (they end with an ellipsis)."""
    out = []
    for block in block_list:
        for text in [block.get("text"), *block.get("fields", []), *block.get("elements", [])]:
            if isinstance(text, dict) and str(text.get("text", "")).endswith("…"):
                out.append(text["text"])
    return out


def longest(approval: Approval) -> Approval:
    """The approval with every text from outside far past any limit."""
    huge = "x" * 20_000
    escalation = approval.escalation.model_copy(
        update={
            "subject": huge,
            "requester": huge,
            "issue": huge,
            "agent_notes": huge,
            "recommendation": huge,
            "warnings": [huge, huge],
            "ticket_url": "https://example.com/" + huge,
        }
    )
    return approval.model_copy(update={"escalation": escalation})


def test_longest_texts_render_within_block_kit_limits_cut_with_an_ellipsis(world):
    approval = longest(waiting(world))
    rendered = blocks(approval)
    assert violations(rendered) == []
    cut = cut_texts(rendered)
    assert len(cut) >= 6  # issue, recommendation, requester, notes, warnings, link: each cut, and says so
    assert all(len(t) in {FIELD, SECTION, 2000} for t in cut)
    denial = Decision(
        kind="deny", by="U0APPROVER1", reason="r" * Decision.model_fields["reason"].metadata[0].max_length
    )
    decided = decided_blocks(approval, denial, "10:00")
    assert violations(decided) == []
    line = decided[-1]["elements"][0]["text"]
    assert line.startswith("Denied by <@U0APPROVER1> at 10:00 — rrr") and line.endswith("…")


def test_a_draft_at_the_section_limit_is_shown_whole_and_one_past_it_is_not_offered(world):
    approval = waiting(world)
    base = HandoffNotice(
        notice_id="n-1",
        session_id=approval.session_id,
        channel=approval.channel,
        escalation=approval.escalation,
    )
    for length, shown in [(SECTION, True), (SECTION + 1, False)]:
        draft = "d" * length
        notice = base.model_copy(
            update={"escalation": base.escalation.model_copy(update={"draft_reply": draft})}
        )
        rendered = blocks(notice)
        assert violations(rendered) == []
        assert any(b.get("text", {}).get("text") == draft for b in rendered) is shown


def test_modals_accept_what_a_decision_stores(world):
    approval = waiting(world)
    stored_max = {
        name: next(m.max_length for m in Decision.model_fields[name].metadata if hasattr(m, "max_length"))
        for name in ("reason", "reply")
    }
    for action, name in [("deny", "reason"), ("reply_manually", "reply")]:
        view = modal(approval, action)
        assert violations(view["blocks"], surface="modal") == []
        assert len(view["title"]["text"]) <= MODAL_TITLE
        assert view["blocks"][0]["element"]["max_length"] == stored_max[name] == INPUT


def test_reply_modal_prefills_a_draft_only_when_it_fits_whole(world):
    approval = waiting(world)
    for length, prefilled in [(INPUT, True), (INPUT + 1, False)]:
        draft = "d" * length
        long = approval.model_copy(
            update={"escalation": approval.escalation.model_copy(update={"draft_reply": draft})}
        )
        element = modal(long, "reply_manually")["blocks"][0]["element"]
        assert element.get("initial_value") == (draft if prefilled else None)
        assert violations(modal(long, "reply_manually")["blocks"], surface="modal") == []


def test_deny_reason_at_the_limit_is_recorded_read_back_and_shown_cut(world):
    approval = waiting(world)
    reason = "Already credited. " + "r" * (INPUT - len("Already credited. "))
    answer = post(world, slack_requests.view_submission(approval.approval_id, "deny", f"  {reason}\n"))
    assert answer.status == 200 and answer.body is None
    stored = world.approvals.get(approval.approval_id)
    assert stored.decision.reason == reason
    # Read back as DynamoDB would hand it over: the stored JSON validates again.
    again = TypeAdapter(StoredRequest).validate_python(stored.model_dump(mode="json"))
    assert again.decision.reason == reason
    update = world.slack.of("chat.update")[-1]
    assert violations(update["blocks"]) == []
    assert update["blocks"][-1]["elements"][0]["text"].endswith("…")
    assert [d.reason for d in world.workflow.answers.values()] == [reason]


def test_texts_slack_would_not_send_are_refused_in_the_modal_and_change_nothing(world):
    approval = waiting(world)
    for action, field in [("deny", "reason"), ("reply_manually", "reply")]:
        answer = post(world, slack_requests.view_submission(approval.approval_id, action, "x" * (INPUT + 1)))
        assert answer.status == 200
        assert answer.body["response_action"] == "errors"
        assert str(INPUT) in answer.body["errors"][field]
    assert world.approvals.get(approval.approval_id).status == "pending"
    assert world.workflow.answers == {}


def test_user_names_slack_sends_fit_the_decision(world):
    approval = waiting(world)
    too_long = slack_requests.block_action(approval.approval_id, "approve", username="n" * 257)
    assert post(world, too_long).status == 400  # past what any Slack name is: refused, nothing recorded
    assert world.approvals.get(approval.approval_id).status == "pending"
    longest_name = slack_requests.block_action(approval.approval_id, "approve", username="n" * 256)
    assert post(world, longest_name).status == 200
    assert world.approvals.get(approval.approval_id).decision.by_name == "n" * 256
