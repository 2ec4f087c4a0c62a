"""Notifier: the approval workflow's messages and the agent's handoff notices become Slack posts,
reminders and expiry notices.

The task token from Step Functions is stored on the approval record only; Slack sees the request id.
"""

from __future__ import annotations

from dataclasses import dataclass

from support_agent.messaging import ApprovalWorkflow
from support_agent.models import Approval, Decision, NotifyMessage, PersonRequest
from support_agent.rules.approvals import AlreadyDecided, ApprovalStore
from support_agent.rules.audit import AuditLog, draft
from support_agent.slack.client import SlackApi, channel_name
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
        return self._mark_expired(request)

    def _post(self, request: PersonRequest, task_token: str | None) -> str:
        if task_token:
            self.approvals.update(request.request_id, task_token=task_token, task_token_set=True)
        if request.slack_ts:  # a redelivered request: the message is already posted
            return "token_refreshed"
        posted = self.slack.post_message(channel_name(request.channel), plain_text(request), blocks(request))
        self.approvals.update(request.request_id, slack_channel=posted[0], slack_ts=posted[1])
        self._audit(request, "slack:post", "posted")
        return "posted"

    def _remind(self, approval: Approval, task_token: str) -> str:
        count = approval.reminders + 1
        if count > self.max_reminders:
            # Answered as a decision of kind "expired": the workflow's Choice routes it to expiry.
            self.workflow.answer(task_token, Decision(kind="expired"))
            self._audit(approval, "approval:expire", "expired")
            return "expired"
        self.approvals.update(approval.approval_id, task_token=task_token, reminders=count)
        if approval.slack_ts:
            text = f"Reminder {count}/{self.max_reminders}: this request is still waiting for a decision."
            self.slack.post_message(
                approval.slack_channel or channel_name(approval.channel), text, thread_ts=approval.slack_ts
            )
        self._audit(approval, "slack:remind", f"reminder_{count}")
        return "reminded"

    def _mark_expired(self, request: PersonRequest) -> str:
        expired = Decision(kind="expired")
        try:
            request = self.approvals.decide(request.request_id, expired)
        except AlreadyDecided:
            return "already_decided"
        if request.slack_ts:
            when = expired.at[11:16]
            text = outcome_line(request, expired, when)
            self.slack.update_message(
                request.slack_channel or "", request.slack_ts, text, decided_blocks(request, expired, when)
            )
        self._audit(request, "slack:expired", "expired")
        return "marked_expired"

    def _audit(self, request: PersonRequest, action: str, outcome: str) -> None:
        entry = draft(
            "notifier", action, request.channel, "n/a", outcome, {"approval_id": request.request_id}
        )
        self.audit.append(request.session_id, [entry])
