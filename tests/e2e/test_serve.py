"""`support-agent serve` answers a signed webhook over a real socket, and the ticket gets answered."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from support_agent_local.emulator import LOCAL_SECRETS
from support_agent_local.events import webhook_headers

ROOT = Path(__file__).resolve().parents[2]


def test_serve_answers_signed_webhook_and_ticket_is_answered():
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "support_agent_local.cli", "serve", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
            url = found.group(1) if found else None
        assert url, "serve did not start"
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
        state = None
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"{url}/sessions/{session_id}", timeout=10) as response:
                session = json.loads(response.read())
            state = session["state"]
            if state == "responded":
                break
            time.sleep(0.2)
        assert state == "responded"
        assert "ORD-5001" in session["replies"][0]
        bad = urllib.request.Request(
            f"{url}/webhooks/generic", data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(bad, timeout=10)
        assert refused.value.code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "intake: POST /webhooks/generic → 202" in out and "stopping" in out
