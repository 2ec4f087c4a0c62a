"""Property-based, through the real Lambda handlers on the embedded stack (moto, from template.yaml) and
over HTTP through `support-agent serve`: generated requests to both routes are answered below 500, and a
refusal changes nothing: every AWS write a handler makes is recorded (a botocore hook, `AwsWrites`), and a
refusal makes none (no session, budget slot, approval decision, queue message) but, for a webhook, its own
audit entry; nor does it call Slack. The last test reconciles the recorded entries with the audit table."""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support_agent.rules.audit import verify
from support_agent_local import events, serve
from support_agent_local.emulator import LOCAL_SECRETS, EmbeddedAws
from support_agent_local.functions import invoke
from support_agent_local.fuzzing import REFUSAL_ENTRY, REJECTIONS, AwsWrites, refusal_writes

from tests.strategies import Req, slack_requests_, webhook_requests

WEBHOOK_SECRETS = LOCAL_SECRETS["WebhookSecretName"]
SLACK_SECRET = LOCAL_SECRETS["SlackSecretName"]["signing_secret"]
ON_STACK = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def fuzz_stack() -> Iterator[EmbeddedAws]:
    """One stack for every example, with a refund waiting for approval (so signed clicks can decide), and
    every AWS write the handlers make recorded (`AwsWrites`)."""
    with EmbeddedAws(parameters={"LogLevel": "ERROR"}) as stack:
        with contextlib.redirect_stdout(io.StringIO()):
            events.invoke_sample(stack, "agent_step_start_refund.json")
        items = boto3.client("dynamodb").scan(TableName=stack.ref("SessionsTable"))["Items"]
        stack.approval_ids = [  # type: ignore[attr-defined]
            i["pk"]["S"].split("#", 1)[1] for i in items if i["pk"]["S"].startswith("APPROVAL#")
        ]
        assert stack.approval_ids  # type: ignore[attr-defined]
        stack.writes = AwsWrites(stack.ref("AuditTable")).start()  # type: ignore[attr-defined]
        stack.tally = Counter()  # type: ignore[attr-defined]
        try:
            yield stack
        finally:
            stack.writes.stop()  # type: ignore[attr-defined]


def answer(
    stack: EmbeddedAws, route: str, status: int, writes: list[str], slack_calls: int, forged: bool
) -> None:
    """The properties every answer has; counts what the last test reconciles with the table."""
    assert status < 500
    assert refusal_writes(route, status, writes, slack_calls) == []
    if status < 300:
        assert not forged, "a forged request was accepted"
    if status == 202:
        assert writes, "an accepted webhook writes: the hook must be recording"
    stack.tally[REFUSAL_ENTRY] += writes.count(REFUSAL_ENTRY)  # type: ignore[attr-defined]
    stack.tally[f"{route} {status // 100}xx"] += 1  # type: ignore[attr-defined]


def through_handler(stack: EmbeddedAws, request: Req) -> None:
    logical_id, function = (
        ("IntakeFunction", "intake")
        if request.route == "webhook"
        else (
            "SlackInteractionFunction",
            "slack_interaction",
        )
    )
    slack_before = len(stack.slack.calls) if stack.slack else 0
    with (
        stack.environment_of(logical_id),
        stack.writes.recording() as writes,  # type: ignore[attr-defined]
        contextlib.redirect_stdout(io.StringIO()),
    ):
        status = invoke(function, request.event())["statusCode"]
    slack_calls = (len(stack.slack.calls) if stack.slack else 0) - slack_before
    answer(stack, request.route, status, writes, slack_calls, request.forged)


@ON_STACK
@given(webhook_requests(WEBHOOK_SECRETS))
def test_intake_handler_answers_generated_webhooks_below_500_and_refusals_change_nothing(fuzz_stack, request):
    through_handler(fuzz_stack, request)


@ON_STACK
@given(data=st.data())
def test_slack_handler_answers_generated_requests_below_500_and_refusals_change_nothing(fuzz_stack, data):
    through_handler(fuzz_stack, data.draw(slack_requests_(SLACK_SECRET, fuzz_stack.approval_ids)))


def test_the_trail_holds_the_refusal_entries_recorded_each_in_a_chain_of_its_own(fuzz_stack):
    """From the table: as many refusal entries as the hook saw written, each the whole of its own chain,
    and every chain verifies."""
    tally = fuzz_stack.tally
    if not tally:
        pytest.skip("reconciles what the generated requests above wrote")
    assert tally["webhook 4xx"] and tally["webhook 2xx"] and tally["slack 4xx"] and tally["slack 2xx"], tally
    entries = list(fuzz_stack.audit().all_entries())
    refusals = [e for e in entries if e.session_id.startswith(REJECTIONS)]
    assert len(refusals) == tally[REFUSAL_ENTRY]
    assert all(e.seq == 1 for e in refusals)
    assert len({e.session_id for e in refusals}) == len(refusals)
    assert verify(fuzz_stack.audit()).ok


