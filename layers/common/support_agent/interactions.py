"""Slack's interactive endpoint: a click or a modal submission becomes a recorded decision.

Order: verify the signature on the raw body (5-minute window) before parsing; check the approver;
record the first decision with a conditional write; hand the decision to Step Functions; update the
message. Everything here finishes well inside Slack's 3-second budget (a few DynamoDB and API calls).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from support_agent import aws
from support_agent.approvals import AlreadyDecided, Approval, ApprovalRepository, Decision
from support_agent.audit import AuditTrail
from support_agent.escalation import decided_blocks, money, outcome_line
from support_agent.policy import Policy
from support_agent.slack import is_approver

MODALS = {"partial": "partial_modal", "deny": "deny_modal", "reply_manually": "reply_modal"}
CALLBACKS = {v: k for k, v in MODALS.items()}


@dataclass
class SlackAnswer:
    status: int
    body: dict[str, Any] | None = None


@dataclass
class InteractionService:
    policy: Policy
    approvals: ApprovalRepository
    audit: AuditTrail
    slack: Any
    signing_secret: str
    agent_queue_url: str = ""

    def handle(self, headers: dict[str, str], body: str) -> SlackAnswer:
        from slack_sdk.signature import SignatureVerifier

        lower = {k.lower(): v for k, v in headers.items()}
        verifier = SignatureVerifier(self.signing_secret)
        if not verifier.is_valid(
            body, lower.get("x-slack-request-timestamp", ""), lower.get("x-slack-signature", "")
        ):
            return SlackAnswer(401, {"error": "invalid or stale Slack signature"})
        try:
            payload = json.loads(parse_qs(body)["payload"][0])
        except (KeyError, IndexError, json.JSONDecodeError):
            return SlackAnswer(400, {"error": "body must be form-encoded with a JSON `payload` field"})
        user = payload.get("user", {})
        if payload.get("type") == "block_actions":
            action = payload["actions"][0]
            return self._click(payload, action["action_id"], action.get("value", ""), user)
        if payload.get("type") == "view_submission":
            return self._submit(payload, user)
        return SlackAnswer(200)

    # --- clicks and submissions ----------------------------------------------------------------------

    def _click(
        self, payload: dict[str, Any], action: str, approval_id: str, user: dict[str, Any]
    ) -> SlackAnswer:
        approval = self._guard(payload, approval_id, user, action)
        if isinstance(approval, SlackAnswer):
            return approval
        if action in MODALS:
            self.slack.views_open(trigger_id=payload["trigger_id"], view=_modal(approval, action))
            return SlackAnswer(200)
        return self._decide(
            payload, approval, Decision(kind=action, by=user.get("id", ""), by_name=user.get("username", ""))
        )  # type: ignore[arg-type]

    def _submit(self, payload: dict[str, Any], user: dict[str, Any]) -> SlackAnswer:
        view = payload["view"]
        action = CALLBACKS.get(view.get("callback_id", ""))
        if action is None:
            return SlackAnswer(200)
        approval = self._guard(payload, view.get("private_metadata", ""), user, action)
        if isinstance(approval, SlackAnswer):
            return approval
        values = {
            block: next(iter(v.values())).get("value") or "" for block, v in view["state"]["values"].items()
        }
        decision = Decision(kind=action, by=user.get("id", ""), by_name=user.get("username", ""))  # type: ignore[arg-type]
        if action == "partial":
            cents = _cents(values.get("amount", ""))
            maximum = int(approval.args.get("amount_cents", 0))
            if cents is None or not 0 < cents <= maximum:
                error = f"Enter an amount above $0 and at most {money(maximum)}."
                return SlackAnswer(200, {"response_action": "errors", "errors": {"amount": error}})
            decision.amount_cents = cents
        elif action == "deny":
            decision.reason = values.get("reason", "").strip()
            if not decision.reason:
                return SlackAnswer(200, {"response_action": "errors", "errors": {"reason": "Give a reason."}})
        else:
            decision.reply = values.get("reply", "").strip()
            if len(decision.reply) < 10:
                return SlackAnswer(
                    200, {"response_action": "errors", "errors": {"reply": "Write the reply."}}
                )
        return self._decide(payload, approval, decision)

    def _guard(
        self, payload: dict[str, Any], approval_id: str, user: dict[str, Any], action: str
    ) -> Approval | SlackAnswer:
        approval = self.approvals.get(approval_id)
        if approval is None:
            return self._ephemeral(payload, None, user, "This request no longer exists.")
        if not is_approver(self.slack, self.policy.approvers_for(approval.channel), user.get("id", "")):
            self._audit(approval, "approval:unauthorized", "refused", user, {"attempted": action})
            return self._ephemeral(payload, approval, user, "You are not an approver for this request.")
        if approval.status != "pending":
            return self._already(payload, approval, user)
        return approval

    def _decide(self, payload: dict[str, Any], approval: Approval, decision: Decision) -> SlackAnswer:
        try:
            approval = self.approvals.decide(approval.approval_id, decision)
        except AlreadyDecided as exc:
            return self._already(payload, exc.approval or approval, payload.get("user", {}))
        self._audit(
            approval,
            "approval:decide",
            decision.kind,
            payload.get("user", {}),
            {"amount_cents": decision.amount_cents, "args_hash": approval.args_hash},
        )
        if approval.kind == "handoff":
            # No workflow waits on a handoff notice: the agent follows up from its queue directly.
            message = {
                "type": "resume",
                "session_id": approval.session_id,
                "approval_id": approval.approval_id,
                "decision": decision.model_dump(mode="json"),
            }
            aws.sqs().send_message(QueueUrl=self.agent_queue_url, MessageBody=json.dumps(message))
            self._update_message(approval, decision)
            return SlackAnswer(200)
        token = self.approvals.task_token(approval.approval_id)
        client = aws.stepfunctions()
        try:
            client.send_task_success(taskToken=token or "", output=decision.model_dump_json())
        except (
            client.exceptions.TaskTimedOut,
            client.exceptions.InvalidToken,
            client.exceptions.TaskDoesNotExist,
        ):
            self._audit(approval, "approval:token_rejected", "expired", payload.get("user", {}), {})
            return self._ephemeral(
                payload,
                approval,
                payload.get("user", {}),
                "This request expired: the ticket has gone to the team.",
            )
        self._update_message(approval, decision)
        return SlackAnswer(200)

    def _update_message(self, approval: Approval, decision: Decision) -> None:
        """Buttons removed; who decided what, and when."""
        if approval.slack_ts:
            when = decision.at[11:16]
            self.slack.chat_update(
                channel=approval.slack_channel or "",
                ts=approval.slack_ts,
                text=outcome_line(approval, decision, when),
                blocks=decided_blocks(approval, decision, when),
            )

    def _already(self, payload: dict[str, Any], approval: Approval, user: dict[str, Any]) -> SlackAnswer:
        made = approval.decision
        if made is None or made.kind == "expired":
            text = "This request expired: the ticket has gone to the team."
        else:
            text = f"Already decided by <@{made.by}>: {made.kind.replace('_', ' ')}."
        return self._ephemeral(payload, approval, user, text)

    def _ephemeral(
        self, payload: dict[str, Any], approval: Approval | None, user: dict[str, Any], text: str
    ) -> SlackAnswer:
        channel = (payload.get("channel") or {}).get("id") or (approval.slack_channel if approval else None)
        if payload.get("type") == "view_submission":
            return SlackAnswer(200, {"response_action": "errors", "errors": {_first_block(payload): text}})
        if channel:
            self.slack.chat_postEphemeral(channel=channel, user=user.get("id", ""), text=text)
        return SlackAnswer(200)

    def _audit(
        self, approval: Approval, action: str, outcome: str, user: dict[str, Any], details: dict[str, Any]
    ) -> None:
        self.audit.append(
            approval.session_id,
            actor=f"slack:{user.get('id', '?')}",
            action=action,
            resource=f"approvals/{approval.approval_id}",
            decision="n/a",
            outcome=outcome,
            details=details,
        )


def _first_block(payload: dict[str, Any]) -> str:
    values = payload.get("view", {}).get("state", {}).get("values", {})
    return next(iter(values), "reason")


def _cents(text: str) -> int | None:
    match = re.fullmatch(r"\s*\$?\s*(\d{1,7})(?:[.,](\d{1,2}))?\s*", text or "")
    if not match:
        return None
    return int(match.group(1)) * 100 + int((match.group(2) or "0").ljust(2, "0"))


def _modal(approval: Approval, action: str) -> dict[str, Any]:
    def text_input(block: str, label: str, initial: str = "", multiline: bool = False) -> dict[str, Any]:
        element: dict[str, Any] = {"type": "plain_text_input", "action_id": "value", "multiline": multiline}
        if initial:
            element["initial_value"] = initial[:3000]
        return {
            "type": "input",
            "block_id": block,
            "label": {"type": "plain_text", "text": label},
            "element": element,
        }

    if action == "partial":
        maximum = money(int(approval.args.get("amount_cents", 0)))
        body = [text_input("amount", f"Amount to refund (at most {maximum})")]
        title = "Partial refund"
    elif action == "deny":
        body = [text_input("reason", "Reason (the agent uses it in its reply)", multiline=True)]
        title = "Deny"
    else:
        body = [
            text_input("reply", "Reply to the customer", approval.escalation.get("draft_reply", ""), True)
        ]
        title = "Reply manually"
    return {
        "type": "modal",
        "callback_id": MODALS[action],
        "private_metadata": approval.approval_id,
        "title": {"type": "plain_text", "text": title},
        "submit": {"type": "plain_text", "text": "Submit"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": body,
    }


def from_settings() -> InteractionService:
    from support_agent.config import settings
    from support_agent.policy import cached_policy
    from support_agent.slack import app_credentials

    s = settings()
    client, signing_secret = app_credentials()
    return InteractionService(
        policy=cached_policy(s.policy_file),
        approvals=ApprovalRepository(s.sessions_table),
        audit=AuditTrail(s.audit_table),
        slack=client,
        signing_secret=signing_secret,
        agent_queue_url=s.agent_queue_url,
    )
