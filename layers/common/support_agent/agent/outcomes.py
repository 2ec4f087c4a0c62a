"""Carrying out a session's outcome: one commit each (state change, request for people, audit entries),
with the helpdesk, the approval workflow and the handoff notice around it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from support_agent.adapters.ports import Adapters
from support_agent.agent.escalation import escalation_for, issue_of
from support_agent.agent.loop import AwaitApproval, HandOff, Outcome, Respond, Run
from support_agent.agent.tools import HUMAN_GROUP, TARGET, TOOLS_BY_NAME, ApprovalSpec, Tool
from support_agent.messaging import ApprovalWorkflow, Queue
from support_agent.models import (
    Approval,
    Customer,
    HandoffNotice,
    NotifyMessage,
    Offer,
    PersonRequest,
    SessionState,
)
from support_agent.rules.policy import Policy
from support_agent.rules.sessions import Guard, SessionChange, SessionCommitter
from support_agent.slack.render import draft_fits

ResultKind = Literal["respond", "approval", "handoff", "skipped"]
TAKE_OVER = Offer(kind="take_over", label="Take over", style="primary")
SEND_DRAFT = Offer(kind="send_draft", label="Send agent's draft")
NOTE_LIMIT = 2000  # the handoff note's reason and summary; the draft follows in full


def handoff_offers(draft: str) -> list[Offer]:
    """Send agent's draft only when there is one and people can read all of it in the notice."""
    return [TAKE_OVER, SEND_DRAFT] if draft.strip() and draft_fits(draft) else [TAKE_OVER]


def handoff_note(reason: str, summary: str, draft: str) -> str:
    """The helpdesk note: why, what the agent found, and its draft in full (what Send agent's draft sends)."""
    note = f"Handed to people: {reason.rstrip('.')}. {summary}".strip()[:NOTE_LIMIT]
    if draft.strip():
        how = (
            "“Send agent's draft” in Slack sends exactly this"
            if draft_fits(draft)
            else "too long to show in Slack, so it cannot be sent from there"
        )
        note += f"\n\nAgent's draft ({how}):\n-----\n{draft}\n-----"
    return note


@dataclass
class RunResult:
    outcome: ResultKind
    reason: str = ""
    approval_id: str | None = None


def _generic_spec(tool: str) -> ApprovalSpec:
    # A tool the policy gates but the table gives no approval words: people still see exactly what runs.
    return ApprovalSpec(noun="Action", describe=lambda args, _lookup: f"Run {tool} with {args}")


