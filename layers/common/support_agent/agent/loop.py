"""The turn loop: model turns and tool calls until the session has one outcome — respond, wait for a
person's approval, or hand off. It knows nothing of DynamoDB, Step Functions or Slack: it talks to the
model provider, the tool executor, the token budget port and the run's audit journal.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from support_agent.agent.executor import ToolExecutor, ToolOutcome
from support_agent.agent.llm import ModelProvider, ModelRequest, ModelUnavailable, estimate_tokens
from support_agent.agent.prompts import system_prompt
from support_agent.agent.tools import TOOLS, PendingAction, Tool, ToolContext, classify_tool, offered_tools
from support_agent.agent.triage import Classification, Triage, TriageResult
from support_agent.models import Session, SessionState
from support_agent.rules.audit import Journal
from support_agent.rules.budget import TokenBudget
from support_agent.rules.policy import Policy
from support_agent.text import MODEL_TEXT_LIMIT

MIN_OUTPUT_TOKENS = 256
REASON_LIMIT = 160
DEFAULT_MAX_TOKENS = 1500
# Input is reserved at twice its estimate (see TurnLoop.run).
INPUT_MARGIN = 2
# Tokens a first call's input adds to the ticket's own text: its history and customer record as JSON.
CONTEXT_ALLOWANCE = 1000
# Stop reasons after which the turn's content is complete and its tool calls may run.
COMPLETE_TURN = frozenset({"end_turn", "tool_use", "stop_sequence"})
# Before each model call the function must have this much time beyond one call's timeout: the outcome's
# commit, the helpdesk update and the handoff itself (a handoff is the way out, so it must fit).
FINISH_SECONDS = 20.0


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
    # Reserved by this run and not yet used: what its next calls may spend without reserving again.
    tokens_held: int = 0
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
    # Seconds left before the function is stopped (Lambda's context), and one model call's timeout.
    remaining: Callable[[], float] | None = None
    call_timeout: float = 30.0

    def run(self, run: Run) -> Outcome:
        """Turns until an outcome; every model call is budgeted and recorded in the run's journal."""
        system, tools = system_prompt(self.policy), self._schemas()
        limit = self.policy.budget.max_tokens_per_session
        truncated = 0
        for _turn in range(self.max_turns):
            if self.remaining is not None and self.remaining() < self.call_timeout + FINISH_SECONDS:
                left = f"{self.remaining():.0f} s left, a model call may take {self.call_timeout:.0f} s"
                return HandOff("out_of_time", f"the function would be stopped mid-call ({left})")
            # The input is counted at one token per 4 characters; reserving twice that covers text that
            # tokenises worse (other scripts, JSON), so what a call really uses stays within its reservation.
            prompt = INPUT_MARGIN * estimate_tokens([system, tools, run.messages])
            room = limit - run.tokens_used - prompt
            if room < MIN_OUTPUT_TOKENS:
                return HandOff("token_budget_exhausted", f"{run.tokens_used}/{limit} tokens used")
            # A turn cut off by max_tokens is asked again once with twice the room, where the budget allows.
            want = self.max_tokens_per_call * (2 if truncated else 1)
            budget = self.remaining() - FINISH_SECONDS if self.remaining is not None else None
            request = ModelRequest(system, tools, list(run.messages), min(want, room), time_budget=budget)
            if not self._hold(run, prompt + request.max_tokens, limit):
                return HandOff("token_budget_exhausted", f"{run.tokens_used}/{limit} tokens used or reserved")
            try:
                response = self.provider.create(request)
            except ModelUnavailable as exc:
                run.journal.record("model:invoke", "model", "n/a", "unavailable", {"error": str(exc)[:200]})
                return HandOff("model_unavailable", str(exc))
            run.turns += 1
            usage = response.usage
            model = f"model/{response.model or self.provider.name}"
            run.journal.record("model:invoke", model, "n/a", response.stop_reason or "", usage.model_dump())
            run.tokens_used += usage.total
            run.tokens_held = max(0, run.tokens_held - usage.total)
            stop = response.stop_reason
            if stop == "max_tokens":
                # Its tool calls may be cut short: none of them runs, and the turn is not kept.
                if truncated or request.max_tokens >= room:
                    return HandOff(
                        "model_output_truncated",
                        f"the model's answer was cut off at {request.max_tokens} output tokens; nothing ran",
                    )
                truncated += 1
                continue
            if stop == "refusal":
                return HandOff("model_refused", "the model declined to handle this ticket")
            if stop == "pause_turn":
                # The API paused a long turn: send it back as it is and the model carries on.
                self._keep_turn(run, response.content)
                continue
            if stop is not None and stop not in COMPLETE_TURN:
                return HandOff("model_stopped", f"the model stopped with {stop!r}; nothing of that turn ran")
            truncated = 0
            self._keep_turn(run, response.content)
            run.notes.extend(b["text"] for b in response.content if b.get("type") == "text" and b.get("text"))
            uses = [b for b in response.content if b.get("type") == "tool_use"]
            if not uses:
                return HandOff("model_ended_without_action", "", draft=" ".join(run.notes[-1:]))
            outcome = self._tool_round(run, uses)
            if outcome is not None:
                return outcome
        return HandOff("turn_limit", f"no outcome after {self.max_turns} model turns")

    def opening_reservation(self) -> int:
        """Tokens a new session's claim reserves in its own write: two first calls' worth at the longest
        ticket the model is shown (prompt, tools, the ticket, its history and customer record; input
        counted twice, plus the output), within the session's limit. The budget is the session's own, so
        holding more than a short ticket needs takes nothing from anyone; the commit settles it."""
        prompt = estimate_tokens([system_prompt(self.policy), self._schemas()])
        ticket = MODEL_TEXT_LIMIT // 4 + CONTEXT_ALLOWANCE
        one_call = INPUT_MARGIN * (prompt + ticket) + self.max_tokens_per_call
        return min(2 * one_call, self.policy.budget.max_tokens_per_session)

    def _hold(self, run: Run, need: int, limit: int) -> bool:
        """Make sure the run holds a reservation of `need` tokens for its next call.

        Reservations are durable (a killed run's stay counted) and released by the outcome's commit, which
        sets the session's committed tokens back to what was used. A run reserves two calls' worth when it
        can, so most runs write one reservation, not one per call.
        """
        if run.tokens_held >= need:
            return True
        for amount in (2 * need - run.tokens_held, need - run.tokens_held):
            if self.tokens.reserve(run.sid, amount, limit):
                run.tokens_held += amount
                return True
        return False

    @staticmethod
    def _keep_turn(run: Run, content: list[dict[str, Any]]) -> None:
        """Add the model's turn to the transcript; the rest of a paused turn joins the paused part."""
        if run.messages and run.messages[-1]["role"] == "assistant":
            run.messages[-1] = {"role": "assistant", "content": [*run.messages[-1]["content"], *content]}
        else:
            run.messages.append({"role": "assistant", "content": content})

    def _schemas(self) -> list[dict[str, Any]]:
        """The same list for every turn and session of a deployment (tools lead the cached prefix)."""
        return [classify_tool(), *(t.schema() for t in offered_tools(self.policy, self.tools))]

    def _tool_round(self, run: Run, uses: list[dict[str, Any]]) -> Outcome | None:
        """Run one turn's calls; every call gets its result in the next user message, even when we stop.

        A call that needs approval stops the round: calls after it are answered "not run", and the
        approved call's result joins this same message on resume (rules.sessions keeps the transcript).
        """
        results: list[dict[str, Any]] = []
        stop: Outcome | None = None
        for block in uses:
            # Re-read per call: a classification earlier in this round may have escalated the route.
            run.ctx.may_reply = run.reply_allowed or run.triage.route == "auto"
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
        if outcome.terminal == "respond":  # the executor refused it unless the route allows a reply
            return Respond(args["body"], args.get("internal_note", ""), args["status"])
        # The model's own reason is the session's reason (one line): people and reports see why, not a code.
        why = " ".join(str(args["reason"]).split())[:REASON_LIMIT].rstrip(". ")
        return HandOff(why, args["summary"], draft=args.get("draft_reply", ""))
