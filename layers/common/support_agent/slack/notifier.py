"""Notifier: the approval workflow's messages and the agent's handoff notices become Slack posts,
reminders and expiry notices.

The task token from Step Functions is stored on the approval record only; Slack sees the request id.
Every reminder first stores its token and reads the approval's status: a decided approval is delivered
with its stored decision, never reminded nor expired (`slack.delivery` explains why this closes the crash
window between a recorded decision and SendTaskSuccess).
"""

from __future__ import annotations

from dataclasses import dataclass

from support_agent.messaging import ApprovalWorkflow
from support_agent.models import Approval, Decision, NotifyMessage, PersonRequest
from support_agent.rules.approvals import AlreadyDecided, ApprovalStore
from support_agent.rules.audit import AuditDraft, AuditLog, draft
from support_agent.slack.client import SlackApi, channel_name
from support_agent.slack.delivery import deliver
from support_agent.slack.render import blocks, decided_blocks, outcome_line, plain_text


class UnknownRequest(Exception):
    """The message names a request that does not exist (kept on the queue, then the DLQ)."""


@dataclass
class Notifier:
    approvals: ApprovalStore
    audit: AuditLog
    slack: SlackApi
    workflow: ApprovalWorkflow
    max_reminders: int = 2

    def handle(self, message: NotifyMessage) -> str:
        """Carry out one message; returns what was done."""
        request_id = message.approval_id or message.notice_id or ""
        request = self.approvals.get(request_id)
        if request is None:
            raise UnknownRequest(request_id)
        if message.type in {"request", "handoff_notice"}:
            return self._post(request, message.task_token)
        if message.type == "reminder" and isinstance(request, Approval):
            return self._remind(request, message.task_token or "")
        if message.type == "decided":
            return self._redraw(request)
        return self._mark_expired(request)

    def _redraw(self, request: PersonRequest) -> str:
        """The workflow resumed the agent: show the stored decision in Slack, whoever delivered it."""
        if request.status != "decided" or request.decision is None:
            return "not_decided"
        self._show_decided(request, request.decision)
        return "shown"

    def _post(self, request: PersonRequest, task_token: str | None) -> str:
        # A redelivered request after a reminder must not put back the token the reminder replaced.
        if task_token and isinstance(request, Approval) and request.reminders == 0:
            request = self.approvals.update(request.request_id, task_token=task_token, task_token_set=True)
            if request.status != "pending" and isinstance(request, Approval):
                return self._deliver(request, task_token)
        if request.slack_ts:  # a redelivered request: the message is already posted
            return "token_refreshed"
        posted = self.slack.post_message(channel_name(request.channel), plain_text(request), blocks(request))
        entry = self._entry(request, "slack:post", "posted")
        self.approvals.record(request, [entry], slack_channel=posted[0], slack_ts=posted[1])
        return "posted"

    def _remind(self, approval: Approval, task_token: str) -> str:
        """A wait timed out. The new token is stored first and the status read in the same write, so a
        decision recorded before it is delivered here and one recorded after it finds this token (see
        `slack.delivery`)."""
        stored = self.approvals.update(approval.approval_id, task_token=task_token)
        if not isinstance(stored, Approval):
            raise UnknownRequest(approval.approval_id)
        if stored.status != "pending":
            return self._deliver(stored, task_token)
        count = stored.reminders + 1
        if count > self.max_reminders:
            # The expiry is a decision like any other: recorded first with the guarded write (a click
            # in between wins and is delivered instead), then answered; the workflow's Choice routes it.
            try:
                expired = self.approvals.decide(approval.approval_id, Decision(kind="expired"))
            except AlreadyDecided as exc:
                decided = exc.request if isinstance(exc.request, Approval) else stored
                return self._deliver(decided, task_token)
            self._audit(approval, "approval:expire", "expired")  # before answering: a redelivery answers
            if isinstance(expired, Approval):
                deliver(self.approvals, self.workflow, expired, task_token)
            return "expired"
        self.approvals.update(approval.approval_id, reminders=count)
        if stored.slack_ts:
            text = f"Reminder {count}/{self.max_reminders}: this request is still waiting for a decision."
            self.slack.post_message(
                stored.slack_channel or channel_name(stored.channel), text, thread_ts=stored.slack_ts
            )
        self._audit(approval, "slack:remind", f"reminder_{count}")
        return "reminded"

    def _deliver(self, approval: Approval, task_token: str) -> str:
        """A decided approval whose workflow still waits (its decider died before SendTaskSuccess, or a
        click raced the token's replacement): answer with the stored decision, and show it in Slack."""
        if approval.decision is None:
            raise UnknownRequest(approval.approval_id)
        if not deliver(self.approvals, self.workflow, approval, task_token):
            return "already_delivered"  # the token was answered already: a redelivered message
        if approval.decision.kind != "expired":  # an expiry is shown by the workflow's NotifyExpired
            self._show_decided(approval, approval.decision)
        self._audit(approval, "approval:deliver", approval.decision.kind)
        return "delivered"

    def _mark_expired(self, request: PersonRequest) -> str:
        expired = Decision(kind="expired")
        try:
            request = self.approvals.decide(request.request_id, expired)
        except AlreadyDecided as exc:
            stored = exc.request
            if stored is None or stored.status != "expired" or stored.decision is None:
                return "already_decided"
            # Expired by `_remind` (it records the expiry before answering): show it, once per message.
            request, expired = stored, stored.decision
        self._show_decided(request, expired)
        self._audit(request, "slack:expired", "expired")
        return "marked_expired"

    def _show_decided(self, request: PersonRequest, decision: Decision) -> None:
        """The posted message without its buttons, saying who decided what (chat.update is idempotent)."""
        if request.slack_ts:
            when = decision.at[11:16]
            text = outcome_line(request, decision, when)
            self.slack.update_message(
                request.slack_channel or "", request.slack_ts, text, decided_blocks(request, decision, when)
            )

    def _audit(self, request: PersonRequest, action: str, outcome: str) -> None:
        self.audit.append(request.session_id, [self._entry(request, action, outcome)])

    @staticmethod
    def _entry(request: PersonRequest, action: str, outcome: str) -> AuditDraft:
        return draft("notifier", action, request.channel, "n/a", outcome, {"approval_id": request.request_id})
