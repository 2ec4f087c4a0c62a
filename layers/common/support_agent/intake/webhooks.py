"""Ticketing-system webhooks: how each source signs its requests and what its payload looks like.

Each source turns a verified raw body into our `Ticket` plus the sender's event id (what makes a
delivery a duplicate of another).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from support_agent import boundary
from support_agent.intake import signatures
from support_agent.intake.zendesk_events import EventPayloadError, IgnoredEvent, parse_zendesk_payload
from support_agent.models import EMAIL_PATTERN, Ticket


class PayloadError(ValueError):
    """The body is not a valid payload; the message names the field."""


# --- generic: our own documented schema --------------------------------------------------------------


class GenericRequester(BaseModel):
    """Our schema identifies a requester by e-mail (the helpdesk's verified address)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    email: str = Field(max_length=254, pattern=EMAIL_PATTERN)
    name: str | None = Field(default=None, max_length=200)


class GenericTicket(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    id: str
    subject: str = ""
    body: str
    requester: GenericRequester
    customer_id: str | None = None
    queue: str = "tier-1"
    tags: list[str] = Field(default_factory=list)
    url: str | None = None
    created_at: str | None = None


class GenericWebhook(BaseModel):
    """POST /webhooks/generic: `{"event_id", "event_type": "ticket.created", "ticket": {...}}`."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    event_id: str = Field(min_length=1, max_length=128)
    event_type: Literal["ticket.created"] = "ticket.created"
    ticket: GenericTicket


@dataclass(frozen=True)
class Delivery:
    ticket: Ticket
    event_id: str


@dataclass(frozen=True)
class Ignored:
    """A well-formed delivery that must not start a session (another event, or a ticket we already handled)."""

    reason: str


@dataclass(frozen=True)
class WebhookSource:
    """How one ticketing system signs and shapes its webhooks."""

    name: str
    signature_header: str
    timestamp_header: str
    sign: Callable[[str, str, bytes], str]
    parse: Callable[[bytes], Delivery | Ignored]

    def verify(
        self, headers: Mapping[str, str], body: bytes, secret: str, now: float, tolerance: int
    ) -> None:
        """Raise SignatureError unless the headers sign this exact body within the time window."""
        lower = {k.lower(): v for k, v in headers.items()}
        timestamp = lower.get(self.timestamp_header.lower())
        signature = lower.get(self.signature_header.lower())
        if not signature:
            raise signatures.SignatureError(f"missing {self.signature_header} header")
        signatures.check_window(timestamp, now, tolerance)
        assert timestamp is not None
        signatures.verify(self.sign(secret, timestamp, body), signature)


def _load_json(body: bytes) -> Any:
    """UTF-8 JSON, at most boundary.MAX_JSON_DEPTH deep, no lone surrogates; else PayloadError."""
    try:
        return boundary.load_json(boundary.utf8_text(body))
    except boundary.Refused as exc:
        raise PayloadError(exc.reason) from None
    except ValueError as exc:
        raise PayloadError(str(exc)) from None


def _field_error(exc: ValidationError) -> PayloadError:
    err = exc.errors()[0]
    # A location may hold a key the sender chose (an unexpected field): keep each part short.
    field = ".".join(str(p)[:64] for p in err["loc"]) or "body"
    return PayloadError(f"{field}: {err['msg']}")


def _ticket(source: str, **fields: Any) -> Ticket:
    try:
        return Ticket(source=source, **fields)
    except ValidationError as exc:
        err = _field_error(exc)
        raise PayloadError(f"ticket.{err}") from None


def parse_generic(body: bytes) -> Delivery:
    try:
        hook = GenericWebhook.model_validate(_load_json(body))
    except ValidationError as exc:
        raise _field_error(exc) from None
    t = hook.ticket
    ticket = _ticket(
        "generic",
        id=t.id,
        subject=t.subject,
        body=t.body,
        requester=t.requester.model_dump(),
        customer_id=t.customer_id,
        queue=t.queue,
        tags=t.tags,
        url=t.url,
        created_at=t.created_at,
    )
    return Delivery(ticket, hook.event_id)


def parse_zendesk(body: bytes) -> Delivery | Ignored:
    """A trigger body or an event-subscription payload (see intake.zendesk_events)."""
    try:
        found = parse_zendesk_payload(body)
    except EventPayloadError as exc:
        raise PayloadError(str(exc)) from None
    if isinstance(found, IgnoredEvent):
        return Ignored(f"{found.event_type}: {found.reason}")
    if found.handled_by_us:
        return Ignored("the ticket already carries the agent's tags")
    requester = {"email": found.lookup_email, "name": found.requester_name, "id": found.requester_id}
    ticket = _ticket(
        "zendesk",
        id=found.ticket_id,
        subject=found.subject,
        body=found.description,
        requester=requester,
        customer_id=found.customer_id,
        tags=found.tags,
        url=found.url,
        created_at=found.created_at,
    )
    # One ticket is created once: a second delivery for the same id (trigger or event) is a retry.
    return Delivery(ticket, found.event_id)


SOURCES: dict[str, WebhookSource] = {
    "generic": WebhookSource(
        "generic", "X-Signature", "X-Signature-Timestamp", signatures.sign_generic, parse_generic
    ),
    "zendesk": WebhookSource(
        "zendesk",
        "X-Zendesk-Webhook-Signature",
        "X-Zendesk-Webhook-Signature-Timestamp",
        signatures.sign_zendesk,
        parse_zendesk,
    ),
}
