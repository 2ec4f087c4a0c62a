"""Zendesk intake payloads: event subscriptions and trigger bodies, as plain data."""

from __future__ import annotations

import json

import pytest
from support_agent.intake.zendesk_events import (
    MODEL_TEXT_LIMIT,
    EventPayloadError,
    IgnoredEvent,
    ZendeskTicketEvent,
    parse_zendesk_payload,
    shorten_for_model,
)


def event(**detail: object) -> bytes:
    return json.dumps(
        {
            "type": "zen:event-type:ticket.created",
            "account_id": 88888888,
            "id": "01HNXXXXCTEXAMPLE",
            "time": "2026-11-28T10:00:00Z",
            "zendesk_event_version": "2022-11-06",
            "subject": "zen:ticket:35436",
            "detail": {
                "id": "35436",
                "subject": "Where is my order?",
                "description": "ORD-5001 has not arrived.",
                "requester_id": "20978392",
                "submitter_id": "20978392",
                "status": "NEW",
                "tags": ["vip"],
                "via": {"channel": "web"},
                "created_at": "2026-11-28T10:00:00Z",
                "updated_at": "2026-11-28T10:00:00Z",
                **detail,
            },
            "event": {"meta": {"sequence": {"id": "abc", "position": 1}}},
        }
    ).encode()


def trigger(**requester: object) -> bytes:
    return json.dumps(
        {
            "ticket": {
                "id": "4829",
                "subject": "Refund",
                "description": "Please refund my last invoice.",
                "url": "acme.zendesk.com/agent/tickets/4829",
                "tags": "vip billing",
                "created_at": "November 28, 2026 10:00",
                "requester": {"email": "", "name": "Jane", "external_id": "", "id": "377001", **requester},
            }
        }
    ).encode()


def parsed(body: bytes) -> ZendeskTicketEvent:
    found = parse_zendesk_payload(body)
    assert isinstance(found, ZendeskTicketEvent)
    return found


def test_event_subscription_ticket_created():
    e = parsed(event())
    assert (e.ticket_id, e.subject, e.description) == (
        "35436",
        "Where is my order?",
        "ORD-5001 has not arrived.",
    )
    assert (e.requester_id, e.requester_email, e.requester_name) == ("20978392", None, None)
    assert e.needs_requester_lookup and e.lookup_email is None
    assert e.tags == ["vip"] and e.channel == "web" and e.source == "event"
    assert e.event_id == "ticket.created:35436" and e.zendesk_event_id == "01HNXXXXCTEXAMPLE"


def test_other_event_types_are_ignored():
    body = json.loads(event())
    body["type"] = "zen:event-type:ticket.comment_added"
    found = parse_zendesk_payload(json.dumps(body).encode())
    assert isinstance(found, IgnoredEvent)
    assert found.event_type == "zen:event-type:ticket.comment_added"


def test_a_trigger_requester_without_email_is_identified_by_id():
    e = parsed(trigger())
    assert (e.requester_email, e.requester_id, e.requester_name) == (None, "377001", "Jane")
    assert e.needs_requester_lookup and e.customer_id is None
    assert e.tags == ["vip", "billing"] and e.event_id == "ticket.created:4829"


def test_an_external_id_with_an_at_sign_is_kept_and_used_for_lookup_not_as_customer_id():
    e = parsed(trigger(external_id="Jane.Smith@Example.com"))
    assert e.requester_external_id == "Jane.Smith@Example.com"
    assert e.customer_id is None
    assert e.lookup_email == "jane.smith@example.com"


def test_a_plain_external_id_is_the_customer_id_and_the_email_wins_for_lookup():
    e = parsed(trigger(external_id="cus_jane", email="Jane.Smith@example.com"))
    assert e.customer_id == "cus_jane"
    assert e.requester_email == e.lookup_email == "jane.smith@example.com"
    assert not e.needs_requester_lookup


@pytest.mark.parametrize("build", [lambda d: event(description=d), lambda d: trigger_with(d)])
def test_a_long_description_is_kept_and_shortened_only_for_the_model(build):
    long = "start " + "x" * 50_000 + " end"
    e = parsed(build(long))
    assert e.description == long
    shown = e.model_description()
    assert len(shown) <= MODEL_TEXT_LIMIT
    assert shown.startswith("start ") and shown.endswith(" end") and "characters left out" in shown


def trigger_with(description: str) -> bytes:
    body = json.loads(trigger(email="jane@example.com"))
    body["ticket"]["description"] = description
    return json.dumps(body).encode()


def test_shorten_leaves_short_text_alone():
    assert shorten_for_model("hello") == "hello"
    assert len(shorten_for_model("y" * 30_000, 1000)) <= 1000


def test_our_tags_mark_a_ticket_we_handled():
    assert parsed(event(tags=["ai_answered"])).handled_by_us
    assert not parsed(event()).handled_by_us


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not json", "body is not valid JSON"),
        (b"[1]", "body: expected a JSON object"),
        (event(id="abc"), "detail.id: expected a Zendesk id"),
        (event(id=""), "detail.id: field required"),
        (event(requester_id="x1"), "detail.requester_id"),
        (event(tags=[1]), "detail.tags"),
        (trigger(email="not-an-email"), "ticket.requester.email: not an e-mail address"),
        (trigger(id="", external_id=""), "ticket.requester: needs an email"),
        (json.dumps({"ticket": {"id": "1", "subject": "x"}}).encode(), "ticket.description: field required"),
        (json.dumps({"nothing": 1}).encode(), "ticket: field required"),
    ],
)
def test_malformed_payloads_name_the_field(body, field):
    with pytest.raises(EventPayloadError, match=field.replace(".", r"\.")):
        parse_zendesk_payload(body)