@dataclass
class OutcomeWriter:
    policy: Policy
    adapters: Adapters
    commits: SessionCommitter
    workflow: ApprovalWorkflow
    notices: Queue | None = None  # the NotifyQueue: handoff notices reach people in Slack through it
    tools: Mapping[str, Tool] = field(default_factory=lambda: TOOLS_BY_NAME)

    def finish(self, run: Run, outcome: Outcome) -> RunResult:
        """Carry out the loop's outcome."""
        if isinstance(outcome, Respond):
            return self.respond(run, outcome)
        if isinstance(outcome, AwaitApproval):
            return self.request_approval(run, outcome)
        return self.handoff(run, outcome)

    def respond(self, run: Run, reply: Respond) -> RunResult:
        ticket = run.session.ticket
        if self.adapters.tickets.already_answered_by_human(ticket.key):
            # A person answered while the agent worked: the ticket is theirs, the agent's text a draft.
            return self.handoff(
                run, HandOff("answered_by_a_person", "a person replied first", draft=reply.body)
            )
        run.journal.flush()  # the allow decision is durable before the customer sees anything
        note = reply.note or "Answered by the support agent."
        self.adapters.tickets.respond(ticket.key, reply.body, note, reply.status, f"{run.sid}-reply")
        run.journal.record("tickets:respond", f"tickets/{ticket.key}", "n/a", reply.status)
        self._commit(
            run,
            SessionState.RESPONDED,
            outcome="respond",
            replies=[*run.session.replies, reply.body],
            transcript=[],
        )
        return RunResult("respond", reply.status)

    def handoff(self, run: Run, handoff: HandOff) -> RunResult:
        ticket = run.session.ticket
        resource = f"tickets/{ticket.key}"
        verdict = self.policy.authorize("tickets:assign", resource, requester=run.ctx.customer_id)
        run.journal.record("tickets:assign", resource, verdict.describe(), handoff.reason)
        run.journal.flush()
        if verdict.allowed:
            note = handoff_note(handoff.reason, handoff.summary, handoff.draft)
            self.adapters.tickets.add_note(ticket.key, note, f"{run.sid}-handoff")
            self.adapters.tickets.assign(ticket.key, HUMAN_GROUP)
        escalation = escalation_for(
            run,
            issue=f"{handoff.reason}: {handoff.summary}" if handoff.summary else handoff.reason,
            recommendation="A person should take over",
            draft=handoff.draft,
        )
        channel = self.policy.handoff_channel()
        notice = None
        if channel and self.notices is not None:
            notice_id = "hof_" + hashlib.sha256(f"{run.sid}:handoff".encode()).hexdigest()[:20]
            notice = HandoffNotice(
                notice_id=notice_id,
                session_id=run.sid,
                channel=channel,
                escalation=escalation,
                offers=handoff_offers(handoff.draft),
            )
        run.journal.record("session:handoff", resource, "n/a", handoff.reason)
        self._commit(
            run,
            SessionState.HANDOFF,
            request=notice,
            outcome="handoff",
            reason=handoff.reason,
            escalation=escalation,
            notice_id=notice.notice_id if notice else None,
            transcript=[],
        )
        if notice is not None and self.notices is not None:
            self._announce(run, notice)
        return RunResult("handoff", handoff.reason)

    def request_approval(self, run: Run, wait: AwaitApproval) -> RunResult:
        pending = wait.pending
        # Named by the session, the transcript position and the exact call: not by ids the model chose.
        seed = f"{run.sid}:{len(run.messages)}:{pending.tool}:{pending.args_hash}"
        approval_id = "apr_" + hashlib.sha256(seed.encode()).hexdigest()[:20]
        tool = self.tools.get(pending.tool)
        spec = tool.approval if tool and tool.approval else _generic_spec(pending.tool)
        lookup = run.executor.lookup
        escalation = escalation_for(
            run,
            issue=issue_of(run),
            recommendation=spec.describe(pending.args, lookup),
            target=self._target(run, pending.args),
            details=spec.details(pending.args, lookup) if spec.details else None,
        )
        approval = Approval(
            approval_id=approval_id,
            session_id=run.sid,
            channel=pending.channel,
            escalation=escalation,
            offers=spec.offers(),
            partial=spec.partial_offer(pending.args, lookup),
            tool=pending.tool,
            args=pending.args,
            args_hash=pending.args_hash,
            tool_use_id=pending.tool_use_id,
            rule=pending.rule,
        )
        run.journal.record(
            "approval:request",
            f"approvals/{approval_id}",
            pending.rule,
            "awaiting_approval",
            {"tool": pending.tool, "args_hash": pending.args_hash, "channel": pending.channel},
        )
        self._commit(
            run,
            SessionState.AWAITING_APPROVAL,
            request=approval,
            route="escalate",
            approval_id=approval_id,
            escalation=escalation,
            transcript=run.messages,
            outcome="approval",
        )
        payload = {
            "approval_id": approval_id,
            "session_id": run.sid,
            "channel": pending.channel,
            "ticket_id": run.session.ticket.id,
        }
        try:
            self.workflow.start(approval_id, payload)
        except Exception as exc:  # the approval cannot reach a person: a person gets the ticket instead
            run.journal.record(
                "approval:start", f"approvals/{approval_id}", "n/a", "failed", {"error": str(exc)[:200]}
            )
            return self.handoff(run, HandOff("approval_workflow_unavailable", str(exc)[:200]))
        return RunResult("approval", pending.tool, approval_id)

    def _target(self, run: Run, args: dict[str, Any]) -> Customer | None:
        """The account an approval acts on: the record its arguments name (the bound one for bound tools)."""
        customer_id = args.get(TARGET)
        if not isinstance(customer_id, str):
            return None
        return run.ctx.customers.get(customer_id) or self.adapters.crm.get_customer(customer_id)

    def _commit(
        self, run: Run, new: SessionState, request: PersonRequest | None = None, **fields: Any
    ) -> None:
        """The outcome's one write; afterwards the run knows the session's new state (and, from the first
        run on, who the requester is)."""
        fields = {
            # The run's reservations end with its outcome: what is committed is what was used.
            "tokens_used": run.tokens_used,
            "tokens_committed": run.tokens_used,
            "turns": run.turns,
            "route": run.triage.route,
            "actions": run.actions,
            **({"requester": run.ctx.requester} if run.ctx.requester is not None else {}),
            **fields,
        }
        # Fenced by the run's lease: a run that lost it (expired, taken over) cannot write an outcome.
        lease = run.session.lease_id if run.state is SessionState.RUNNING else None
        guard = Guard(lease_id=lease) if lease else None
        change = SessionChange(run.sid, run.state, new, run.journal.drain(), fields, request, guard)
        self.commits.commit(change)
        run.state = new

    def _announce(self, run: Run, notice: HandoffNotice) -> None:
        message = NotifyMessage(
            type="handoff_notice", session_id=run.sid, notice_id=notice.notice_id, channel=notice.channel
        )
        try:
            self.notices.send(message)  # type: ignore[union-attr]
        except Exception as exc:  # the ticket is already with people in the helpdesk
            run.journal.record(
                "slack:handoff_notice", notice.channel, "n/a", "failed", {"error": str(exc)[:200]}
            )
            run.journal.flush()
