"""Human decisions: carrying out what a person decided on an approval, and following up a handoff notice.

The stored decision is the authority (a queue message only says "look"): the parameters must still
match their hash, a partial decision stays within the recorded bound, and the policy is checked again
when the action runs. The approval id is the adapter's idempotency key, so the action runs at most once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from support_agent.adapters.ports import Adapters
from support_agent.agent.loop import HandOff, Outcome, Respond, Run, tool_result
from support_agent.agent.outcomes import RunResult
from support_agent.agent.tools import TARGET, args_hash
from support_agent.models import Approval, Decision, HandoffNotice, Session, SessionState
from support_agent.rules.audit import Journal
from support_agent.rules.policy import Policy
from support_agent.rules.sessions import SessionChange, SessionCommitter, TransitionRefused


def carry_out(run: Run, approval: Approval, made: Decision) -> Outcome | None:
    """Apply a person's decision to the call the session waits for; None: the model goes on from here."""
    run.reply_allowed = True  # a person has decided; the agent may now tell the customer
    run.journal.record(
        "approval:resume",
        f"approvals/{approval.approval_id}",
        made.kind,
        "running",
        {"by": made.by, "tool": approval.tool},
    )
    if made.kind == "reply_manually":
        return Respond(made.reply, f"Reply written by {made.who}.", "solved")
    if made.kind == "take_over":
        return HandOff("taken_over_by_human", f"{made.who} took over")
    if made.kind == "deny":
        denial = {"decision": "deny", "reason": made.reason, "by": made.who}
        answer_pending(run, approval, approval.args, json.dumps(denial), error=False)
        return None
    if made.kind not in {"approve", "partial"}:
        return HandOff("decision_not_understood", f"no way to carry out a {made.kind} decision")
    args = dict(approval.args)
    if args_hash(args) != approval.args_hash:
        return HandOff("approval_parameters_changed", "stored parameters do not match their hash")
    if made.kind == "partial":
        bound = approval.partial
        if bound is None or made.amount is None or not 0 < made.amount <= bound.maximum:
            return HandOff("partial_amount_invalid", "partial amount is not within the approved maximum")
        args[bound.argument] = made.amount
    run.ctx.idempotency_prefix = (
        approval.approval_id
    )  # the adapter call is keyed by the approval: at most once
    outcome = run.executor.execute(approval.tool, args, approval.tool_use_id, approved=True)
    if outcome.kind == "result":
        run.actions.append(
            {
                "tool": approval.tool,
                "args": args,
                "approved_by": made.who,
                "approval_id": approval.approval_id,
            }
        )
    answer_pending(run, approval, args, outcome.for_model(), error=outcome.kind == "error")
    return None


def answer_pending(run: Run, approval: Approval, args: dict[str, Any], content: str, *, error: bool) -> None:
    """Show the model the decided parameters (not the proposed ones) and the result of the decision.

    The result joins the user message that answered the other calls of the same turn, so every tool_use
    of that turn is answered in the next message, as the Messages API requires. A bound tool's target
    account is the executor's, not an argument the model gave, so the model is not shown it.
    """
    tool = run.executor.tools.get(approval.tool)
    shown = {k: v for k, v in args.items() if k != TARGET} if tool is not None and tool.bound else args
    for message in reversed(run.messages):
        if message["role"] == "assistant" and not isinstance(message["content"], str):
            for block in message["content"]:
                if block.get("type") == "tool_use" and block.get("id") == approval.tool_use_id:
                    block["input"] = shown
            break
    result = tool_result(approval.tool_use_id, content, error)
    last = run.messages[-1] if run.messages else None
    if last is not None and last["role"] == "user" and isinstance(last["content"], list):
        last["content"].append(result)
    else:
        run.messages.append({"role": "user", "content": [result]})


@dataclass
class HandoffFollowUps:
    """A person answered a handoff notice: take the ticket over, or send the agent's draft (at most once)."""

    policy: Policy
    adapters: Adapters
    commits: SessionCommitter

    def follow_up(
        self, session: Session, notice: HandoffNotice, made: Decision, journal: Journal
    ) -> RunResult:
        ticket = session.ticket
        if made.kind == "take_over":
            self.adapters.tickets.assign(ticket.key, f"slack:{made.by}")
            journal.record("tickets:assign", f"tickets/{ticket.key}", "human decision", "taken_over")
            journal.flush()
            return RunResult("handoff", f"taken over by {made.who}")
        # Only the draft people were shown, and only when the notice offered to send it.
        draft = notice.escalation.draft_reply
        stored = session.escalation.draft_reply if session.escalation else ""
        verdict = self.policy.authorize("tickets:respond", f"queue/{ticket.queue}")
        offered = notice.offer("send_draft") is not None
        if made.kind != "send_draft" or not draft or draft != stored or not offered or not verdict.allowed:
            return RunResult("skipped", "nothing to send")
        journal.record("tickets:respond", f"queue/{ticket.queue}", verdict.describe(), "draft_sent")
        # Closing first makes the send at most once: a redelivered message finds the session closed.
        change = SessionChange(
            session.session_id,
            SessionState.HANDOFF,
            SessionState.CLOSED,
            journal.drain(),
            {"replies": [*session.replies, draft], "outcome": "respond"},
        )
        try:
            self.commits.commit(change)
        except TransitionRefused:
            return RunResult("skipped", "session already closed")
        note = f"Agent's draft sent by {made.who}."
        self.adapters.tickets.respond(ticket.key, draft, note, "solved", f"{session.session_id}-draft")
        return RunResult("respond", f"draft sent by {made.who}")
