"""Adding an approval-gated tool is one entry in the tool table plus its adapter: this test defines one
(a trial extension, with its own in-memory adapter) and takes it through approval, partial and deny,
with nothing else in the code knowing about it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import Field
from support_agent.agent.llm import ReplayProvider
from support_agent.agent.tools import TOOLS, ApprovalSpec, Args, Tool, ToolContext
from support_agent.models import Approval, NotifyMessage
from support_agent.rules.policy import parse_policy
from support_agent_local import slack_requests
from support_agent_local.memory import MemoryWorld

from tests.helpers import ROOT

RULE = """  - billing:extend_trial on customers/{requester}:
      requires_approval: true
      approval_channel: slack:#support-escalations
"""


def policy_with_rule() -> Any:
    text = (ROOT / "policies" / "acme-support.yaml").read_text()
    return parse_policy(text.replace("policies:\n", "policies:\n" + RULE, 1))


class TrialArgs(Args):
    days: int = Field(gt=0, le=90, description="days to add to the trial")


@dataclass
class TrialDesk:
    """The tool's adapter: trials extended, once per idempotency key."""

    extended: dict[str, tuple[str, int]] = field(default_factory=dict)

    def extend(self, customer_id: str, days: int, key: str) -> dict[str, Any]:
        self.extended.setdefault(key, (customer_id, days))
        return {"customer_id": customer_id, "days": self.extended[key][1]}


def trial_tool(desk: TrialDesk) -> Tool:
    def run(ctx: ToolContext, a: TrialArgs) -> Any:
        return desk.extend(ctx.bound, a.days, ctx.key("extend_trial", a))

    return Tool(
        "extend_trial",
        "Extend the customer's trial by some days. Needs a person's approval.",
        TrialArgs,
        "billing:extend_trial",
        lambda c, a: f"customers/{c.bound}",
        run,
        approval=ApprovalSpec(
            noun="Extension",
            describe=lambda args, _lookup: f"Extend the trial by {args['days']} days",
            partial="days",
            partial_label="extension",
        ),
        bound=True,  # the requester's own account: the model names no customer
    )


def script() -> ReplayProvider:
    def msg(*blocks: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": "m",
            "type": "message",
            "role": "assistant",
            "model": "claude-test",
            "content": list(blocks),
            "stop_reason": "tool_use",
            "stop_sequence": None,
            "usage": {"input_tokens": 900, "output_tokens": 40},
        }

    classify = {
        "type": "tool_use",
        "id": "toolu_c",
        "name": "classify_ticket",
        "input": {"category": "plan_question", "confidence": 0.9},
    }
    ask = {
        "type": "tool_use",
        "id": "toolu_t",
        "name": "extend_trial",
        "input": {"days": 30},
    }
    reply = {
        "type": "tool_use",
        "id": "toolu_r",
        "name": "reply_to_customer",
        "input": {"body": "Hi Jane, here is what we decided about your trial.", "status": "solved"},
    }
    return ReplayProvider([msg(classify, ask), msg(reply)])


@pytest.mark.parametrize(
    ("click", "submission", "extended"),
    [("approve", None, 30), ("partial", "10", 10), ("deny", "trials are extended once per customer", None)],
)
def test_a_new_gated_tool_goes_through_approval_partial_and_deny(click, submission, extended):
    desk = TrialDesk()
    world = MemoryWorld(policy_with_rule())
    runner = world.runner(script(), tools=(*TOOLS, trial_tool(desk)))
    sid = world.ticket("Could I get a few more days on my trial?", subject="Trial", customer_id="cus_jane")
    # The agent proposes the extension; it waits for a person with the tool's own buttons and words.
    assert runner.start(sid).outcome == "approval"
    approval = world.approvals.get(world.sessions.get(sid).approval_id)
    assert isinstance(approval, Approval)
    assert [o.label for o in approval.offers] == [
        "Approve Extension",
        "Partial Extension",
        "Deny",
        "Reply Manually",
    ]
    assert approval.escalation.recommendation == "Extend the trial by 30 days"
    assert approval.partial is not None and approval.partial.maximum == 30
    world.notifier().handle(
        NotifyMessage(type="request", session_id=sid, approval_id=approval.approval_id, task_token="tok")
    )
    assert "Extend the trial by 30 days" in world.slack.of("chat.postMessage")[-1]["text"]

    def post(payload: dict[str, Any]) -> None:
        body = slack_requests.form_body(payload)
        world.endpoint().handle(slack_requests.sign_headers(world.signing_secret, body), body)

    # A person decides in Slack.
    post(slack_requests.block_action(approval.approval_id, click))
    if submission is not None:
        post(slack_requests.view_submission(approval.approval_id, click, submission))
    decided = world.approvals.get(approval.approval_id)
    assert decided.decision is not None and decided.decision.kind == click
    # The agent carries it out: exactly the decided parameters, once.
    assert runner.resume(sid, approval.approval_id, decided.decision).outcome == "respond"
    assert list(desk.extended.values()) == ([("cus_jane", extended)] if extended else [])
    assert list(desk.extended) in ([], [approval.approval_id])
