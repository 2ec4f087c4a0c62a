"""Hypothesis strategies for requests to the two HTTP routes: webhooks (generic, zendesk, unknown sources)
and Slack's interactive endpoint. Bodies are well-formed, mutated, arbitrary JSON, binary, deeply nested or
oversized; they are signed with the right secret (so the parsers behind the signature are reached),
unsigned, signed with another secret, stale, or carry a malformed timestamp or signature; they travel as
text, base64 or invalid base64."""

from __future__ import annotations

import base64
import copy
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from hypothesis import strategies as st
from support_agent import boundary
from support_agent.intake.webhooks import SOURCES
from support_agent_local import slack_requests
from support_agent_local.events import webhook_headers
from support_agent_local.fuzzing import BAD_TIMESTAMPS, zendesk_event_template

SIGNINGS = [
    "signed",
    "signed",
    "signed",
    "unsigned",
    "wrong-secret",
    "stale",
    "bad-timestamp",
    "bad-signature",
]


@dataclass
class Req:
    route: str  # "webhook" or "slack"
    source: str
    headers: dict[str, str]
    body: bytes
    signing: str
    transport: str  # "text", "base64", "bad-base64"

    def __repr__(self) -> str:
        body = self.body[:120] + (b"..." if len(self.body) > 120 else b"")
        headers = {k: v[:80] for k, v in self.headers.items()}
        return (
            f"Req({self.route} {self.source!r} {self.signing} {self.transport}, {len(self.body)} bytes: "
            f"{body!r}, headers={headers!r})"
        )

    @property
    def forged(self) -> bool:
        return self.signing != "signed" or (self.route == "webhook" and self.source not in SOURCES)

    def raw(self) -> tuple[str, bool]:
        """The event's body and isBase64Encoded."""
        if self.transport == "text":
            return self.body.decode(), False
        encoded = base64.b64encode(self.body).decode()
        return (encoded, True) if self.transport == "base64" else (encoded + "*!", True)

    def event(self) -> dict[str, Any]:
        body, is_base64 = self.raw()
        path = f"/webhooks/{self.source}" if self.route == "webhook" else "/slack/interactions"
        route = "POST /webhooks/{source}" if self.route == "webhook" else "POST /slack/interactions"
        event = slack_requests.api_event(path, body, dict(self.headers), route)
        event["isBase64Encoded"] = is_base64
        if self.route == "webhook":
            event["pathParameters"] = {"source": self.source}
        return event


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def _places(doc: Any) -> list[tuple[Any, Any]]:
    out, stack = [], [doc]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, child in items:
            out.append((node, key))
            stack.append(child)
    return out


@st.composite
def mutated(draw: st.DrawFn, template: dict[str, Any]) -> dict[str, Any]:
    """The template with one or two places replaced by any JSON value, removed, or wrapped in a list."""
    doc = copy.deepcopy(template)
    for _ in range(draw(st.integers(1, 2))):
        places = _places(doc)
        if not places:
            break
        parent, key = draw(st.sampled_from(places))
        action = draw(st.sampled_from(["replace", "replace", "delete", "wrap"]))
        if action == "delete" and isinstance(parent, dict):
            del parent[key]
        elif action == "wrap":
            parent[key] = [parent[key]]
        else:
            parent[key] = draw(json_values)
    return doc


def _deep(n: int) -> bytes:
    return b"[" * n + b"]" * n


def special_bodies(limit: int) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=200),
        st.integers(33, 3000).map(_deep),
        st.integers(1, 2048).map(lambda extra: b'{"a":"' + b"x" * (limit + extra) + b'"}'),
        st.just(b'{"event_id": ' + b"7" * 5000 + b"}"),
        st.just(b'{"event_id": "\\ud800", "ticket": {"id": "\\udfff"}}'),
        st.text(max_size=60).map(lambda t: t.encode("utf-8", "surrogatepass")),
    )


def webhook_template(source: str, n: int) -> dict[str, Any]:
    if source == "zendesk":
        return {
            "ticket": {
                "id": f"ZD-{n}",
                "subject": "Where is my order?",
                "description": "Where is my order ORD-5001?",
                "tags": "shipping",
                "requester": {"email": "jane.smith@example.com", "external_id": "cus_jane"},
            }
        }
    return {
        "event_id": f"evt-{n}",
        "ticket": {
            "id": f"T-{n}",
            "subject": "Where is my order?",
            "body": "Where is my order ORD-5001?",
            "requester": {"email": "jane.smith@example.com"},
        },
    }


