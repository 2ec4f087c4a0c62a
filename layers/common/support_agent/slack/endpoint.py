"""Slack's interactive endpoint: a click or a modal submission becomes a recorded decision.

Order: verify the signature on the raw body (5-minute window) before parsing; check the person may
decide; record the first decision with a guarded write; hand it on (the workflow's task for an approval,
the AgentQueue for a handoff notice); update the message. Everything here is a few DynamoDB and API
calls, well inside Slack's 3-second budget.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from support_agent.messaging import ApprovalWorkflow, Queue, TokenRejected
from support_agent.models import AgentMessage, Approval, Decision, DecisionKind, PersonRequest
from support_agent.rules.approvals import AlreadyDecided, ApprovalStore
from support_agent.rules.audit import AuditLog, draft
from support_agent.rules.policy import Policy
from support_agent.slack.client import ApproverDirectory, SlackApi
from support_agent.slack.render import decided_blocks, outcome_line

MODALS: dict[str, str] = {"partial": "partial_modal", "deny": "deny_modal", "reply_manually": "reply_modal"}
CALLBACKS = {v: k for k, v in MODALS.items()}
INPUT_LIMIT = 3000  # Slack's plain_text_input max_length; Decision.reason allows as much
EXPIRED = "This request expired: the ticket has gone to the team."


@dataclass
class SlackAnswer:
    status: int
    body: dict[str, Any] | None = None


def errors(block: str, text: str) -> SlackAnswer:
    """A modal submission refused, with the reason shown under the input."""
    return SlackAnswer(200, {"response_action": "errors", "errors": {block: text}})


@dataclass
class SlackEndpoint:
    policy: Policy
    approvals: ApprovalStore
    audit: AuditLog
    slack: SlackApi
    directory: ApproverDirectory
    workflow: ApprovalWorkflow
    agent_queue: Queue
    signing_secret: str

    def handle(self, headers: dict[str, str], body: str) -> SlackAnswer:
        """One interactive request from Slack (form-encoded `payload`)."""
        from slack_sdk.signature import SignatureVerifier

        lower = {k.lower(): v for k, v in headers.items()}
        verifier = SignatureVerifier(self.signing_secret)
        timestamp, signature = lower.get("x-slack-request-timestamp", ""), lower.get("x-slack-signature", "")
        if not verifier.is_valid(body, timestamp, signature):
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
        self, payload: dict[str, Any], action: str, request_id: str, user: dict[str, Any]
    ) -> SlackAnswer:
        request = self._guard(payload, request_id, user, action)
        if isinstance(request, SlackAnswer):
            return request
        if action in MODALS and isinstance(request, Approval):
            self.slack.open_view(payload["trigger_id"], modal(request, action))
            return SlackAnswer(200)
        kind: DecisionKind = request.offer(action).kind  # type: ignore[union-attr]  # _guard checked the offer
        return self._decide(
            payload, request, Decision(kind=kind, by=user.get("id", ""), by_name=user.get("username", ""))
        )

    def _submit(self, payload: dict[str, Any], user: dict[str, Any]) -> SlackAnswer:
        view = payload["view"]
        action = CALLBACKS.get(view.get("callback_id", ""))
        if action is None:
            return SlackAnswer(200)
        request = self._guard(payload, view.get("private_metadata", ""), user, action)
        if not isinstance(request, Approval):
            return request if isinstance(request, SlackAnswer) else SlackAnswer(200)
        values = {
            block: next(iter(v.values())).get("value") or "" for block, v in view["state"]["values"].items()
        }
        decision = Decision(kind=action, by=user.get("id", ""), by_name=user.get("username", ""))  # type: ignore[arg-type]
        if action == "partial":
            bound = request.partial
            amount = bound.parse(values.get("amount", "")) if bound else None
            if bound is None or amount is None or not 0 < amount <= bound.maximum:
                limit = bound.show(bound.maximum) if bound else "the proposed amount"
                return errors("amount", f"Enter an amount above 0 and at most {limit}.")
            decision.amount = amount
        elif action == "deny":
            decision.reason = values.get("reason", "").strip()[:INPUT_LIMIT]
            if not decision.reason:
                return errors("reason", "Give a reason.")
        else:
            decision.reply = values.get("reply", "").strip()[:INPUT_LIMIT]
            if len(decision.reply) < 10:
                return errors("reply", "Write the reply.")
        return self._decide(payload, request, decision)

    def _guard(
        self, payload: dict[str, Any], request_id: str, user: dict[str, Any], action: str
    ) -> PersonRequest | SlackAnswer:
        request = self.approvals.get(request_id) if request_id else None
        if request is None:
            return self._ephemeral(payload, None, user, "This request no longer exists.")
        if not self.directory.is_approver(self.policy.approvers_for(request.channel), user.get("id", "")):
            self._audit(request, "approval:unauthorized", "refused", user, {"attempted": action})
            return self._ephemeral(payload, request, user, "You are not an approver for this request.")
        if request.status != "pending":
            return self._already(payload, request, user)
        if request.offer(action) is None:
            return self._ephemeral(payload, request, user, "That choice is not offered for this request.")
        return request

    def _decide(self, payload: dict[str, Any], request: PersonRequest, decision: Decision) -> SlackAnswer:
        user = payload.get("user", {})
        try:
            request = self.approvals.decide(request.request_id, decision)
        except AlreadyDecided as exc:
            return self._already(payload, exc.request or request, user)
        hashed = request.args_hash if isinstance(request, Approval) else None
        self._audit(
            request,
            "approval:decide",
            decision.kind,
            user,
            {"amount": decision.amount, "args_hash": hashed},
        )
        if isinstance(request, Approval):
            try:
                self.workflow.answer(self.approvals.task_token(request.approval_id) or "", decision)
            except TokenRejected:
                self._audit(request, "approval:token_rejected", "expired", user, {})
                return self._ephemeral(payload, request, user, EXPIRED)
        else:
            # No workflow waits on a handoff notice: the agent follows up from its queue directly.
            follow_up = AgentMessage(
                type="handoff_follow_up", session_id=request.session_id, notice_id=request.notice_id
            )
            self.agent_queue.send(follow_up)
        self._update_message(request, decision)
        return SlackAnswer(200)

    def _update_message(self, request: PersonRequest, decision: Decision) -> None:
        """Buttons removed; who decided what, and when."""
        if request.slack_ts:
            when = decision.at[11:16]
            text = outcome_line(request, decision, when)
            self.slack.update_message(
                request.slack_channel or "", request.slack_ts, text, decided_blocks(request, decision, when)
            )

    def _already(self, payload: dict[str, Any], request: PersonRequest, user: dict[str, Any]) -> SlackAnswer:
        made = request.decision
        text = (
            EXPIRED
            if made is None or made.kind == "expired"
            else f"Already decided by <@{made.by}>: {made.kind.replace('_', ' ')}."
        )
        return self._ephemeral(payload, request, user, text)

    def _ephemeral(
        self, payload: dict[str, Any], request: PersonRequest | None, user: dict[str, Any], text: str
    ) -> SlackAnswer:
        if payload.get("type") == "view_submission":
            values = payload.get("view", {}).get("state", {}).get("values", {})
            return errors(next(iter(values), "reason"), text)
        channel = (payload.get("channel") or {}).get("id") or (request.slack_channel if request else None)
        if channel:
            self.slack.post_ephemeral(channel, user.get("id", ""), text)
        return SlackAnswer(200)

    def _audit(
        self, request: PersonRequest, action: str, outcome: str, user: dict[str, Any], details: dict[str, Any]
    ) -> None:
        entry = draft(
            f"slack:{user.get('id', '?')}", action, f"approvals/{request.request_id}", "n/a", outcome, details
        )
        self.audit.append(request.session_id, [entry])


def modal(approval: Approval, action: str) -> dict[str, Any]:
    """The modal for a partial amount, a deny reason or a manual reply."""
    if action == "partial" and approval.partial:
        bound = approval.partial
        label = f"Amount ({bound.label}, at most {bound.show(bound.maximum)})"
        body, title = [_text_input("amount", label)], "Partial amount"
    elif action == "deny":
        body, title = (
            [_text_input("reason", "Reason (the agent uses it in its reply)", multiline=True)],
            "Deny",
        )
    else:
        draft_reply = approval.escalation.draft_reply
        body, title = (
            [_text_input("reply", "Reply to the customer", draft_reply, multiline=True)],
            "Reply manually",
        )
    return {
        "type": "modal",
        "callback_id": MODALS[action],
        "private_metadata": approval.approval_id,
        "title": {"type": "plain_text", "text": title},
        "submit": {"type": "plain_text", "text": "Submit"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": body,
    }


def _text_input(block: str, label: str, initial: str = "", multiline: bool = False) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "plain_text_input",
        "action_id": "value",
        "multiline": multiline,
        "max_length": INPUT_LIMIT,
    }
    if initial:
        element["initial_value"] = initial[:INPUT_LIMIT]
    return {
        "type": "input",
        "block_id": block,
        "label": {"type": "plain_text", "text": label[:2000]},
        "element": element,
    }
