"""Notifier: the approval workflow's messages become Slack posts, reminders and expiry notices.

The task token from Step Functions is stored on the approval record only; Slack sees the approval id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from support_agent import aws
from support_agent.approvals import AlreadyDecided, ApprovalRepository, Decision
from support_agent.audit import AuditTrail
from support_agent.escalation import blocks, decided_blocks, outcome_line, plain_text
from support_agent.slack import channel_name


class NotifyMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", defer_build=True)

    type: Literal["request", "reminder", "expired", "handoff"]
    approval_id: str
    session_id: str
    channel: str = ""
    task_token: str | None = None


class UnknownApproval(Exception):
    """The message names an approval that does not exist (kept on the queue, then the DLQ)."""


@dataclass
class Notifier:
    approvals: ApprovalRepository
    audit: AuditTrail
    slack: Any
    max_reminders: int = 2

    def handle(self, message: NotifyMessage) -> str:
        """Carry out one workflow message; returns what was done."""
        approval = self.approvals.get(message.approval_id)
        if approval is None:
            raise UnknownApproval(message.approval_id)
        sid = approval.session_id
        if message.type in {"request", "handoff"}:
            if message.task_token:
                self.approvals.set_fields(
                    approval.approval_id, task_token=message.task_token, task_token_set=True
                )
            if approval.slack_ts:  # a redelivered request: the message is already posted
                return "token_refreshed"
            posted = self.slack.chat_postMessage(
                channel=channel_name(approval.channel), text=plain_text(approval), blocks=blocks(approval)
            )
            self.approvals.set_fields(
                approval.approval_id, slack_channel=posted["channel"], slack_ts=posted["ts"]
            )
            self._audit(sid, "slack:post", approval.channel, "posted", approval.approval_id)
            return "posted"
        if message.type == "reminder":
            count = approval.reminders + 1
            if count > self.max_reminders:
                # Answered as a decision of kind "expired": the workflow's Choice routes it to expiry.
                aws.stepfunctions().send_task_success(
                    taskToken=message.task_token or "", output=Decision(kind="expired").model_dump_json()
                )
                self._audit(sid, "approval:expire", approval.channel, "expired", approval.approval_id)
                return "expired"
            self.approvals.set_fields(approval.approval_id, task_token=message.task_token, reminders=count)
            if approval.slack_ts:
                self.slack.chat_postMessage(
                    channel=approval.slack_channel or channel_name(approval.channel),
                    thread_ts=approval.slack_ts,
                    text=f"Reminder {count}/{self.max_reminders}: this request is still waiting for a decision.",
                )
            self._audit(sid, "slack:remind", approval.channel, f"reminder_{count}", approval.approval_id)
            return "reminded"
        expired = Decision(kind="expired")
        try:
            approval = self.approvals.decide(approval.approval_id, expired)
        except AlreadyDecided:
            return "already_decided"
        if approval.slack_ts:
            when = expired.at[11:16]
            self.slack.chat_update(
                channel=approval.slack_channel or "",
                ts=approval.slack_ts,
                text=outcome_line(approval, expired, when),
                blocks=decided_blocks(approval, expired, when),
            )
        self._audit(sid, "slack:expired", approval.channel, "expired", approval.approval_id)
        return "marked_expired"

    def _audit(self, session_id: str, action: str, channel: str, outcome: str, approval_id: str) -> None:
        self.audit.append(
            session_id,
            actor="notifier",
            action=action,
            resource=channel,
            decision="n/a",
            outcome=outcome,
            details={"approval_id": approval_id},
        )


def from_settings() -> Notifier:
    from support_agent.config import settings
    from support_agent.slack import app_credentials

    s = settings()
    client, _signing_secret = app_credentials()
    return Notifier(
        approvals=ApprovalRepository(s.sessions_table),
        audit=AuditTrail(s.audit_table),
        slack=client,
        max_reminders=s.max_reminders,
    )