@st.composite
def webhook_requests(draw: st.DrawFn, secrets: dict[str, str]) -> Req:
    source = draw(
        st.sampled_from(["generic", "zendesk", "generic", "zendesk"]) | st.text(min_size=1, max_size=12)
    )
    n = draw(st.integers(0, 10**9))
    if source == "zendesk" and draw(st.booleans()):
        template = zendesk_event_template(n)
    else:
        template = webhook_template(source if source in SOURCES else "generic", n)
    body = draw(
        st.one_of(
            st.just(template).map(lambda d: json.dumps(d).encode()),
            mutated(template).map(lambda d: json.dumps(d).encode()),
            json_values.map(lambda v: json.dumps(v).encode()),
            special_bodies(boundary.WEBHOOK_MAX_BYTES),
        )
    )
    signing = draw(st.sampled_from(SIGNINGS))
    hook = SOURCES.get(source, SOURCES["generic"])
    secret = secrets.get(source, "no-secret")
    headers = {"content-type": "application/json"}
    if signing == "signed":
        headers |= webhook_headers(hook.name, secret, body)
    elif signing == "wrong-secret":
        headers |= webhook_headers(hook.name, "not-the-secret", body)
    elif signing == "stale":
        headers |= webhook_headers(hook.name, secret, body, time.time() - 900)
    elif signing == "bad-timestamp":
        headers |= webhook_headers(hook.name, secret, body)
        headers[hook.timestamp_header.lower()] = draw(st.sampled_from(BAD_TIMESTAMPS) | st.text(max_size=20))
    elif signing == "bad-signature":
        headers |= webhook_headers(hook.name, secret, body)
        headers[hook.signature_header.lower()] = draw(st.text(max_size=80))
    return Req("webhook", source, headers, body, signing, draw(_transport(body)))


def _transport(body: bytes) -> st.SearchStrategy[str]:
    try:
        body.decode()
    except UnicodeDecodeError:
        return st.sampled_from(["base64", "base64", "bad-base64"])
    return st.sampled_from(["text", "text", "base64", "bad-base64"])


@st.composite
def slack_requests_(draw: st.DrawFn, secret: str, approval_ids: list[str]) -> Req:
    approval = draw(st.sampled_from([*approval_ids, "apr_missing"]))
    user = draw(st.sampled_from(["U0APPROVER1", "U0NOBODY"]))
    if draw(st.booleans()):
        action = draw(st.sampled_from(["approve", "partial", "deny", "reply_manually", "other"]))
        template = slack_requests.block_action(approval, action, user=user)
    else:
        modal = draw(st.sampled_from(["partial", "deny", "reply_manually"]))
        value = draw(st.sampled_from(["$10", "9999", "", "A reason that is long enough"]))
        template = slack_requests.view_submission(approval, modal, value, user=user)
    body = draw(
        st.one_of(
            st.just(template).map(lambda d: slack_requests.form_body(d).encode()),
            mutated(template).map(lambda d: slack_requests.form_body(d).encode()),
            json_values.map(lambda v: urlencode({"payload": json.dumps(v)}).encode()),
            json_values.map(lambda v: b"payload=" + json.dumps(v).encode()),
            special_bodies(boundary.SLACK_MAX_BYTES),
            special_bodies(boundary.SLACK_MAX_BYTES).map(lambda b: b"payload=" + b),
        )
    )
    signing = draw(st.sampled_from(SIGNINGS))
    headers = {"content-type": "application/x-www-form-urlencoded"}
    if signing == "signed":
        headers |= slack_requests.sign_headers(secret, body)
    elif signing == "wrong-secret":
        headers |= slack_requests.sign_headers("not-the-secret", body)
    elif signing == "stale":
        headers |= slack_requests.sign_headers(secret, body, time.time() - 900)
    elif signing == "bad-timestamp":
        headers |= slack_requests.sign_headers(secret, body)
        bad = draw(st.sampled_from(BAD_TIMESTAMPS) | st.text(max_size=20) | st.none())
        if bad is None:
            del headers["x-slack-request-timestamp"]
        else:
            headers["x-slack-request-timestamp"] = bad
    elif signing == "bad-signature":
        headers |= slack_requests.sign_headers(secret, body)
        headers["x-slack-signature"] = draw(st.text(max_size=80))
    return Req("slack", "", headers, body, signing, draw(_transport(body)))


def bad_timestamp(value: str) -> bool:
    """Not what a Slack timestamp must be: ASCII digits."""
    return not (value.isascii() and value.isdigit() and 0 < len(value) <= boundary.MAX_TIMESTAMP_DIGITS)
