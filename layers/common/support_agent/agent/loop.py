"""The turn loop: model turns and tool calls until the session has one outcome — respond, wait for a
person's approval, or hand off. It knows nothing of DynamoDB, Step Functions or Slack: it talks to the
model provider, the tool executor, the token budget port and the run's audit journal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from support_agent.agent.executor import ToolExecutor, ToolOutcome
from support_agent.agent.llm import ModelProvider, ModelRequest, ModelUnavailable, estimate_tokens
from support_agent.agent.prompts import system_prompt
from support_agent.agent.tools import CLASSIFY_TOOL, TOOLS, PendingAction, Tool, ToolContext, offered_tools
from support_agent.agent.triage import Classification, Triage, TriageResult
from support_agent.models import Session, SessionState
from support_agent.rules.audit import Journal
from support_agent.rules.budget import TokenBudget
from support_agent.rules.policy import Policy

MIN_OUTPUT_TOKENS = 256
REASON_LIMIT = 160
DEFAULT_MAX_TOKENS = 1500


@dataclass(frozen=True)
class Respond:
    """Send the public reply and finish."""

    body: str
    note: str
    status: str


@dataclass(frozen=True)
class AwaitApproval:
    """Stop until a person decides this call."""

    pending: PendingAction


@dataclass(frozen=True)
class HandOff:
    """Give the ticket to people, with why and (optionally) a draft they may send."""

    reason: str
    summary: str
    draft: str = ""


Outcome = Respond | AwaitApproval | HandOff


@dataclass
class Run:
    """One invocation's work on one session."""

    session: Session
    ctx: ToolContext
    executor: ToolExecutor
    journal: Journal
    triage: TriageResult
    messages: list[dict[str, Any]] = field(default_factory=list)
    tokens_used: int = 0
    turns: int = 0
    actions: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    reply_allowed: bool = False  # a person decided: the agent may tell the customer, whatever the route
    state: SessionState = SessionState.RUNNING  # what the session is in storage (the next commit's guard)

    @property
    def sid(self) -> str:
        return self.session.session_id

    @property
    def ticket_text(self) -> str:
        return f"{self.session.ticket.subject}\n{self.session.ticket.body}"


def tool_result(tool_use_id: str, content: str, is_error: bool = False) -> dict[str, Any]:
    """A tool_result block as the Messages API expects it."""
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_use_id, "content": content}
    if is_error:
        block["is_error"] = True
    return block


