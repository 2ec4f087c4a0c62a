"""Property-based: whatever arrives on the webhook and Slack routes, the services answer below 500, a
refusal is a 4xx that changes nothing (a refused webhook writes its one audit entry, in a chain of its
own), and nothing forged is ever accepted. Generated requests run through IntakeService and
SlackEndpoint on the in-memory fakes; some are signed correctly, so the parsers are reached."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support_agent import boundary
from support_agent.agent.offline import OfflineProvider
from support_agent.intake.service import IntakeService
from support_agent.models import NotifyMessage
from support_agent.rules.audit import verify
from support_agent.rules.policy import load_policy
from support_agent_local import slack_requests
from support_agent_local.events import webhook_headers
from support_agent_local.memory import (
    MemoryAuditLog,
    MemoryDailyBudget,
    MemoryQueue,
    MemorySessionStore,
    MemoryWorld,
)

from tests.helpers import ROOT
from tests.strategies import bad_timestamp, slack_requests_, webhook_requests

POLICY = load_policy(ROOT / "policies" / "acme-support.yaml")
SECRETS = {"generic": "generic-secret-value", "zendesk": "zendesk-secret-value"}
SLACK_SECRET = "slack-signing-secret-value"
REFUND = "We had a 3-day outage in March and the service was down. I want a refund of the $199 March invoice."
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Secrets:
    def get_json(self, name: str) -> dict[str, str]:
        return dict(SECRETS)


def intake() -> IntakeService:
    sessions = MemorySessionStore()
    audit = MemoryAuditLog(sessions=sessions)
    return IntakeService(
        policy=POLICY,
        sessions=sessions,
        budget=MemoryDailyBudget(sessions, audit),
        audit=audit,
        queue=MemoryQueue(),
        secrets=Secrets(),
        webhook_secret_name="webhooks",
    )


def leaks(answer_body: object) -> bool:
    text = json.dumps(answer_body)
    return any(secret in text for secret in [*SECRETS.values(), SLACK_SECRET])


@FAST
@given(webhook_requests(SECRETS))
def test_webhook_route_refuses_with_4xx_and_writes_only_its_audit_entry(request):
    service = intake()
    raw, is_base64 = request.raw()
    result = service.receive_encoded(request.source, request.headers, raw, is_base64, "req-1")
    assert result.status < 500, result.body
    assert not leaks(result.body)
    if result.status >= 400:
        assert result.body["error"]
        assert service.sessions.items == {}
        assert service.queue.sent == []
        assert service.budget.days == {}
        [(chain_id, entries)] = service.audit.chains.items()
        assert chain_id.startswith("intake-rejection-")
        assert [(e.seq, e.action, e.decision, e.outcome) for e in entries] == [
            (1, "webhook:receive", "rejected", str(result.status))
        ]
        assert entries[0].details["request_id"] == "req-1"
    else:
        assert not request.forged, "a forged webhook was accepted"
        assert result.status in (200, 202)


@FAST
@given(webhook_requests(SECRETS))
def test_a_forged_webhook_is_401_before_its_body_is_looked_at(request):
    """Unless the route, the size or the transport refuses it first: 404, 413, then 400 for a body marked
    base64 that is not."""
    if request.signing == "signed":
        return
    raw, is_base64 = request.raw()
    status = intake().receive_encoded(request.source, request.headers, raw, is_base64).status
    if request.source not in SECRETS:
        assert status == 404
    elif len(request.body) > boundary.WEBHOOK_MAX_BYTES:
        assert status == 413
    elif request.transport == "bad-base64":
        assert status == 400
    else:
        assert status == 401


def pending() -> MemoryWorld:
    """A world with one pending refund approval, its Slack message posted."""
    world = MemoryWorld(POLICY, signing_secret=SLACK_SECRET)
    sid = world.ticket(REFUND, subject="Refund for March", customer_id="cus_jane")
    world.runner(OfflineProvider()).start(sid)
    approval_id = world.sessions.get(sid).approval_id
    world.notifier().handle(
        NotifyMessage(type="request", session_id=sid, approval_id=approval_id, task_token="tok-1")
    )
    world.approval_id = approval_id  # type: ignore[attr-defined]
    return world


@pytest.fixture(scope="module")
def world() -> MemoryWorld:
    """Shared by the examples of a test (which may decide its approval)."""
    return pending()


def snapshot(world: MemoryWorld) -> tuple:
    return (
        {k: v.model_dump_json() for k, v in world.approvals.items.items()},
        {k: v.model_dump_json() for k, v in world.sessions.items.items()},
        sum(len(c) for c in world.audit.chains.values()),
        dict(world.workflow.answers),
        len(world.agent_queue.sent),
        len(world.notify_queue.sent),
        len(world.slack.calls),
    )


@FAST
@given(data=st.data())
def test_slack_route_refuses_with_4xx_and_changes_nothing(world, data):
    request = data.draw(slack_requests_(SLACK_SECRET, [world.approval_id]))
    before = snapshot(world)
    raw, is_base64 = request.raw()
    answer = world.endpoint().handle_encoded(request.headers, raw, is_base64)
    assert answer.status < 500, answer.body
    assert not leaks(answer.body)
    if answer.status >= 400:
        assert answer.body["error"]
        assert snapshot(world) == before
    else:
        assert not request.forged, "a forged Slack request was accepted"
    timestamp = request.headers.get("x-slack-request-timestamp")
    if timestamp is None or bad_timestamp(timestamp):
        # Checked before anything else: whatever the body, its size or its encoding.
        assert answer.status == 401
        assert "X-Slack-Request-Timestamp" in answer.body["error"]


@FAST
@given(
    st.sampled_from(["²", "١٢٣", "１２３", "12.5", "-1", "1e9", " 1", "", "9" * 40, "abc"]),
    st.sampled_from(["text", "base64", "bad-base64"]),
)
def test_a_slack_timestamp_that_is_not_an_integer_is_401_first(timestamp, transport):
    world = MemoryWorld(POLICY, signing_secret=SLACK_SECRET)
    body = b"\xff" * (boundary.SLACK_MAX_BYTES + 1)
    raw = body.decode("latin-1") if transport == "text" else "!!!" if transport == "bad-base64" else ""
    headers = {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": "v0=00"}
    answer = world.endpoint().handle_encoded(headers, raw, transport != "text")
    assert answer.status == 401
    assert "X-Slack-Request-Timestamp" in answer.body["error"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"actions": "approve"}, "payload.actions"),
        ({"user": "U0APPROVER1"}, "payload.user"),
        ({"trigger_id": None}, "payload.trigger_id"),
        ({"actions": []}, "payload.actions"),
        ({"actions": [{"value": "apr_x"}]}, "payload.actions.0.action_id"),
        ({"actions": [{"action_id": "approve", "value": "a" * 300}]}, "payload.actions.0.value"),
    ],
)
def test_signed_block_actions_of_the_wrong_shape_are_400_naming_the_field(world, payload, field):
    click = slack_requests.block_action(world.approval_id, "approve") | payload
    if payload.get("trigger_id", "") is None:
        del click["trigger_id"]
    before = snapshot(world)
    body = slack_requests.form_body(click)
    answer = world.endpoint().handle(slack_requests.sign_headers(SLACK_SECRET, body), body)
    assert answer.status == 400
    assert answer.body["error"].startswith(field)
    assert snapshot(world) == before


@pytest.mark.parametrize(
    "state",
    [
        {"values": []},
        {"values": {"reason": "text"}},
        {"values": {"reason": {"value": "not an object"}}},
        {"values": {"reason": {"value": {"value": 42}}}},
        "state",
    ],
)
def test_signed_view_submissions_of_the_wrong_shape_are_400(world, state):
    submission = slack_requests.view_submission(world.approval_id, "deny", "No")
    submission["view"]["state"] = state
    before = snapshot(world)
    body = slack_requests.form_body(submission)
    answer = world.endpoint().handle(slack_requests.sign_headers(SLACK_SECRET, body), body)
    assert answer.status == 400
    assert answer.body["error"].startswith("payload.view.state")
    assert snapshot(world) == before


def test_an_empty_input_block_reads_as_empty_text():
    world = pending()
    submission = slack_requests.view_submission(world.approval_id, "deny", "")
    submission["view"]["state"] = {"values": {"reason": {}}}
    body = slack_requests.form_body(submission)
    answer = world.endpoint().handle(slack_requests.sign_headers(SLACK_SECRET, body), body)
    assert answer.status == 200
    assert answer.body == {"response_action": "errors", "errors": {"reason": "Give a reason."}}


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"payload=" + b"%5B" * 5000 + b"%5D" * 5000, 400, "nests deeper than 32 levels"),
        (b'payload={"type": "block_actions", "user": {"id": "\\ud800"}}', 400, "lone surrogate"),
        (b"\xff\xfe payload", 400, "not valid UTF-8"),
        (b"payload=" + b"x" * boundary.SLACK_MAX_BYTES, 413, "64 KiB"),
        (b"nothing=here", 400, "`payload` field"),
        (b"payload=%7B%22type%22%3A%22view_closed%22%7D", 200, None),
    ],
)
def test_signed_bodies_that_are_not_payloads(world, body, status, reason):
    before = snapshot(world)
    answer = world.endpoint().handle(slack_requests.sign_headers(SLACK_SECRET, body), body)
    assert answer.status == status
    if reason:
        assert reason in answer.body["error"]
    assert snapshot(world) == before


@pytest.mark.parametrize(
    ("timestamp", "reason"),
    [
        ("²", "not a Unix time"),
        ("١٧٠٠٠٠٠٠٠٠", "not a Unix time"),
        ("0001-01-01", "not a Unix time"),
        ("9" * 600, "not a Unix time"),
        ("9" * 40, "not a Unix time"),
        ("9" * 12, "outside the 5-minute window"),
        ("9999-12-31T23:59:59", "outside the 5-minute window"),
    ],
)
def test_webhook_timestamps_are_ascii_digits_or_iso_dates(timestamp, reason):
    body = b"{}"
    headers = webhook_headers("generic", SECRETS["generic"], body) | {"x-signature-timestamp": timestamp}
    result = intake().receive("generic", headers, body)
    assert result.status == 401
    assert reason in result.body["error"]


def test_signed_webhooks_that_are_not_json_objects_are_400_naming_the_problem():
    cases = {
        b"[" * 3000 + b"]" * 3000: "nests deeper than 32 levels",
        b'{"event_id": ' + b"7" * 5000 + b"}": "number too large",
        b'{"event_id": "\\ud800"}': "lone surrogate",
        b"\xc3\x28": "not valid UTF-8",
    }
    for body, reason in cases.items():
        headers = webhook_headers("generic", SECRETS["generic"], body)
        result = intake().receive("generic", headers, body)
        assert (result.status, reason in result.body["error"]) == (400, True), result.body


def test_oversized_webhooks_are_413_before_the_signature_is_checked():
    body = b"x" * (boundary.WEBHOOK_MAX_BYTES + 1)
    service = intake()
    result = service.receive_encoded("generic", {}, body.decode(), False)
    assert result.status == 413 and "256 KiB" in result.body["error"]
    assert service.receive("generic", {}, body).status == 413


def test_refusal_entries_each_start_a_chain_of_their_own():
    service = intake()
    for _ in range(20):
        assert service.receive("generic", {}, b"{}", f"req-{time.time_ns()}").status == 401
    assert len(service.audit.chains) == 20
    assert all(len(entries) == 1 for entries in service.audit.chains.values())
    assert verify(service.audit).ok
