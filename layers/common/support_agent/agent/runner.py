"""The agent's entry points: start a queued session, carry out a decision, expire a request, follow up a
handoff. Each claims the session with a guarded move, runs the turn loop where there is thinking to do,
and hands the typed outcome to `OutcomeWriter`, which commits it once.

A new session first binds the requester to their customer record (`agent.identity`), once; the binding is
stored with the session and every later run uses it. A requester whose address could pass for another
mailbox, or whose ticket names a customer that is not theirs, goes to people before the model sees
anything.

A claim takes a lease (`rules.sessions.Lease`). A message for the same work finds the session RUNNING and
takes it over once the lease has expired (the run that held it was killed); the sweeper's `sweep` message
takes over any expired lease and hands the ticket to people. Any error after a claim ends in a handoff
with the reason; if even that cannot be written, the error goes back to the queue and the redelivery
takes the session over when the lease runs out. Nothing is left RUNNING for good.
"""

from __future__ import annotations

from collections.abc import Callable
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
from support_agent.models import (
    AgentMessage,
    Approval,
    Customer,
    Decision,
    HandoffNotice,
    Session,
    SessionState,
)
from support_agent.rules.approvals import ApprovalStore
from support_agent.rules.audit import AuditLog, Journal
from support_agent.rules.policy import Policy
from support_agent.rules.sessions import Guard, Lease, SessionStore, TransitionRefused
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
    # Longer than one invocation can run (AgentStep's timeout), shorter than the queue's visibility timeout.
    lease_seconds: float = 360.0

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
        if message.type == "sweep":
            return self.sweep(message.session_id)
        raise ValueError(f"a {message.type} message lacks its approval_id, notice_id or decision")

    def start(self, session_id: str) -> RunResult:
        """Run a queued session. A redelivered message finds it claimed already and does nothing."""
        run = self._claim(session_id, SessionState.QUEUED, "start")
        if run is None:
            return RunResult("skipped", "session is not queued (duplicate or late message)")
        return self._finish_or_hand_off(run, lambda: self._first_run(run))

    def _first_run(self, run: Run) -> RunResult:
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
        """Carry out a recorded decision. The stored approval, not the message, is the authority; only the
        approval the session is waiting for can resume it."""
        approval = self.approvals.get(approval_id)
        if (
            not isinstance(approval, Approval)
            or approval.session_id != session_id
            or approval.decision is None
        ):
            return RunResult("skipped", "no recorded decision for this approval")
        if approval.decision.kind != decision.kind:
            return RunResult("skipped", "the message does not match the recorded decision")
        run = self._claim(session_id, SessionState.AWAITING_APPROVAL, f"resume:{approval_id}", approval_id)
        if run is None:
            return RunResult("skipped", f"session is not awaiting approval {approval_id} (duplicate or late)")
        decided = approval.decision
        return self._finish_or_hand_off(run, lambda: self._carry_out(run, approval, decided))

    def _carry_out(self, run: Run, approval: Approval, decision: Decision) -> RunResult:
        if run.ctx.requester is None:  # a session stored before requesters were bound: bind it now
            refused = self._bind(run)
            if refused is not None:
                return self.outcomes.handoff(run, refused)
        outcome = carry_out(run, approval, decision)
        return self.outcomes.finish(run, outcome if outcome is not None else self.loop.run(run))

    def expire(self, session_id: str, approval_id: str) -> RunResult:
        """Nobody decided in time: the ticket goes to people (only if it still waits for that approval, and
        no person's decision is stored for it: that decision wins, and its resume carries it out)."""
        approval = self.approvals.get(approval_id)
        if isinstance(approval, Approval) and approval.decision and approval.decision.kind != "expired":
            return RunResult("skipped", f"approval {approval_id} was decided: {approval.decision.kind}")
        run = self._claim(session_id, SessionState.AWAITING_APPROVAL, f"expire:{approval_id}", approval_id)
        if run is None:
            return RunResult("skipped", f"session is not awaiting approval {approval_id}")
        reason = f"approval {approval_id} expired without a decision"
        return self.outcomes.handoff(run, HandOff("approval_expired", reason))

    def sweep(self, session_id: str) -> RunResult:
        """A session still RUNNING past its lease (its run was killed): people get the ticket."""
        before = self.sessions.get(session_id)
        run = self._take_over(session_id, "sweep", None)
        if run is None:
            return RunResult("skipped", "session is not running past its lease")
        was = f"{before.lease_for} until {before.lease_until}" if before else "unknown"
        summary = f"a run of this ticket stopped before it finished (lease {was}); check the audit trail"
        return self.outcomes.handoff(run, HandOff("run_interrupted", summary))

    def _finish_or_hand_off(self, run: Run, work: Callable[[], RunResult]) -> RunResult:
        """Run `work` on a claimed session; an error before the outcome is written ends with people."""
        try:
            return work()
        except TransitionRefused:
            # The outcome's commit was fenced off: the lease expired and another run took the session.
            return RunResult("skipped", "the lease was taken over by another run")
        except Exception as exc:
            if run.state is not SessionState.RUNNING:
                raise  # the outcome is written; what failed after it is retried by the queue
            error = f"{type(exc).__name__}: {str(exc)[:300]}"
            run.journal.record("session:error", f"sessions/{run.sid}", "n/a", "failed", {"error": error})
            # If this fails too, the message returns to the queue and a redelivery takes the lease over.
            return self.outcomes.handoff(run, HandOff("internal_error", error))

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

    def _claim(
        self, session_id: str, expected: SessionState, work: str, approval_id: str | None = None
    ) -> Run | None:
        """Move the session to running under a new lease, with its transcript; or take over the same work
        whose lease expired. None if neither applies (a duplicate or late message)."""
        lease = Lease.new(work, self.lease_seconds)
        guard = Guard(approval_id=approval_id) if approval_id else None
        fields = lease.fields()
        # A queued session has never run (nothing is committed on it): its first calls' tokens are
        # reserved in the claim itself, one write fewer per ticket.
        opening = self.loop.opening_reservation() if expected is SessionState.QUEUED else 0
        if opening:
            fields["tokens_committed"] = opening
        try:
            session = self.sessions.transition(session_id, expected, SessionState.RUNNING, guard, **fields)
        except TransitionRefused:
            return self._take_over(session_id, work, work)
        run = self._run(session)
        run.tokens_held = opening
        if expected is SessionState.QUEUED:
            run.journal.record(
                "session:claim",
                f"sessions/{session_id}",
                "n/a",
                "running",
                {"provider": self.loop.provider.name},
            )
        return run

    def _take_over(self, session_id: str, work: str, same_work: str | None) -> Run | None:
        """Take a RUNNING session whose lease has expired (for `same_work` only, unless None)."""
        lease = Lease.new(work, self.lease_seconds)
        guard = Guard(lease_for=same_work, expired_at=clock.iso())
        try:
            session = self.sessions.transition(
                session_id, SessionState.RUNNING, SessionState.RUNNING, guard, **lease.fields()
            )
        except TransitionRefused:
            return None
        run = self._run(session)
        run.journal.record("session:take_over", f"sessions/{session_id}", "n/a", "running", {"work": work})
        return run

    def _run(self, session: Session) -> Run:
        journal = Journal(self.audit, session.session_id)
        ctx = ToolContext(
            session_id=session.session_id,
            ticket=session.ticket,
            adapters=self.adapters,
            requester=session.requester,
        )
        executor = ToolExecutor(self.policy, journal, ctx, {t.name: t for t in self.loop.tools})
        triage = Triage(self.policy).decide(f"{session.ticket.subject}\n{session.ticket.body}")
        run = Run(session, ctx, executor, journal, triage, tokens_used=session.tokens_used)
        run.messages = list(session.transcript)
        run.actions = list(session.actions)
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