@dataclass
class TurnLoop:
    policy: Policy
    provider: ModelProvider
    tokens: TokenBudget
    max_turns: int = 8
    max_tokens_per_call: int = DEFAULT_MAX_TOKENS
    tools: tuple[Tool, ...] = TOOLS

    def run(self, run: Run) -> Outcome:
        """Turns until an outcome; every model call is budgeted and recorded in the run's journal."""
        system = system_prompt(self.policy)
        limit = self.policy.budget.max_tokens_per_session
        for _turn in range(self.max_turns):
            tools = self._schemas(run)
            room = limit - run.tokens_used - estimate_tokens([system, tools, run.messages])
            if room < MIN_OUTPUT_TOKENS:
                return HandOff("token_budget_exhausted", f"{run.tokens_used}/{limit} tokens used")
            request = ModelRequest(system, tools, list(run.messages), min(self.max_tokens_per_call, room))
            try:
                response = self.provider.create(request)
            except ModelUnavailable as exc:
                run.journal.record("model:invoke", "model", "n/a", "unavailable", {"error": str(exc)[:200]})
                return HandOff("model_unavailable", str(exc))
            run.turns += 1
            usage = response.usage
            model = f"model/{response.model or self.provider.name}"
            run.journal.record("model:invoke", model, "n/a", response.stop_reason or "", usage.model_dump())
            charged = self.tokens.charge(run.sid, usage.total, limit)
            if charged is None:
                run.tokens_used = self.tokens.record_overrun(run.sid, usage.total)
                return HandOff("token_budget_exhausted", f"{run.tokens_used}/{limit} tokens used")
            run.tokens_used = charged
            run.messages.append({"role": "assistant", "content": response.content})
            run.notes.extend(b["text"] for b in response.content if b.get("type") == "text" and b.get("text"))
            uses = [b for b in response.content if b.get("type") == "tool_use"]
            if not uses:
                return HandOff("model_ended_without_action", "", draft=" ".join(run.notes[-1:]))
            outcome = self._tool_round(run, uses)
            if outcome is not None:
                return outcome
        return HandOff("turn_limit", f"no outcome after {self.max_turns} model turns")

    def _schemas(self, run: Run) -> list[dict[str, Any]]:
        route = "auto" if run.reply_allowed else run.triage.route
        return [CLASSIFY_TOOL, *(t.schema() for t in offered_tools(self.policy, route, self.tools))]

    def _tool_round(self, run: Run, uses: list[dict[str, Any]]) -> Outcome | None:
        """Run one turn's calls; every call gets its result in the next user message, even when we stop.

        A call that needs approval stops the round: calls after it are answered "not run", and the
        approved call's result joins this same message on resume (rules.sessions keeps the transcript).
        """
        results: list[dict[str, Any]] = []
        stop: Outcome | None = None
        for block in uses:
            if stop is not None:
                results.append(
                    tool_result(block["id"], "not run: the turn stopped for a person's decision", True)
                )
                continue
            if block["name"] == "classify_ticket":
                results.append(self._classify(run, block))
                continue
            outcome = run.executor.execute(block["name"], block.get("input"), block["id"])
            stop = self._act_on(run, block, outcome)
            if not isinstance(stop, AwaitApproval):
                results.append(tool_result(block["id"], outcome.for_model(), outcome.kind == "error"))
        if not isinstance(stop, Respond | HandOff):  # the transcript ends with a respond or a handoff
            run.messages.append({"role": "user", "content": results})
        return stop

    def _classify(self, run: Run, block: dict[str, Any]) -> dict[str, Any]:
        try:
            classification = Classification.model_validate(block.get("input"))
        except ValidationError as exc:
            return tool_result(block["id"], f"invalid classification: {exc.errors()[0]['msg']}", True)
        before = run.triage.route
        decided = Triage(self.policy).decide(run.ticket_text, classification)
        # The guard can only make the route stricter: once escalated, it stays escalated.
        run.triage = decided if decided.route == "escalate" or before == "auto" else run.triage
        run.journal.record(
            "triage:classify",
            "model",
            run.triage.route,
            run.triage.category,
            {
                "model_category": classification.category,
                "confidence": classification.confidence,
                "sentiment": classification.sentiment,
                "language": classification.language,
                "matched_rules": run.triage.matched_rules,
            },
        )
        return tool_result(
            block["id"], json.dumps({"route": run.triage.route, "category": run.triage.category})
        )

    def _act_on(self, run: Run, block: dict[str, Any], outcome: ToolOutcome) -> Outcome | None:
        if outcome.kind == "identity_mismatch":
            return HandOff("identity_mismatch", "requester email does not match the account to change")
        if outcome.kind == "approval" and outcome.pending:
            return AwaitApproval(outcome.pending)
        if outcome.kind == "result" and outcome.side_effect:
            run.actions.append({"tool": block["name"], "args": block.get("input"), "approved_by": None})
        if outcome.kind != "terminal":
            return None
        args = outcome.content
        if outcome.terminal == "respond":
            if run.triage.route != "auto" and not run.reply_allowed:
                return HandOff(
                    "reply_refused_route_escalated", "the model tried to reply to an escalated ticket"
                )
            return Respond(args["body"], args.get("internal_note", ""), args["status"])
        # The model's own reason is the session's reason (one line): people and reports see why, not a code.
        why = " ".join(str(args["reason"]).split())[:REASON_LIMIT].rstrip(". ")
        return HandOff(why, args["summary"], draft=args.get("draft_reply", ""))
