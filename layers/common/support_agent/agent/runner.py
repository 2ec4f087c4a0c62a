"""The agent's entry points: start a queued session, carry out a decision, expire a request, follow up a
handoff. Each claims the session with a guarded move, runs the turn loop where there is thinking to do,
and hands the typed outcome to `OutcomeWriter`, which commits it once.

A new session first binds the requester to their customer record (`agent.identity`), once; the binding is
stored with the session and every later run uses it. A requester whose address could pass for another
mailbox, or whose ticket names a customer that is not theirs, goes to people before the model sees
anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from support_agent import clock
from support_agent.adapters.ports import Adapters
from support_agent.agent.decisions import HandoffFollowUps, carry_out
from support_agent.agent.executor import ToolExecutor
from support_agent.agent.identity import bind
from support_agent.agent.loop import HandOff, Run, TurnLoop
from support_agent.agent.outcomes import OutcomeWriter, RunResult
from support_agent.agent.prompts import ticket_message
from support_agent.agent.tools import ToolContext
from support_agent.agent.triage import Triage
from support_agent.models import AgentMessage, Approval, Customer, Decision, HandoffNotice, SessionState
from support_agent.rules.approvals import ApprovalStore
from support_agent.rules.audit import AuditLog, Journal
from support_agent.rules.policy import Policy
from support_agent.rules.sessions import SessionStore, TransitionRefused
from support_agent.text import shorten_for_model


@dataclass
class AgentRunner:
    policy: Policy
    sessions: SessionStore
    approvals: ApprovalStore
    audit: AuditLog
    adapters: Adapters
    loop: TurnLoop
    outcomes: OutcomeWriter
    follow_ups: HandoffFollowUps

    def handle(self, message: AgentMessage) -> RunResult:
        """One AgentQueue message to its entry point."""
        if message.type == "start":
            return self.start(message.session_id)
        if message.type == "resume" and message.approval_id and message.decision:
            return self.resume(message.session_id, message.approval_id, message.decision)
        if message.type == "expire" and message.approval_id:
            return self.expire(message.session_id, message.approval_id)
        if message.type == "handoff_follow_up" and message.notice_id:
            return self.follow_up(message.session_id, message.notice_id)
        raise ValueError(f"a {message.type} message lacks its approval_id, notice_id or decision")

    def start(self, session_id: str) -> RunResult:
        """Run a queued session. A redelivered message finds it claimed already and does nothing."""
        run = self._claim(session_id, SessionState.QUEUED)
        if run is None:
            return RunResult("skipped", "session is not queued (duplicate or late message)")
        self.adapters.tickets.ensure_ticket(run.session.ticket)
        refused = self._bind(run)
        if refused is not None:
            return self.outcomes.handoff(run, refused)
        self._gather(run)
        data = self._ticket_data(run)
        run.messages.append(
            {"role": "user", "content": ticket_message(data, run.triage.route, run.triage.category)}
        )
        return self.outcomes.finish(run, self.loop.run(run))

    def resume(self, session_id: str, approval_id: str, decision: Decision) -> RunResult:
        """Carry out a recorded decision. The stored approval, not the message, is the authority."""
        approval = self.approvals.get(approval_id)
        if (
            not isinstance(approval, Approval)
            or approval.session_id != session_id
            or approval.decision is None
        ):
            return RunResult("skipped", "no recorded decision for this approval")
        if approval.decision.kind != decision.kind:
            return RunResult("skipped", "the message does not match the recorded decision")
        run = self._claim(session_id, SessionState.AWAITING_APPROVAL)
        if run is None:
            return RunResult("skipped", "session is not awaiting approval (duplicate or late message)")
        if run.ctx.requester is None:  # a session stored before requesters were bound: bind it now
            refused = self._bind(run)
            if refused is not None:
                return self.outcomes.handoff(run, refused)
        outcome = carry_out(run, approval, approval.decision)
        return self.outcomes.finish(run, outcome if outcome is not None else self.loop.run(run))

    def expire(self, session_id: str, approval_id: str) -> RunResult:
        """Nobody decided in time: the ticket goes to people."""
        run = self._claim(session_id, SessionState.AWAITING_APPROVAL)
        if run is None:
            return RunResult("skipped", "session is not awaiting approval")
        reason = f"approval {approval_id} expired without a decision"
        return self.outcomes.handoff(run, HandOff("approval_expired", reason))

    def follow_up(self, session_id: str, notice_id: str) -> RunResult:
        """A person answered a handoff notice: send the agent's draft, or take the ticket over."""
        notice = self.approvals.get(notice_id)
        session = self.sessions.get(session_id)
        if (
            not isinstance(notice, HandoffNotice)
            or notice.decision is None
            or session is None
            or session.state is not SessionState.HANDOFF
        ):
            return RunResult("skipped", "no handoff waiting for this decision")
        journal = Journal(self.audit, session_id, actor=f"slack:{notice.decision.by}")
        return self.follow_ups.follow_up(session, notice, notice.decision, journal)

    # --- setup ---------------------------------------------------------------------------------------

    def _claim(self, session_id: str, expected: SessionState) -> Run | None:
        """Move the session to running, with its transcript; None if it was not in `expected`."""
        try:
            session = self.sessions.transition(session_id, expected, SessionState.RUNNING)
        except TransitionRefused:
            return None
        journal = Journal(self.audit, session_id)
        ctx = ToolContext(
            session_id=session_id, ticket=session.ticket, adapters=self.adapters, requester=session.requester
        )
        executor = ToolExecutor(self.policy, journal, ctx, {t.name: t for t in self.loop.tools})
        triage = Triage(self.policy).decide(f"{session.ticket.subject}\n{session.ticket.body}")
        run = Run(session, ctx, executor, journal, triage, tokens_used=session.tokens_used)
        run.messages = list(session.transcript)
        run.actions = list(session.actions)
        if expected is SessionState.QUEUED:
            journal.record(
                "session:claim",
                f"sessions/{session_id}",
                "n/a",
                "running",
                {"provider": self.loop.provider.name},
            )
        return run

    def _bind(self, run: Run) -> HandOff | None:
        """Bind the requester to their customer record, once; a handoff when the ticket cannot be trusted."""
        binding, record = bind(run.session.ticket, self.adapters.crm)
        run.ctx.requester = binding
        if record is not None:
            run.ctx.customers[record.id] = record
        resource = f"customers/{binding.customer_id}" if binding.customer_id else "customers/(none bound)"
        details = {"hint": binding.hint, "detail": binding.detail}
        run.journal.record("identity:bind", resource, "n/a", binding.status, details)
        if binding.status == "unsafe_address":
            return HandOff("requester_address_unsafe", binding.detail)
        if binding.status == "hint_mismatch":
            return HandOff("identity_mismatch", binding.detail)
        return None

    def _gather(self, run: Run) -> None:
        """Context every ticket needs, fetched up front through the same policy checks as the model's calls:
        the ticket's own history (the helpdesk is addressed by the ticket's namespaced key) and the
        requester's own record."""
        run.ctx.observed["history"] = run.executor.execute("get_ticket_history", {}).content
        if run.ctx.customer_id is not None:
            found = run.executor.execute("get_customer", {})
            if isinstance(found.content, Customer):
                run.ctx.observed["customer"] = found.content

    def _ticket_data(self, run: Run) -> dict[str, object]:
        ticket = run.session.ticket
        customer = run.ctx.observed.get("customer")
        history = run.ctx.observed.get("history")
        return {
            "ticket": {
                "id": ticket.id,
                "subject": ticket.subject,
                "body": shorten_for_model(ticket.body),
                "requester": ticket.requester.model_dump(),
                "created_at": ticket.created_at,
            },
            "history": [c.model_dump() for c in history] if isinstance(history, list) else [],
            "customer": customer.model_dump() if isinstance(customer, Customer) else None,
            "today": clock.now().date().isoformat(),
            "triage": {"route": run.triage.route, "category": run.triage.category},
        }
