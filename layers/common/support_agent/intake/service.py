"""Intake: a webhook delivery becomes a session on the agent queue (or a clear refusal).

Order matters: the body's size is checked first, then the signature on the raw body, before anything is
parsed; a refused request writes exactly one audit entry (without the body) and nothing else. That entry
starts a chain of its own (see `_reject`), so a burst of refusals never contends on one chain.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from support_agent import boundary, clock
from support_agent.intake.signatures import SignatureError
from support_agent.intake.webhooks import SOURCES, Ignored, PayloadError
from support_agent.messaging import Queue
from support_agent.models import AgentMessage, SessionState, Ticket
from support_agent.rules.audit import AuditDraft, AuditLog, draft
from support_agent.rules.budget import DailyBudget, today
from support_agent.rules.policy import Policy
from support_agent.rules.sessions import SessionExists, SessionStore, new_session, session_id_for
from support_agent.secrets import SecretStore

ACTOR = "intake"


@dataclass
class IntakeResult:
    """What the handler answers and counts."""

    status: int
    body: dict[str, Any]
    metrics: list[str] = field(default_factory=list)
    session_id: str | None = None
    # 100 when the day's budget is spent (the sweeper publishes the share every five minutes otherwise)
    budget_used_percent: float | None = None


@dataclass
class IntakeService:
    policy: Policy
    sessions: SessionStore
    budget: DailyBudget
    audit: AuditLog
    queue: Queue
    secrets: SecretStore
    webhook_secret_name: str
    tolerance_seconds: int = 300
    max_body_bytes: int = boundary.WEBHOOK_MAX_BYTES

    def receive_encoded(
        self,
        source_name: str,
        headers: Mapping[str, str],
        raw: str | None,
        is_base64: bool,
        request_id: str = "",
    ) -> IntakeResult:
        """Handle a delivery as API Gateway passes it: text, or base64 (`isBase64Encoded`) when binary."""
        if source_name not in SOURCES:
            return self._unknown(source_name, request_id)
        try:
            body = boundary.decode_body(raw, is_base64, self.max_body_bytes)
        except boundary.Refused as exc:
            return self._reject(exc.status, exc.reason, source_name, request_id)
        return self.receive(source_name, headers, body, request_id)

    def receive(
        self, source_name: str, headers: Mapping[str, str], body: bytes, request_id: str = ""
    ) -> IntakeResult:
        """Handle one webhook delivery from `source_name` (`request_id`: API Gateway's, for the audit)."""
        source = SOURCES.get(source_name)
        if source is None:
            return self._unknown(source_name, request_id)
        try:
            boundary.check_size(body, self.max_body_bytes)
        except boundary.Refused as exc:
            return self._reject(exc.status, exc.reason, source_name, request_id)
        secret = self.secrets.get_json(self.webhook_secret_name).get(source_name)
        if not secret:
            reason = f"no signing secret is configured for {source_name}"
            return self._reject(503, reason, source_name, request_id)
        try:
            source.verify(headers, body, secret, time.time(), self.tolerance_seconds)
        except SignatureError as exc:
            return self._reject(401, str(exc), source_name, request_id)
        try:
            delivery = source.parse(body)
        except PayloadError as exc:
            return self._reject(400, str(exc), source_name, request_id)
        if isinstance(delivery, Ignored):
            # Our own updates and other events must never start a session (no loops); nothing is stored.
            return IntakeResult(200, {"status": "ignored", "reason": delivery.reason}, ["DeliveriesIgnored"])
        ticket = delivery.ticket
        session_id = session_id_for(source_name, delivery.event_id)
        resource = f"queue/{ticket.queue}"
        read = self.policy.authorize("tickets:read", resource)

        details = {"source": source_name, "event_id": delivery.event_id, "ticket_id": ticket.id}
        received = draft(ACTOR, "tickets:read", resource, read.describe(), "received", details)
        metrics = ["TicketsReceived"]
        if not read.allowed:
            return self._handoff(
                session_id, ticket, [received], "queue_not_allowed_by_policy", resource, metrics
            )

        # The session, its slot of the daily budget and the first entries of its audit trail are one
        # write: a retried delivery finds the session and takes no second slot; a crash cannot leave a
        # session without its slot or its trail, or a slot without its session. The send's entry goes in
        # with them: a failed send answers 5xx, and the retried delivery sends again.
        limit, day = self.policy.budget.max_sessions_per_day, today(self.policy.timezone)
        opening = [
            received,
            draft(ACTOR, "budget:session_slot", f"budget/{day}", "granted", "taken", {"limit": limit}),
            draft(ACTOR, "queue:send", "queue/agent", "n/a", "queued"),
        ]
        try:
            queued = new_session(session_id, ticket, SessionState.QUEUED)
            slot = self.budget.open(queued, limit, self.policy.timezone, opening)
        except SessionExists as exc:
            return self._duplicate(exc.session.session_id, exc.session.state)
        if not slot.granted:
            exhausted = draft(
                ACTOR, "budget:session_slot", f"budget/{slot.day}", "exhausted", f"{limit}/{limit}"
            )
            over = self._handoff(
                session_id,
                ticket,
                [received, exhausted],
                "daily_budget_exhausted",
                resource,
                [*metrics, "DailyBudgetExhausted"],
            )
            over.budget_used_percent = 100.0
            return over

        self.queue.send(AgentMessage(type="start", session_id=session_id))
        return IntakeResult(202, {"session_id": session_id, "status": "queued"}, metrics, session_id)

    def _handoff(
        self,
        session_id: str,
        ticket: Ticket,
        entries: list[AuditDraft],
        reason: str,
        resource: str,
        metrics: list[str],
    ) -> IntakeResult:
        """The ticket is kept for people: its session is stored in handoff, then audited."""
        try:
            self.sessions.create(new_session(session_id, ticket, SessionState.HANDOFF, reason))
        except SessionExists as exc:
            return self._duplicate(exc.session.session_id, exc.session.state)
        handoff = draft(ACTOR, "session:handoff", resource, "n/a", reason)
        self.audit.append(session_id, [*entries, handoff], new_chain=True)
        return IntakeResult(
            202, {"session_id": session_id, "status": "handoff", "reason": reason}, metrics, session_id
        )

    def _duplicate(self, session_id: str, state: SessionState) -> IntakeResult:
        # A session still queued may have lost its queue message (a crash between the two writes):
        # sending it again is safe because the agent claims a session with a conditional transition.
        if state is SessionState.QUEUED:
            self.queue.send(AgentMessage(type="start", session_id=session_id))
        return IntakeResult(
            200,
            {"session_id": session_id, "status": "duplicate", "state": state.value},
            ["DuplicateDeliveries"],
            session_id,
        )

    def _unknown(self, source_name: str, request_id: str) -> IntakeResult:
        return self._reject(404, f"unknown webhook source {source_name[:64]!r}", source_name, request_id)

    def _reject(self, status: int, reason: str, source_name: str, request_id: str = "") -> IntakeResult:
        """One audit entry in a chain of its own, then the refusal.

        The chain id is a hash of the request id, the time and 128 random bits, so the entry is the first
        (seq 1) of a chain nobody else writes: its conditional put cannot lose a race, however many
        refusals arrive at once (one shared chain per day lost races under a burst and answered 500).
        The date leads the id, so an operator can still list a day's refusals.
        """
        nonce = f"{request_id}\x00{time.time_ns()}\x00{secrets.token_hex(16)}"
        digest = hashlib.sha256(nonce.encode(errors="replace")).hexdigest()[:32]
        chain_id = f"intake-rejection-{clock.now().date().isoformat()}-{digest}"
        details = {"reason": _text(reason, 500), "request_id": _text(request_id, 128)}
        resource = f"webhooks/{_text(source_name, 64)}"
        entry = draft(ACTOR, "webhook:receive", resource, "rejected", str(status), details)
        self.audit.append(chain_id, [entry], new_chain=True)
        return IntakeResult(status, {"error": reason}, ["TicketsRejected"])


def _text(value: str, limit: int) -> str:
    """`value` cut to `limit` characters, anything that is not valid Unicode replaced (it is audited)."""
    return value[:limit].encode(errors="replace").decode()
