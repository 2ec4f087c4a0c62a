"""Signed Slack interactive requests, as Slack sends them (form body with a JSON `payload`)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlencode

# The Slack user who decides in the demo and tests (not one of the sample customers).
CONSOLE_APPROVER = "dana.lead"


def block_action(
    approval_id: str, action: str, user: str = "U0APPROVER1", username: str = CONSOLE_APPROVER
) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "user": {"id": user, "username": username},
        "trigger_id": "1337.42.trigger",
        "channel": {"id": "C0ESCALATE"},
        "container": {"type": "message", "channel_id": "C0ESCALATE"},
        "actions": [{"action_id": action, "block_id": "decision", "value": approval_id, "type": "button"}],
    }


def view_submission(approval_id: str, action: str, value: str, user: str = "U0APPROVER1") -> dict[str, Any]:
    callback, block = {
        "partial": ("partial_modal", "amount"),
        "deny": ("deny_modal", "reason"),
        "reply_manually": ("reply_modal", "reply"),
    }[action]
    return {
        "type": "view_submission",
        "user": {"id": user, "username": CONSOLE_APPROVER},
        "view": {
            "callback_id": callback,
            "private_metadata": approval_id,
            "state": {"values": {block: {"value": {"type": "plain_text_input", "value": value}}}},
        },
    }


def sign_headers(signing_secret: str, body: str | bytes, timestamp: float | None = None) -> dict[str, str]:
    """X-Slack-Request-Timestamp and X-Slack-Signature (v0 HMAC-SHA256 over `v0:ts:body`).

    Text is signed with slack_sdk (an implementation independent of the endpoint's); bytes, which need
    not be UTF-8, with the same scheme by hand.
    """
    ts = str(int(time.time() if timestamp is None else timestamp))
    if isinstance(body, bytes):
        digest = hmac.new(signing_secret.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256)
        return {"x-slack-request-timestamp": ts, "x-slack-signature": f"v0={digest.hexdigest()}"}
    from slack_sdk.signature import SignatureVerifier

    signature = SignatureVerifier(signing_secret).generate_signature(timestamp=ts, body=body) or ""
    return {"x-slack-request-timestamp": ts, "x-slack-signature": signature}


def form_body(payload: dict[str, Any]) -> str:
    """The form-encoded body Slack posts: `payload=<JSON>`."""
    return urlencode({"payload": json.dumps(payload)})


def signed_event(
    payload: dict[str, Any], signing_secret: str, timestamp: float | None = None
) -> dict[str, Any]:
    """An API Gateway HTTP API v2 event for POST /slack/interactions, signed like Slack does."""
    body = form_body(payload)
    headers = {
        "content-type": "application/x-www-form-urlencoded",
        **sign_headers(signing_secret, body, timestamp),
    }
    return api_event("/slack/interactions", body, headers)


def api_event(path: str, body: str, headers: dict[str, str], route: str | None = None) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event."""
    return {
        "version": "2.0",
        "routeKey": route or f"POST {path}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": "localhost",
            "domainPrefix": "local",
            "http": {
                "method": "POST",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "local",
            },
            "requestId": f"local-{time.time_ns()}",
            "routeKey": route or f"POST {path}",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
            "timeEpoch": int(time.time() * 1000),
        },
        "body": body,
        "isBase64Encoded": False,
    }
