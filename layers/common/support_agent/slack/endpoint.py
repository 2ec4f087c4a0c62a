"""Slack's interactive endpoint: a click or a modal submission becomes a recorded decision.

Order: refuse a timestamp header that is not Unix seconds within 5 minutes, then a body past 64 KiB,
then verify the signature on the raw bytes, and only then parse and validate the payload
(`slack.payloads`); each of these refusals is a 4xx that changes nothing. Then check the person may
decide; record the first decision with a guarded write; hand it on (the workflow's task for an
approval, the AgentQueue for a handoff notice); update the message.

Within Slack's 3 seconds: a request is a few DynamoDB and Step Functions calls and one Slack call. A
button that opens a modal calls views.open before anything else is written (its trigger expires after
3 s); the Slack calls that show the outcome come after the decision is recorded and handed on, and wait
2 s at most, never retried (`slack.client.INTERACTIVE`). A handoff's follow-up, the slow part, goes to the
agent through its queue. A crash between the recorded decision and SendTaskSuccess loses nothing: see
`slack.delivery`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from support_agent import boundary, clock
from support_agent.messaging import ApprovalWorkflow, Queue
from support_agent.models import (
    SLACK_INPUT_CHARS,
    AgentMessage,
    Approval,
    Decision,
    DecisionKind,
    PersonRequest,
)
from support_agent.rules.approvals import AlreadyDecided, ApprovalStore
from support_agent.rules.audit import AuditDraft, AuditLog, draft
from support_agent.rules.policy import Policy
from support_agent.slack import payloads
from support_agent.slack.client import ApproverDirectory, SlackApi
from support_agent.slack.delivery import deliver
from support_agent.slack.payloads import BlockActions, Interaction, SlackUser, ViewSubmission
from support_agent.slack.render import cut, decided_blocks, outcome_line

_log = logging.getLogger(__name__)

MODALS: dict[str, str] = {"partial": "partial_modal", "deny": "deny_modal", "reply_manually": "reply_modal"}
CALLBACKS = {v: k for k, v in MODALS.items()}
# Slack's plain_text_input accepts max_length up to 3,000; Decision.reason and .reply allow exactly as much.
INPUT_LIMIT = SLACK_INPUT_CHARS
LABEL_LIMIT = 2000  # an input block's label
EXPIRED = "This request expired: the ticket has gone to the team."
# The SlackInteraction function's Timeout: a decider older than this has handed its decision on, or died.
DECIDER_SECONDS = 10
TOLERANCE_SECONDS = 300  # Slack's own advice: refuse requests more than five minutes old (replays)


@dataclass
class SlackAnswer:
    status: int
    body: dict[str, Any] | None = None


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


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

    def handle_encoded(self, headers: Mapping[str, str], raw: str | None, is_base64: bool) -> SlackAnswer:
        """A request as API Gateway passes it: text, or base64 (`isBase64Encoded`) when binary."""
        refused = self._check_timestamp(_lower(headers))
        if refused is not None:
            return refused
        try:
            body = boundary.decode_body(raw, is_base64, boundary.SLACK_MAX_BYTES)
        except boundary.Refused as exc:
            return SlackAnswer(exc.status, {"error": exc.reason})
        return self.handle(headers, body)

    def handle(self, headers: Mapping[str, str], body: str | bytes) -> SlackAnswer:
        """One interactive request from Slack (form-encoded `payload`).

        Every refusal is a 4xx that changes nothing: the timestamp header first (an integer, within the
        window), then the size, then the signature over the raw bytes, and only then parsing and
        validating the payload (`slack.payloads`).
        """
        lower = _lower(headers)
        refused = self._check_timestamp(lower)
        if refused is not None:
            return refused
        raw = body if isinstance(body, bytes) else body.encode(errors="surrogatepass")
        if len(raw) > boundary.SLACK_MAX_BYTES:
            return SlackAnswer(
                413, {"error": f"body is larger than the {boundary.SLACK_MAX_BYTES // 1024} KiB limit"}
            )
        if not self._signed(lower["x-slack-request-timestamp"], raw, lower.get("x-slack-signature", "")):
            return SlackAnswer(401, {"error": "invalid Slack signature"})
        try:
            payload = payloads.parse(raw)
        except payloads.PayloadRefused as exc:
            return SlackAnswer(400, {"error": str(exc)})
        if isinstance(payload, BlockActions):
            action = payload.actions[0]
            return self._click(payload, action.action_id, action.value)
        if isinstance(payload, ViewSubmission):
            return self._submit(payload)
        return SlackAnswer(200)

    def _check_timestamp(self, lower: dict[str, str]) -> SlackAnswer | None:
        """401 unless X-Slack-Request-Timestamp is Unix seconds (ASCII digits) within 5 minutes of now."""
        timestamp = lower.get("x-slack-request-timestamp", "")
        if not timestamp:
            return SlackAnswer(401, {"error": "missing X-Slack-Request-Timestamp header"})
        if not boundary.is_unix_seconds(timestamp):
            return SlackAnswer(401, {"error": "X-Slack-Request-Timestamp is not an integer (Unix seconds)"})
        if abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
            return SlackAnswer(
                401, {"error": "stale Slack request: the timestamp is outside the 5-minute window"}
            )
        return None

    def _signed(self, timestamp: str, body: bytes, signature: str) -> bool:
        """Slack's v0 scheme: `v0=` + hex HMAC-SHA256(signing secret, `v0:{timestamp}:{body}`), on bytes."""
        if not signature or len(signature) > 128:
            return False
        digest = hmac.new(
            self.signing_secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256
        )
        return hmac.compare_digest(f"v0={digest.hexdigest()}".encode(), signature.encode(errors="replace"))

    # --- clicks and submissions ----------------------------------------------------------------------

    def _click(self, payload: BlockActions, action: str, request_id: str) -> SlackAnswer:
        request = self._guard(payload, request_id, action)
        if isinstance(request, SlackAnswer):
            return request
        if action in MODALS and isinstance(request, Approval):
            self.slack.open_view(payload.trigger_id, modal(request, action))
            return SlackAnswer(200)
        kind: DecisionKind = request.offer(action).kind  # type: ignore[union-attr]  # _guard checked the offer
        user = payload.user
        return self._decide(payload, request, Decision(kind=kind, by=user.id, by_name=user.username))

    def _submit(self, payload: ViewSubmission) -> SlackAnswer:
        view = payload.view
        action = CALLBACKS.get(view.callback_id)
        if action is None:
            return SlackAnswer(200)
        request = self._guard(payload, view.private_metadata, action)
        if not isinstance(request, Approval):
            return request if isinstance(request, SlackAnswer) else SlackAnswer(200)
        values = view.state.first_values()
        decision = Decision(kind=action, by=payload.user.id, by_name=payload.user.username)  # type: ignore[arg-type]
        if action == "partial":
            bound = request.partial
            amount = bound.parse(values.get("amount", "")) if bound else None
            if bound is None or amount is None or not 0 < amount <= bound.maximum:
                limit = bound.show(bound.maximum) if bound else "the proposed amount"
                return errors("amount", f"Enter an amount above 0 and at most {limit}.")
            decision.amount = amount
        elif action == "deny":
            reason = values.get("reason", "").strip()
            if not reason:
                return errors("reason", "Give a reason.")
            if len(reason) > INPUT_LIMIT:  # Slack enforces max_length; a forged submission is refused
                return errors("reason", f"Keep the reason within {INPUT_LIMIT} characters.")
            decision.reason = reason
        else:
            reply = values.get("reply", "").strip()
            if len(reply) < 10:
                return errors("reply", "Write the reply.")
            if len(reply) > INPUT_LIMIT:
                return errors("reply", f"Keep the reply within {INPUT_LIMIT} characters.")
            decision.reply = reply
        return self._decide(payload, request, decision)

    def _guard(self, payload: Interaction, request_id: str, action: str) -> PersonRequest | SlackAnswer:
        request = self.approvals.get(request_id) if request_id else None
        if request is None:
            return self._ephemeral(payload, None, "This request no longer exists.")
        if not self.directory.is_approver(self.policy.approvers_for(request.channel), payload.user.id):
            self._audit(request, "approval:unauthorized", "refused", payload.user, {"attempted": action})
            return self._ephemeral(payload, request, "You are not an approver for this request.")
        if request.status != "pending":
            return self._already(payload, request)
        if request.offer(action) is None:
            return self._ephemeral(payload, request, "That choice is not offered for this request.")
        return request

    def _decide(self, payload: Interaction, request: PersonRequest, decision: Decision) -> SlackAnswer:
        user = payload.user
        hashed = request.args_hash if isinstance(request, Approval) else None
        details = {"amount": decision.amount, "args_hash": hashed}
        entry = self._entry(request, "approval:decide", decision.kind, user, details)
        try:  # the decision and its audit entry are one write
            request = self.approvals.decide_recorded(request, decision, [entry])
        except AlreadyDecided as exc:
            return self._already(payload, exc.request or request)
        if isinstance(request, Approval):
            # The decision is recorded and nothing can expire it now (an expiry is a guarded write too):
            # when no live token is at hand, the notifier delivers it with the next one (slack.delivery).
            # The token read with the request comes first; a reminder may have replaced it since, and a
            # rejected token is read again.
            token = self.approvals.task_token(request.approval_id, reread=False)
            if not deliver(self.approvals, self.workflow, request, token):
                self._audit(request, "approval:deliver_deferred", "left_to_notifier", user, {})
        else:
            # No workflow waits on a handoff notice: the agent follows up from its queue directly.
            follow_up = AgentMessage(
                type="handoff_follow_up", session_id=request.session_id, notice_id=request.notice_id
            )
            self.agent_queue.send(follow_up)
        self._update_message(request, decision)
        return SlackAnswer(200)

    def _update_message(self, request: PersonRequest, decision: Decision) -> None:
        """Buttons removed; who decided what, and when.

        The decision is recorded and handed on by now, so a slow or failing Slack must not turn the answer
        into an error: the clicker would think nothing happened. The workflow's ShowDecided state redraws
        the message from the stored decision; a second click on a notice says who decided.
        """
        if not request.slack_ts:
            return
        when = decision.at[11:16]
        text = outcome_line(request, decision, when)
        try:
            self.slack.update_message(
                request.slack_channel or "", request.slack_ts, text, decided_blocks(request, decision, when)
            )
        except Exception as exc:  # any Slack or network failure: logged, then answered
            _log.warning(
                "chat.update failed after the decision was recorded",
                extra={"request_id": request.request_id, "error": f"{type(exc).__name__}: {exc}"[:300]},
            )

    def _already(self, payload: Interaction, request: PersonRequest) -> SlackAnswer:
        made = request.decision
        # The first decider may have died before SendTaskSuccess: once it has had its whole run, hand the
        # stored decision on now rather than at the next reminder (an answered token is simply rejected).
        if (
            isinstance(request, Approval)
            and request.status == "decided"
            and made is not None
            and clock.now() - datetime.fromisoformat(made.at) > timedelta(seconds=DECIDER_SECONDS)
            and deliver(
                self.approvals, self.workflow, request, self.approvals.task_token(request.approval_id)
            )
        ):
            self._audit(request, "approval:deliver", made.kind, payload.user, {"redelivered": True})
            self._update_message(request, made)
        text = (
            EXPIRED
            if made is None or made.kind == "expired"
            else f"Already decided by <@{made.by}>: {made.kind.replace('_', ' ')}."
        )
        return self._ephemeral(payload, request, text)

    def _ephemeral(self, payload: Interaction, request: PersonRequest | None, text: str) -> SlackAnswer:
        if isinstance(payload, ViewSubmission):
            return errors(next(iter(payload.view.state.values), "reason"), text)
        channel = (payload.channel.id if payload.channel else None) or (
            request.slack_channel if request else None
        )
        if channel:
            self.slack.post_ephemeral(channel, payload.user.id, text)
        return SlackAnswer(200)

    def _audit(
        self, request: PersonRequest, action: str, outcome: str, user: SlackUser, details: dict[str, Any]
    ) -> None:
        self.audit.append(request.session_id, [self._entry(request, action, outcome, user, details)])

    @staticmethod
    def _entry(
        request: PersonRequest, action: str, outcome: str, user: SlackUser, details: dict[str, Any]
    ) -> AuditDraft:
        return draft(f"slack:{user.id}", action, f"approvals/{request.request_id}", "n/a", outcome, details)


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
    if initial and len(initial) <= INPUT_LIMIT:  # a longer draft is not cut: people write the reply
        element["initial_value"] = initial
    return {
        "type": "input",
        "block_id": block,
        "label": {"type": "plain_text", "text": cut(label, LABEL_LIMIT)},
        "element": element,
    }
