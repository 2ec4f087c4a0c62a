"""Zendesk intake payloads as plain data: event-subscription webhooks and trigger bodies.

Two shapes reach the Zendesk webhook:

* an event subscription (Admin Center → Webhooks → subscribe to `zen:event-type:ticket.created`):
  `{"type": "zen:event-type:ticket.created", "id": <event id>, "account_id", "time", "subject":
  "zen:ticket:<id>", "detail": {"id", "subject", "description", "requester_id", "submitter_id", "tags",
  "status", "via": {"channel"}, "created_at", ...}, "event": {...}}`. Ids are strings; there is no e-mail
  or name of the requester, only `requester_id`;
* a trigger's JSON body (the one in the README), rendered from placeholders: every value is a string,
  `tags` is space-separated, and a requester without e-mail (messaging, phone, social) renders `""`;
  `requester.id` identifies them, and `external_id` is whatever the company put there (often an e-mail).

Both become a `ZendeskTicketEvent`. The description is kept whole, however long: only what the model
sees is shortened (`text.shorten_for_model`). A requester without e-mail is kept by Zendesk user id: the
agent then finds no customer record, so no account tool can pass its identity check. Events other than ticket creation come back as `IgnoredEvent`, so that our own
updates (and people's replies) never start a session.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from support_agent import boundary
from support_agent.models import EMAIL_PATTERN
from support_agent.text import MODEL_TEXT_LIMIT, shorten_for_model

CREATED = "zen:event-type:ticket.created"
OUR_TAGS = frozenset({"ai_answered", "ai_escalated"})
_EMAIL = re.compile(EMAIL_PATTERN)
_SAFE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class EventPayloadError(ValueError):
    """The body is not a Zendesk payload we understand; the message names the field."""


@dataclass(frozen=True)
class ZendeskTicketEvent:
    """A new Zendesk ticket, as intake needs it."""

    event_id: str  # what makes a delivery a duplicate: "ticket.created:<ticket id>"
    ticket_id: str
    subject: str
    description: str  # whole, never truncated
    requester_id: str | None = None
    requester_email: str | None = None
    requester_name: str | None = None
    requester_external_id: str | None = None  # verbatim, may contain "@"
    tags: list[str] = field(default_factory=list)
    url: str | None = None
    created_at: str | None = None
    channel: str | None = None
    submitter_id: str | None = None
    zendesk_event_id: str | None = None  # the event subscription's own id (None for triggers)
    source: str = "trigger"  # "trigger" or "event"

    @property
    def customer_id(self) -> str | None:
        """The external id as our customer id, when it is one (no "@", no spaces)."""
        ext = self.requester_external_id
        return ext if ext and "@" not in ext and _SAFE_ID.match(ext) else None

    @property
    def lookup_email(self) -> str | None:
        """The e-mail to find the customer by: the requester's, else an e-mail-shaped external id."""
        if self.requester_email:
            return self.requester_email
        ext = self.requester_external_id
        return ext.lower() if ext and _EMAIL.match(ext) else None

    @property
    def needs_requester_lookup(self) -> bool:
        """True when intake must fetch the requester (GET /api/v2/users/{requester_id}) for an e-mail."""
        return self.requester_email is None and self.requester_id is not None

    @property
    def handled_by_us(self) -> bool:
        """True when the ticket already carries our answered/escalated tags (never start a session)."""
        return bool(OUR_TAGS & set(self.tags))

    def model_description(self, limit: int = MODEL_TEXT_LIMIT) -> str:
        return shorten_for_model(self.description, limit)


@dataclass(frozen=True)
class IgnoredEvent:
    """A well-formed payload that must not start a session (another event type)."""

    event_type: str
    zendesk_event_id: str | None
    reason: str


def _load(body: bytes) -> dict[str, Any]:
    try:  # UTF-8, nesting at most boundary.MAX_JSON_DEPTH, no lone surrogates, no 5,000-digit numbers
        data = boundary.load_json(boundary.utf8_text(body))
    except boundary.Refused as exc:
        raise EventPayloadError(exc.reason) from None
    except ValueError as exc:
        raise EventPayloadError(str(exc)) from None
    if not isinstance(data, dict):
        raise EventPayloadError("body: expected a JSON object")
    return data


def _text(value: Any, name: str, *, required: bool = False) -> str | None:
    """A rendered placeholder or API value as text; "" and null become None."""
    if value is None or value == "":
        if required:
            raise EventPayloadError(f"{name}: field required")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise EventPayloadError(f"{name}: expected a string")
    return str(value).strip() or None


