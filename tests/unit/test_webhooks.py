from __future__ import annotations

import json
import time

import pytest
from support_agent.intake.signatures import SignatureError, sign_zendesk
from support_agent.intake.webhooks import SOURCES, PayloadError, parse_generic, parse_zendesk

SECRET = "test-secret"


def generic_body(**ticket):
    base = {"id": "T-1", "subject": "Hi", "body": "Help me", "requester": {"email": "a@example.com"}}
    return json.dumps({"event_id": "evt_1", "ticket": {**base, **ticket}}).encode()


def headers(source, body, ts=None):
    hook = SOURCES[source]
    stamp = (
        str(int(ts or time.time()))
        if source == "generic"
        else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts or time.time()))
    )
    return {hook.signature_header: hook.sign(SECRET, stamp, body), hook.timestamp_header: stamp}


@pytest.mark.parametrize("source", ["generic", "zendesk"])
def test_valid_signature_passes_and_only_that_secret_signs_it(source):
    body = generic_body()
    signed = headers(source, body)
    SOURCES[source].verify(signed, body, SECRET, time.time(), 300)  # raises SignatureError on failure
    with pytest.raises(SignatureError, match="does not match"):
        SOURCES[source].verify(signed, body, "another-secret", time.time(), 300)


@pytest.mark.parametrize("source", ["generic", "zendesk"])
def test_tampered_body_fails(source):
    body = generic_body()
    with pytest.raises(SignatureError, match="does not match"):
        SOURCES[source].verify(
            headers(source, body), body.replace(b"Help", b"Pay "), SECRET, time.time(), 300
        )


@pytest.mark.parametrize("source", ["generic", "zendesk"])
def test_stale_and_future_timestamps_fail(source):
    body = generic_body()
    for skew in (-301, 301):
        with pytest.raises(SignatureError, match="5-minute window"):
            SOURCES[source].verify(headers(source, body, time.time() + skew), body, SECRET, time.time(), 300)


def test_missing_headers_and_wrong_secret():
    body = generic_body()
    with pytest.raises(SignatureError, match="missing X-Signature"):
        SOURCES["generic"].verify({}, body, SECRET, time.time(), 300)
    with pytest.raises(SignatureError, match="does not match"):
        SOURCES["generic"].verify(headers("generic", body), body, "other-secret", time.time(), 300)


def test_zendesk_signature_matches_documented_formula():
    # base64(HMACSHA256(TIMESTAMP + BODY)), computed independently.
    import base64
    import hashlib
    import hmac

    expected = base64.b64encode(hmac.new(b"k", b"2026-01-01T00:00:00Z{}", hashlib.sha256).digest()).decode()
    assert sign_zendesk("k", "2026-01-01T00:00:00Z", b"{}") == expected


def test_generic_payload_becomes_ticket():
    delivery = parse_generic(generic_body(customer_id="cus_1", tags=["x"]))
    assert delivery.event_id == "evt_1"
    assert delivery.ticket.source == "generic"
    assert delivery.ticket.customer_id == "cus_1"
    assert delivery.ticket.requester.email == "a@example.com"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"not json", "not valid JSON"),
        (json.dumps({"ticket": {}}).encode(), "event_id"),
        (generic_body(requester={"name": "x"}), "ticket.requester.email"),
        (generic_body(requester={"email": "not-an-email"}), "ticket.requester.email"),
        (generic_body(id="bad id with spaces"), "ticket.id"),
        (generic_body(body=""), "ticket.body"),
        (generic_body(unexpected=True), "ticket.unexpected"),
    ],
)
def test_bad_generic_payload_names_field(body, fragment):
    with pytest.raises(PayloadError, match=fragment.replace(".", r"\.")):
        parse_generic(body)


def test_zendesk_trigger_payload():
    body = json.dumps(
        {
            "ticket": {
                "id": 4829,
                "subject": "Refund",
                "description": "Please refund",
                "requester": {"email": "j@example.com", "name": "J", "external_id": "cus_j"},
                "tags": "billing refund",
                "custom_field": "ignored",
            }
        }
    ).encode()
    delivery = parse_zendesk(body)
    assert delivery.ticket.id == "4829"
    assert delivery.ticket.tags == ["billing", "refund"]
    assert delivery.ticket.customer_id == "cus_j"
    assert delivery.event_id == "ticket.created:4829"
