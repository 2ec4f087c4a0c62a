"""`support-agent serve` answers a signed webhook over a real socket, and the ticket gets answered."""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request

import pytest
from support_agent_local.emulator import LOCAL_SECRETS
from support_agent_local.events import webhook_headers

from tests.helpers import serving


def test_serve_answers_signed_webhook_and_ticket_is_answered():
    with serving() as url:
        body = json.dumps(
            {
                "event_id": "curl-1",
                "ticket": {
                    "id": "C-1",
                    "subject": "Order?",
                    "body": "Where is my order ORD-5001?",
                    "requester": {"email": "jane.smith@example.com"},
                    "customer_id": "cus_jane",
                },
            }
        ).encode()
        headers = {
            "Content-Type": "application/json",
            **webhook_headers("generic", LOCAL_SECRETS["WebhookSecretName"]["generic"], body),
        }
        request = urllib.request.Request(f"{url}/webhooks/generic", data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 202
            session_id = json.loads(response.read())["session_id"]
        deadline = time.monotonic() + 60
        session: dict = {}
        while time.monotonic() < deadline and session.get("state") != "responded":
            time.sleep(0.2)
            with urllib.request.urlopen(f"{url}/sessions/{session_id}", timeout=10) as response:
                session = json.loads(response.read())
        assert session["state"] == "responded"
        assert "ORD-5001" in session["replies"][0]
        bad = urllib.request.Request(
            f"{url}/webhooks/generic", data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(bad, timeout=10)
        assert refused.value.code == 401
    assert serving.last_returncode == 0
    assert "intake: POST /webhooks/generic → 202" in serving.last_output and "stopping" in serving.last_output


def _started_deaf() -> None:
    # As under some supervisors and test runners: Ctrl-C ignored and blocked when the process starts.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


def test_serve_stops_on_ctrl_c_even_when_started_with_it_ignored_and_blocked():
    with serving(_started_deaf) as url, pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{url}/sessions/none", timeout=10)
    assert missing.value.code == 404
    assert serving.last_returncode == 0 and "stopping" in serving.last_output