def _numeric_id(value: Any, name: str, *, required: bool = False) -> str | None:
    text = _text(value, name, required=required)
    if text is None or text == "0":  # Zendesk renders "no such record" as 0 in events
        if required:
            raise EventPayloadError(f"{name}: field required")
        return None
    if not text.isdigit() or len(text) > 20:
        raise EventPayloadError(f"{name}: expected a Zendesk id (digits)")
    return text


def _tags(value: Any, name: str) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list) and all(isinstance(t, str) for t in value):
        return [t for t in value if t]
    raise EventPayloadError(f"{name}: expected a list of tags or a space-separated string")


def _email(value: Any, name: str) -> str | None:
    text = _text(value, name)
    if text is None:
        return None
    if len(text) > 254 or not _EMAIL.match(text):
        raise EventPayloadError(f"{name}: not an e-mail address")
    return text.lower()


def parse_event(data: dict[str, Any]) -> ZendeskTicketEvent | IgnoredEvent:
    """An event-subscription payload (`type: zen:event-type:...`)."""
    event_type = _text(data.get("type"), "type", required=True) or ""
    zid = _text(data.get("id"), "id")
    if event_type != CREATED:
        return IgnoredEvent(event_type, zid, "only ticket.created starts a session")
    detail = data.get("detail")
    if not isinstance(detail, dict):
        raise EventPayloadError("detail: field required")
    ticket_id = _numeric_id(detail.get("id"), "detail.id", required=True)
    assert ticket_id is not None
    via = detail.get("via")
    if not isinstance(via, dict):
        via = {}
    return ZendeskTicketEvent(
        event_id=f"ticket.created:{ticket_id}",
        ticket_id=ticket_id,
        subject=_text(detail.get("subject"), "detail.subject") or "",
        description=str(detail.get("description") or ""),
        requester_id=_numeric_id(detail.get("requester_id"), "detail.requester_id"),
        tags=_tags(detail.get("tags"), "detail.tags"),
        created_at=_text(detail.get("created_at"), "detail.created_at"),
        channel=_text(via.get("channel"), "detail.via.channel"),
        submitter_id=_numeric_id(detail.get("submitter_id"), "detail.submitter_id"),
        zendesk_event_id=zid,
        source="event",
    )


def parse_trigger(data: dict[str, Any]) -> ZendeskTicketEvent:
    """A trigger body: `{"ticket": {"id", "subject", "description", "requester": {...}, ...}}`."""
    ticket = data.get("ticket")
    if not isinstance(ticket, dict):
        raise EventPayloadError("ticket: field required")
    ticket_id = _numeric_id(ticket.get("id"), "ticket.id", required=True)
    assert ticket_id is not None
    requester = ticket.get("requester") or {}
    if not isinstance(requester, dict):
        raise EventPayloadError("ticket.requester: expected an object")
    description = ticket.get("description")
    if not isinstance(description, str) or not description.strip():
        raise EventPayloadError("ticket.description: field required")
    found = ZendeskTicketEvent(
        event_id=f"ticket.created:{ticket_id}",
        ticket_id=ticket_id,
        subject=_text(ticket.get("subject"), "ticket.subject") or "",
        description=description,
        requester_id=_numeric_id(requester.get("id"), "ticket.requester.id"),
        requester_email=_email(requester.get("email"), "ticket.requester.email"),
        requester_name=_text(requester.get("name"), "ticket.requester.name"),
        requester_external_id=_text(requester.get("external_id"), "ticket.requester.external_id"),
        tags=_tags(ticket.get("tags"), "ticket.tags"),
        url=_text(ticket.get("url"), "ticket.url"),
        created_at=_text(ticket.get("created_at"), "ticket.created_at"),
        channel=_text(ticket.get("via"), "ticket.via"),
    )
    if found.requester_email is None and found.requester_id is None and found.lookup_email is None:
        raise EventPayloadError("ticket.requester: needs an email, an id or an e-mail external_id")
    return found


def parse_zendesk_payload(body: bytes) -> ZendeskTicketEvent | IgnoredEvent:
    """Either shape, told apart by the event subscription's `type`."""
    data = _load(body)
    if "detail" in data or str(data.get("type", "")).startswith("zen:event-type:"):
        return parse_event(data)
    return parse_trigger(data)
