"""The agent loop: claim a session, gather context, run the model's tool-use turns, and end in exactly one
of three outcomes: respond, request approval, or hand off to a person. Every model call and tool call is
audited; every state change is a guarded write committed together with its audit entries.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import ValidationError

from support_agent import clock
from support_agent.adapters.ports import Adapters
from support_agent.agent.llm import ModelProvider, ModelRequest, ModelUnavailable, estimate_tokens
from support_agent.agent.prompts import system_prompt, ticket_message
from support_agent.agent.tools import (
    CLASSIFY_TOOL,
    HUMAN_GROUP,
    PendingAction,
    ToolContext,
    ToolExecutor,
    ToolOutcome,
    args_hash,
    offered_tools,
)
from support_agent.approvals import Approval, ApprovalRepository
from support_agent.audit import AuditTrail, WriteRefused
from support_agent.budget import SessionTokenBudget
from support_agent.escalation import money
from support_agent.models import Customer, Session, SessionState
from support_agent.policy import Policy
from support_agent.sessions import SessionRepository, TransitionRefused
from support_agent.triage import Classification, Triage, TriageResult

Outcome = Literal["respond", "approval", "handoff", "skipped"]
MIN_OUTPUT_TOKENS = 256
DEFAULT_MAX_TOKENS = 1500


class WorkflowStarter(Protocol):
    def start(self, approval_id: str, payload: dict[str, Any]) -> None:
        """Start the approval workflow execution named `approval_id` (a second start is a no-op)."""
        ...


class HandoffNotifier(Protocol):
    def notify(self, approval_id: str, session_id: str, channel: str) -> None:
        """Tell people in Slack that a ticket was handed to them (Take over / Send agent's draft)."""
        ...


@dataclass
class RunResult:
    outcome: Outcome
    reason: str = ""
    approval_id: str | None = None


@dataclass
class _Run:
    """State of one invocation's work on one session."""

    session: Session
    ctx: ToolContext
    executor: ToolExecutor
    triage: TriageResult
    messages: list[dict[str, Any]] = field(default_factory=list)
    tokens_used: int = 0
    turns: int = 0
    actions: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    reply_allowed: bool = False

    @property
    def sid(self) -> str:
        return self.session.session_id


@dataclass
class AgentRunner:
    policy: Policy
    sessions: SessionRepository
    approvals: ApprovalRepository
    audit: AuditTrail
    tokens: SessionTokenBudget
    adapters: Adapters
    provider: ModelProvider
    workflow: WorkflowStarter
    handoff_notices: HandoffNotifier | None = None
    max_turns: int = 8
    max_tokens_per_call: int = DEFAULT_MAX_TOKENS

    # --- entry points --------------------------------------------------------------------------------

    def start(self, session_id: str) -> RunResult:
        """Run a queued session. A redelivered message finds it claimed already and does nothing."""
        try:
            session = self.sessions.transition(session_id, SessionState.QUEUED, SessionState.RUNNING)
        except TransitionRefused:
            return RunResult("skipped", "session is not queued (duplicate or late message)")
        run = self._new_run(session)
        self._record(
            run, "session:claim", f"sessions/{session_id}", "n/a", "running", {"provider": self.provider.name}
        )
        self._gather(run)
        run.messages.append(
            {
                "role": "user",
                "content": ticket_message(self._ticket_data(run), run.triage.route, run.triage.category),
            }
        )
        return self._loop(run)

    def resume(self, session_id: str, approval_id: str, decision: dict[str, Any]) -> RunResult:
        """Carry out a recorded human decision. The stored approval, not the message, is the authority."""
        approval = self.approvals.get(approval_id)
        if approval is None or approval.session_id != session_id or approval.decision is None:
            return RunResult("skipped", "no recorded decision for this approval")
        if approval.kind == "handoff":
            return self.follow_up_handoff(session_id, approval)
        if approval.decision.kind != decision.get("kind"):
            return RunResult("skipped", "the message does not match the recorded decision")
        run = self._claim_awaiting(session_id)
        if run is None:
            return RunResult("skipped", "session is not awaiting approval (duplicate or late message)")
        run.reply_allowed = True  # a person has decided; the agent may now tell the customer
        made = approval.decision
        self._record(
            run,
            "approval:resume",
            f"approvals/{approval_id}",
            made.kind,
            "running",
            {"by": made.by, "tool": approval.tool},
        )
        if made.kind == "reply_manually":
            return self._respond(run, made.reply, f"Reply written by {made.by_name or made.by}.", "solved")
        if made.kind in {"deny", "take_over"}:
            result: dict[str, Any] = {
                "decision": "deny",
                "reason": made.reason,
                "by": made.by_name or made.by,
            }
            if made.kind == "take_over":
                return self._handoff(run, "taken_over_by_human", f"{made.by_name or made.by} took over")
            self._answer_pending(run, approval.tool_use_id or "", approval.args, json.dumps(result), False)
            return self._loop(run)
        args = dict(approval.args)
        if args_hash(args) != approval.args_hash:
            return self._handoff(
                run, "approval_parameters_changed", "stored parameters do not match their hash"
            )
        if made.kind == "partial":
            if made.amount_cents is None or not 0 < made.amount_cents <= int(args.get("amount_cents", 0)):
                return self._handoff(
                    run, "partial_amount_invalid", "partial amount is not within the approved maximum"
                )
            args["amount_cents"] = made.amount_cents
        run.ctx.idempotency_prefix = approval_id  # the adapter call is keyed by the approval: at most once
        outcome = run.executor.execute(approval.tool or "", args, approval.tool_use_id or "", approved=True)
        if outcome.kind == "result":
            run.actions.append(
                {
                    "tool": approval.tool,
                    "args": args,
                    "approved_by": made.by_name or made.by,
                    "approval_id": approval_id,
                }
            )
        self._answer_pending(
            run, approval.tool_use_id or "", args, outcome.for_model(), outcome.kind == "error"
        )
        return self._loop(run)

    def expire(self, session_id: str, approval_id: str) -> RunResult:
        """Nobody decided in time: the ticket goes to people."""
        run = self._claim_awaiting(session_id)
        if run is None:
            return RunResult("skipped", "session is not awaiting approval")
        return self._handoff(run, "approval_expired", f"approval {approval_id} expired without a decision")

    def _claim_awaiting(self, session_id: str) -> _Run | None:
        """Take a session waiting on a person back to running, with its transcript; None if it was not waiting."""
        try:
            session = self.sessions.transition(
                session_id, SessionState.AWAITING_APPROVAL, SessionState.RUNNING
            )
        except TransitionRefused:
            return None
        run = self._new_run(session)
        run.messages = list(session.transcript)
        run.actions = list(session.actions)
        return run

    def _answer_pending(
        self, run: _Run, tool_use_id: str, args: dict[str, Any], content: str, error: bool
    ) -> None:
        """Show the model the decided parameters (not the proposed ones) and the result of the decision."""
        for message in reversed(run.messages):
            if message["role"] != "assistant" or isinstance(message["content"], str):
                continue
            for block in message["content"]:
                if block.get("type") == "tool_use" and block.get("id") == tool_use_id:
                    block["input"] = args
            break
        run.messages.append({"role": "user", "content": [_tool_result(tool_use_id, content, error)]})

    # --- setup ---------------------------------------------------------------------------------------

    def _new_run(self, session: Session) -> _Run:
        ctx = ToolContext(session_id=session.session_id, ticket=session.ticket, adapters=self.adapters)
        executor = ToolExecutor(self.policy, self.audit, ctx)
        ticket_text = f"{session.ticket.subject}\n{session.ticket.body}"
        triage = Triage(self.policy).decide(ticket_text)
        return _Run(session, ctx, executor, triage, tokens_used=session.tokens_used)

    def _gather(self, run: _Run) -> None:
        """Context every ticket needs, fetched up front through the same policy checks as the model's calls."""
        self.adapters.tickets.ensure_ticket(run.session.ticket)
        run.ctx.observed["history"] = run.executor.execute("get_ticket_history", {}).content
        ticket = run.session.ticket
        if ticket.customer_id:
            found = run.executor.execute("get_customer", {"customer_id": ticket.customer_id})
        else:
            found = run.executor.execute("find_customer_by_email", {"email": ticket.requester.email})
        if isinstance(found.content, Customer):
            run.ctx.observed["customer"] = found.content

    def _ticket_data(self, run: _Run) -> dict[str, Any]:
        ticket = run.session.ticket
        customer = run.ctx.observed.get("customer")
        history = run.ctx.observed.get("history")
        return {
            "ticket": {
                "id": ticket.id,
                "subject": ticket.subject,
                "body": ticket.body,
                "requester": ticket.requester.model_dump(),
                "created_at": ticket.created_at,
            },
            "history": [c.model_dump() for c in history] if isinstance(history, list) else [],
            "customer": customer.model_dump() if customer else None,
            "today": clock.now().date().isoformat(),
            "triage": {"route": run.triage.route, "category": run.triage.category},
        }

    # --- the loop ------------------------------------------------------------------------------------

    def _tools(self, run: _Run) -> list[dict[str, Any]]:
        route = "auto" if run.reply_allowed else run.triage.route
        return [CLASSIFY_TOOL, *(t.schema() for t in offered_tools(self.policy, route))]

    def _loop(self, run: _Run) -> RunResult:
        system = system_prompt(self.policy)
        limit = self.policy.budget.max_tokens_per_session
        for _turn in range(self.max_turns):
            tools = self._tools(run)
            estimate = estimate_tokens([system, tools, run.messages])
            room = limit - run.tokens_used - estimate
            if room < MIN_OUTPUT_TOKENS:
                return self._handoff(run, "token_budget_exhausted", f"{run.tokens_used}/{limit} tokens used")
            request = ModelRequest(system, tools, list(run.messages), min(self.max_tokens_per_call, room))
            try:
                response = self.provider.create(request)
            except ModelUnavailable as exc:
                self._record(run, "model:invoke", "model", "n/a", "unavailable", {"error": str(exc)[:200]})
                return self._handoff(run, "model_unavailable", str(exc))
            run.turns += 1
            usage = response.usage
            self._record(
                run,
                "model:invoke",
                f"model/{response.model or self.provider.name}",
                "n/a",
                response.stop_reason or "",
                usage.model_dump(),
            )
            charged = self.tokens.charge(run.sid, usage.total, limit)
            if charged is None:
                run.tokens_used = self.tokens.record_overrun(run.sid, usage.total)
                return self._handoff(run, "token_budget_exhausted", f"{run.tokens_used}/{limit} tokens used")
            run.tokens_used = charged
            run.messages.append({"role": "assistant", "content": response.content})
            run.notes.extend(b["text"] for b in response.content if b.get("type") == "text" and b.get("text"))
            uses = [b for b in response.content if b.get("type") == "tool_use"]
            if not uses:
                return self._handoff(run, "model_ended_without_action", "", draft=" ".join(run.notes[-1:]))
            results: list[dict[str, Any]] = []
            for block in uses:
                if block["name"] == "classify_ticket":
                    results.append(self._classify(run, block))
                    continue
                outcome = run.executor.execute(block["name"], block.get("input"), block["id"])
                ended = self._act_on(run, block, outcome)
                if ended is not None:
                    return ended
                results.append(_tool_result(block["id"], outcome.for_model(), outcome.kind == "error"))
            run.messages.append({"role": "user", "content": results})
        return self._handoff(run, "turn_limit", f"no outcome after {self.max_turns} model turns")

    def _classify(self, run: _Run, block: dict[str, Any]) -> dict[str, Any]:
        try:
            classification = Classification.model_validate(block.get("input"))
        except ValidationError as exc:
            return _tool_result(block["id"], f"invalid classification: {exc.errors()[0]['msg']}", True)
        before = run.triage.route
        ticket = run.session.ticket
        decided = Triage(self.policy).decide(f"{ticket.subject}\n{ticket.body}", classification)
        # The guard can only make the route stricter: once escalated, it stays escalated.
        run.triage = decided if decided.route == "escalate" or before == "auto" else run.triage
        self._record(
            run,
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
        return _tool_result(
            block["id"], json.dumps({"route": run.triage.route, "category": run.triage.category})
        )

    def _act_on(self, run: _Run, block: dict[str, Any], outcome: ToolOutcome) -> RunResult | None:
        if outcome.kind == "identity_mismatch":
            return self._handoff(
                run, "identity_mismatch", "requester email does not match the account to change"
            )
        if outcome.kind == "approval" and outcome.pending:
            return self._request_approval(run, outcome.pending)
        if outcome.kind == "result" and block["name"] in {"send_password_reset", "update_profile"}:
            run.actions.append({"tool": block["name"], "args": block.get("input"), "approved_by": None})
        if outcome.kind != "terminal":
            return None
        if outcome.terminal == "respond":
            if run.triage.route != "auto" and not run.reply_allowed:
                return self._handoff(
                    run, "reply_refused_route_escalated", "the model tried to reply to an escalated ticket"
                )
            args = outcome.content
            return self._respond(run, args["body"], args.get("internal_note", ""), args["status"])
        args = outcome.content
        return self._handoff(
            run, "agent_handoff", f"{args['reason']} — {args['summary']}", draft=args.get("draft_reply", "")
        )

    # --- outcomes ------------------------------------------------------------------------------------

    def _finish(
        self,
        run: _Run,
        new: SessionState,
        audit_action: str,
        audit_outcome: str,
        also: list[dict[str, Any]] | None = None,
        **fields: Any,
    ) -> None:
        item = self.sessions.transition_item(
            run.sid,
            SessionState.RUNNING,
            new,
            tokens_used=run.tokens_used,
            turns=run.turns,
            route=run.triage.route,
            actions=run.actions,
            **fields,
        )
        self._record(run, audit_action, f"tickets/{run.session.ticket.id}", "n/a", audit_outcome)
        try:
            self.audit.flush(run.sid, [*(also or []), item])
        except WriteRefused as exc:
            raise TransitionRefused(str(exc)) from None

    def _respond(self, run: _Run, body: str, note: str, status: str) -> RunResult:
        self.audit.flush(run.sid)  # the allow decision is durable before the customer sees anything
        note = note or "Answered by the support agent."
        self.adapters.tickets.respond(run.session.ticket.id, body, note, status, f"{run.sid}-reply")
        self._finish(
            run,
            SessionState.RESPONDED,
            "tickets:respond",
            status,
            outcome="respond",
            replies=[*run.session.replies, body],
            transcript=[],
        )
        return RunResult("respond", status)

    def _handoff(self, run: _Run, reason: str, summary: str, draft: str = "") -> RunResult:
        ticket = run.session.ticket
        decision = self.policy.authorize("tickets:assign", f"tickets/{ticket.id}")
        note = f"Handed to people: {reason}. {summary}".strip()
        self._record(run, "tickets:assign", f"tickets/{ticket.id}", decision.describe(), reason)
        self.audit.flush(run.sid)
        if decision.allowed:
            self.adapters.tickets.add_note(ticket.id, note[:2000], f"{run.sid}-handoff")
            self.adapters.tickets.assign(ticket.id, HUMAN_GROUP)
        escalation = self._escalation(
            run, issue=summary or reason, recommendation="A person should take over"
        )
        escalation["draft_reply"] = draft
        channel = self.policy.handoff_channel()
        notice = None
        if channel and self.handoff_notices is not None:
            notice = Approval(
                approval_id="hof_" + hashlib.sha256(f"{run.sid}:handoff".encode()).hexdigest()[:20],
                session_id=run.sid,
                kind="handoff",
                channel=channel,
                escalation=escalation,
            )
        self._finish(
            run,
            SessionState.HANDOFF,
            "session:handoff",
            reason,
            also=[self.approvals.put_item(notice)] if notice else None,
            outcome="handoff",
            reason=reason,
            escalation=escalation,
            approval_id=notice.approval_id if notice else run.session.approval_id,
            transcript=[],
        )
        if notice and self.handoff_notices is not None:
            try:
                self.handoff_notices.notify(notice.approval_id, run.sid, notice.channel)
            except Exception as exc:  # the ticket is already assigned to people in the helpdesk
                self.audit.append(
                    run.sid,
                    actor="agent",
                    action="slack:handoff_notice",
                    resource=notice.channel,
                    decision="n/a",
                    outcome="failed",
                    details={"error": str(exc)[:200]},
                )
        return RunResult("handoff", reason)

    def follow_up_handoff(self, session_id: str, approval: Approval) -> RunResult:
        """A person answered a handoff notice: send the agent's draft, or take the ticket over."""
        made = approval.decision
        session = self.sessions.get(session_id)
        if made is None or session is None or session.state is not SessionState.HANDOFF:
            return RunResult("skipped", "no handoff waiting for this decision")
        ticket = session.ticket
        who = made.by_name or made.by
        if made.kind == "take_over":
            self.adapters.tickets.assign(ticket.id, f"slack:{made.by}")
            self.audit.append(
                session_id,
                actor=f"slack:{made.by}",
                action="tickets:assign",
                resource=f"tickets/{ticket.id}",
                decision="human decision",
                outcome="taken_over",
            )
            return RunResult("handoff", f"taken over by {who}")
        draft = str((session.escalation or {}).get("draft_reply") or "")
        decision = self.policy.authorize("tickets:respond", f"queue/{ticket.queue}")
        if made.kind != "send_draft" or not draft or not decision.allowed:
            return RunResult("skipped", "nothing to send")
        self.audit.record(
            session_id,
            actor=f"slack:{made.by}",
            action="tickets:respond",
            resource=f"queue/{ticket.queue}",
            decision=decision.describe(),
            outcome="draft_sent",
        )
        # Closing first makes the send at most once: a redelivered message finds the session closed.
        item = self.sessions.transition_item(
            session_id,
            SessionState.HANDOFF,
            SessionState.CLOSED,
            replies=[*session.replies, draft],
            outcome="respond",
        )
        try:
            self.audit.flush(session_id, [item])
        except WriteRefused:
            return RunResult("skipped", "session already closed")
        self.adapters.tickets.respond(
            ticket.id, draft, f"Agent's draft sent by {who}.", "solved", f"{session_id}-draft"
        )
        return RunResult("respond", f"draft sent by {who}")

    def _request_approval(self, run: _Run, pending: PendingAction) -> RunResult:
        approval_id = "apr_" + hashlib.sha256(f"{run.sid}:{pending.tool_use_id}".encode()).hexdigest()[:20]
        escalation = self._escalation(
            run, issue=self._issue(run), recommendation=self._recommend(run, pending)
        )
        approval = Approval(
            approval_id=approval_id,
            session_id=run.sid,
            tool=pending.tool,
            args=pending.args,
            args_hash=pending.args_hash,
            tool_use_id=pending.tool_use_id,
            channel=pending.channel,
            rule=pending.rule,
            escalation=escalation,
        )
        item = self.sessions.transition_item(
            run.sid,
            SessionState.RUNNING,
            SessionState.AWAITING_APPROVAL,
            tokens_used=run.tokens_used,
            turns=run.turns,
            route="escalate",
            approval_id=approval_id,
            escalation=escalation,
            transcript=run.messages,
            actions=run.actions,
            outcome="approval",
        )
        self._record(
            run,
            "approval:request",
            f"approvals/{approval_id}",
            pending.rule,
            "awaiting_approval",
            {"tool": pending.tool, "args_hash": pending.args_hash, "channel": pending.channel},
        )
        self.audit.flush(run.sid, [self.approvals.put_item(approval), item])
        payload = {
            "approval_id": approval_id,
            "session_id": run.sid,
            "channel": pending.channel,
            "kind": "action",
            "ticket_id": run.session.ticket.id,
        }
        try:
            self.workflow.start(approval_id, payload)
        except Exception as exc:  # the approval cannot reach a person: a person gets the ticket instead
            self.audit.record(
                run.sid,
                actor="agent",
                action="approval:start",
                resource=f"approvals/{approval_id}",
                decision="n/a",
                outcome="failed",
                details={"error": str(exc)[:200]},
            )
            self.sessions.transition(run.sid, SessionState.AWAITING_APPROVAL, SessionState.RUNNING)
            return self._handoff(run, "approval_workflow_unavailable", str(exc)[:200])
        return RunResult("approval", pending.tool, approval_id)

    # --- escalation context --------------------------------------------------------------------------

    def _issue(self, run: _Run) -> str:
        return run.session.ticket.subject or run.session.ticket.body[:120]

    def _recommend(self, run: _Run, pending: PendingAction) -> str:
        if pending.tool == "issue_refund":
            amount = int(pending.args["amount_cents"])
            if "list_invoices" not in run.ctx.observed:  # the person deciding needs the invoice for scale
                run.executor.execute("list_invoices", {"customer_id": pending.args["customer_id"]})
            invoices = run.ctx.observed.get("list_invoices") or []
            invoice = next(
                (i for i in invoices if getattr(i, "id", None) == pending.args["invoice_id"]), None
            )
            whole = invoice is not None and amount >= invoice.amount_cents - invoice.refunded_cents
            return f"{'Full refund' if whole else 'Refund'} of {money(amount)}" + (
                f" (invoice {invoice.id}, {invoice.description})"
                if invoice
                else f" (invoice {pending.args['invoice_id']})"
            )
        if pending.tool == "delete_account":
            return "Delete the account (irreversible after 14 days)"
        return f"Run {pending.tool}"

    def _escalation(self, run: _Run, *, issue: str, recommendation: str) -> dict[str, Any]:
        ticket = run.session.ticket
        customer = run.ctx.observed.get("customer")
        return {
            "ticket_id": ticket.id,
            "ticket_url": ticket.url,
            "subject": ticket.subject,
            "requester": ticket.requester.email,
            "customer": {
                "id": customer.id,
                "name": customer.name,
                "plan": customer.plan,
                "tenure_months": customer.tenure_months(clock.now().date().isoformat()),
                "lifetime_value_cents": customer.lifetime_value_cents,
            }
            if customer
            else None,
            "category": run.triage.category,
            "matched_rules": run.triage.matched_rules,
            "issue": issue[:500],
            "agent_notes": " ".join(run.notes)[-1000:],
            "recommendation": recommendation,
        }

    def _record(
        self,
        run: _Run,
        action: str,
        resource: str,
        decision: str,
        outcome: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.audit.record(
            run.sid,
            actor="agent",
            action=action,
            resource=resource,
            decision=decision,
            outcome=outcome,
            details=details,
        )


def _tool_result(tool_use_id: str, content: str, is_error: bool = False) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_use_id, "content": content}
    if is_error:
        block["is_error"] = True
    return block
