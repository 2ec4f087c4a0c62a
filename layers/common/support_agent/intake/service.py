"""Intake: a webhook delivery becomes a session on the agent queue (or a clear refusal).

Order matters: the signature is checked on the raw body before anything is parsed; a refused request
writes exactly one audit entry (without the body) and nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from support_agent import clock
from support_agent.intake.signatures import SignatureError
from support_agent.intake.webhooks import SOURCES, Ignored, PayloadError
from support_agent.messaging import Queue
from support_agent.models import AgentMessage, SessionState
from support_agent.rules.audit import AuditLog, draft
from support_agent.rules.budget import DailyBudget
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
    budget_used_percent: float | None = (
        None  # today's share of the daily session budget, once a slot is taken
    )


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

    def receive(self, source_name: str, headers: Mapping[str, str], body: bytes) -> IntakeResult:
        """Handle one webhook delivery from `source_name`."""
        source = SOURCES.get(source_name)
        if source is None:
            return self._reject(404, f"unknown webhook source {source_name!r}", source_name)
        secret = self.secrets.get_json(self.webhook_secret_name).get(source_name)
        if not secret:
            return self._reject(503, f"no signing secret is configured for {source_name}", source_name)
        try:
            source.verify(headers, body, secret, time.time(), self.tolerance_seconds)
        except SignatureError as exc:
            return self._reject(401, str(exc), source_name)
        try:
            delivery = source.parse(body)
        except PayloadError as exc:
            return self._reject(400, str(exc), source_name)
        if isinstance(delivery, Ignored):
            # Our own updates and other events must never start a session (no loops); nothing is stored.
            return IntakeResult(200, {"status": "ignored", "reason": delivery.reason}, ["DeliveriesIgnored"])
        ticket = delivery.ticket
        session_id = session_id_for(source_name, delivery.event_id)
        resource = f"queue/{ticket.queue}"
        read = self.policy.authorize("tickets:read", resource)

        try:
            self.sessions.create(new_session(session_id, ticket, SessionState.QUEUED))
        except SessionExists as exc:
            return self._duplicate(exc.session.session_id, exc.session.state)
        details = {"source": source_name, "event_id": delivery.event_id, "ticket_id": ticket.id}
        received = draft(ACTOR, "tickets:read", resource, read.describe(), "received", details)
        self.audit.append(session_id, [received], new_chain=True)
        metrics = ["TicketsReceived"]
        if not read.allowed:
            return self._handoff(session_id, "queue_not_allowed_by_policy", resource, metrics)

        slot = self.budget.take(self.policy.budget.max_sessions_per_day, self.policy.timezone)
        granted = "granted" if slot.granted else "exhausted"
        self._audit(
            session_id, "budget:session_slot", f"budget/{slot.day}", granted, f"{slot.used}/{slot.limit}"
        )
        if not slot.granted:
            over = self._handoff(
                session_id, "daily_budget_exhausted", resource, [*metrics, "DailyBudgetExhausted"]
            )
            over.budget_used_percent = 100.0
            return over

        self.queue.send(AgentMessage(type="start", session_id=session_id))
        self._audit(session_id, "queue:send", "queue/agent", "n/a", "queued")
        queued = IntakeResult(202, {"session_id": session_id, "status": "queued"}, metrics, session_id)
        queued.budget_used_percent = round(100 * slot.used / slot.limit, 1)
        return queued

    def _handoff(self, session_id: str, reason: str, resource: str, metrics: list[str]) -> IntakeResult:
        """Keep the ticket, but for people: the session goes straight to handoff."""
        self.sessions.transition(session_id, SessionState.QUEUED, SessionState.HANDOFF, reason=reason)
        self._audit(session_id, "session:handoff", resource, "n/a", reason)
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

    def _reject(self, status: int, reason: str, source_name: str) -> IntakeResult:
        self._audit(
            f"intake-rejections-{clock.now().date().isoformat()}",
            "webhook:receive",
            f"webhooks/{source_name}"[:80],
            "rejected",
            str(status),
            {"reason": reason},
        )
        return IntakeResult(status, {"error": reason}, ["TicketsRejected"])

    def _audit(
        self,
        session_id: str,
        action: str,
        resource: str,
        decision: str,
        outcome: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.audit.append(session_id, [draft(ACTOR, action, resource, decision, outcome, details)])
