"""Ticketing-system webhooks: how each source signs its requests and what its payload looks like.

Each source turns a verified raw body into our `Ticket` plus the sender's event id (what makes a
delivery a duplicate of another).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from support_agent.intake import signatures
from support_agent.models import Requester, Ticket


class PayloadError(ValueError):
    """The body is not a valid payload; the message names the field."""


# --- generic: our own documented schema --------------------------------------------------------------


class GenericTicket(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    id: str
    subject: str = ""
    body: str
    requester: Requester
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


# --- zendesk: the JSON body of a "ticket is created" trigger (see README) -----------------------------


class ZendeskRequester(BaseModel):
    model_config = ConfigDict(extra="ignore", defer_build=True)

    email: str
    name: str | None = None
    external_id: str | None = None


class ZendeskTicket(BaseModel):
    # Zendesk renders placeholders as strings and admins add fields of their own: ignore extras.
    model_config = ConfigDict(extra="ignore", defer_build=True)

    id: str
    subject: str = ""
    description: str
    requester: ZendeskRequester
    url: str | None = None
    tags: list[str] = Field(default_factory=list)
    group: str | None = None
    created_at: str | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> Any:
        return value.split() if isinstance(value, str) else value


class ZendeskWebhook(BaseModel):
    model_config = ConfigDict(extra="ignore", defer_build=True)

    ticket: ZendeskTicket


@dataclass(frozen=True)
class Delivery:
    ticket: Ticket
    event_id: str


@dataclass(frozen=True)
class WebhookSource:
    """How one ticketing system signs and shapes its webhooks."""

    name: str
    signature_header: str
    timestamp_header: str
    sign: Callable[[str, str, bytes], str]
    parse: Callable[[bytes], Delivery]

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
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(f"body is not valid JSON: {exc}") from None


def _field_error(exc: ValidationError) -> PayloadError:
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "body"
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
        requester=t.requester,
        customer_id=t.customer_id,
        queue=t.queue,
        tags=t.tags,
        url=t.url,
        created_at=t.created_at,
    )
    return Delivery(ticket, hook.event_id)


def parse_zendesk(body: bytes) -> Delivery:
    try:
        hook = ZendeskWebhook.model_validate(_load_json(body))
    except ValidationError as exc:
        raise _field_error(exc) from None
    t = hook.ticket
    ticket = _ticket(
        "zendesk",
        id=t.id,
        subject=t.subject,
        body=t.description,
        requester={"email": t.requester.email, "name": t.requester.name},
        customer_id=t.requester.external_id or None,
        tags=t.tags,
        url=t.url,
        created_at=t.created_at,
    )
    # A "ticket created" trigger fires once per ticket: a second delivery for the same id is a retry.
    return Delivery(ticket, f"ticket.created:{t.id}")


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