# --- over HTTP through serve ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_api(fuzz_stack: EmbeddedAws) -> Iterator[tuple[serve.LocalApi, io.StringIO]]:
    """serve's HTTP server on 127.0.0.1 (its pollers are not started, so nothing moves between requests)."""
    log = io.StringIO()
    api = serve.LocalApi(fuzz_stack, "127.0.0.1", 0, out=log)
    thread = threading.Thread(target=api.server.serve_forever, daemon=True)
    thread.start()
    original = serve.invoke
    serve.invoke = fuzz_stack.writes.wrap(original)  # type: ignore[attr-defined]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield api, log
    finally:
        serve.invoke = original
        api.server.shutdown()
        api.server.server_close()


def send(
    api: serve.LocalApi, method: str, path: str, body: bytes = b"", headers: dict[str, Any] | None = None
):
    host, port = api.server.server_address[:2]
    conn = http.client.HTTPConnection(str(host), int(port), timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.getheader("content-type"), response.read()
    finally:
        conn.close()


@settings(ON_STACK, max_examples=40)
@given(data=st.data())
def test_serve_answers_every_generated_request_and_never_drops_the_connection(fuzz_stack, local_api, data):
    api, _log = local_api
    request = data.draw(
        webhook_requests(WEBHOOK_SECRETS) | slack_requests_(SLACK_SECRET, fuzz_stack.approval_ids)
    )
    headers = {
        k: v.replace("\r", " ").replace("\n", " ").encode("utf-8", "surrogatepass")
        for k, v in request.headers.items()
    }
    path = (
        f"/webhooks/{quote(request.source, safe='')}" if request.route == "webhook" else "/slack/interactions"
    )
    fuzz_stack.writes.last = []
    slack_before = len(fuzz_stack.slack.calls)
    status, content_type, _ = send(api, "POST", path, request.body, headers)
    assert content_type == "application/json"
    slack_calls = len(fuzz_stack.slack.calls) - slack_before
    answer(fuzz_stack, request.route, status, fuzz_stack.writes.last, slack_calls, request.forged)


def test_serve_passes_binary_bodies_base64_encoded_as_api_gateway_does(fuzz_stack, local_api):
    api, log = local_api
    body = b"\xff\xfe not UTF-8 \x80"
    headers = events.webhook_headers("generic", WEBHOOK_SECRETS["generic"], body)
    status, _, answer = send(api, "POST", "/webhooks/generic", body, headers)
    # Signed, so it reached the parser: the bytes arrived intact (base64), and are refused as not UTF-8.
    assert (status, b"not valid UTF-8" in answer) == (400, True)
    assert serve.gateway_body(body, "application/json") == (base64.b64encode(body).decode(), True)
    assert serve.gateway_body(b'{"a": 1}', "application/json") == ('{"a": 1}', False)
    assert serve.gateway_body(b"payload=x", "application/x-www-form-urlencoded") == ("payload=x", False)
    assert serve.gateway_body(b"abc", "application/octet-stream") == ("YWJj", True)


def test_serve_answers_500_json_when_a_handler_raises_and_logs_the_traceback(local_api, monkeypatch):
    api, log = local_api

    def broken(name: str, event: dict[str, Any]) -> Any:
        raise RuntimeError("the handler fell over")

    monkeypatch.setattr(serve, "invoke", broken)
    status, content_type, answer = send(api, "POST", "/webhooks/generic", b"{}")
    assert (status, content_type) == (500, "application/json")
    assert b"RuntimeError" in answer and b"fell over" not in answer  # the message stays in the log
    assert "the handler fell over" in log.getvalue() and "Traceback" in log.getvalue()


def test_serve_bounds_bodies_and_routes_every_method(local_api):
    api, _log = local_api
    host, port = api.server.server_address[:2]
    conn = http.client.HTTPConnection(str(host), int(port), timeout=30)
    conn.putrequest("POST", "/webhooks/generic")
    conn.putheader("Content-Length", str(serve.MAX_BODY_BYTES + 1))
    conn.endheaders()  # the body is never sent: the answer comes from the header alone
    response = conn.getresponse()
    assert response.status == 413 and b"1024 KiB" in response.read()
    conn.close()
    assert send(api, "PUT", "/webhooks/generic", b"{}")[0] == 404
    assert send(api, "BREW", "/coffee")[0] == 404
    assert send(api, "POST", "/webhooks/generic", b"{}", {"Content-Length": "ten"})[0] == 400
