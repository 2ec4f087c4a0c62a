"""Generated requests for the two HTTP routes (webhooks, Slack), well-formed and not, signed and not.

A `Fuzzer` draws from a `random.Random`, so a run is repeatable from its seed; `bench/fuzz.py` (`make fuzz`)
sends its requests through the services on in-memory fakes, the real handlers on the embedded stack and
`support-agent serve`. Some bodies are signed with the right secret, so the parsers and validators behind
the signature check are reached too. A request knows whether it is `forged` (not signed correctly): a
forged request must never be accepted.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import boto3
from support_agent import aws, boundary
from support_agent.intake.webhooks import SOURCES

from support_agent_local import slack_requests
from support_agent_local.events import webhook_headers

# Timestamps a fuzz found or could find: non-ASCII digits ('²'.isdigit() is True), signs, floats, far dates.
BAD_TIMESTAMPS = [
    "²",
    "١٧٠٠٠٠٠٠٠٠",
    "１７００００００００",
    "",
    " ",
    "-1",
    "+1700000000",
    "1e9",
    "1700000000.5",
    "0x10",
    "9" * 40,
    "0001-01-01",
    "9999-12-31T23:59:59",
    "2026-13-45T99:99:99Z",
    "NaN",
    "inf",
    "\x00",
    "\u2028",
    "0" * 600,
]
REJECTIONS = "intake-rejection-"  # the chains IntakeService starts for refusals
TEXT_ALPHABET = "aZ09 _-.:@/\\\"'{}[],=&%+?#\n\t\x00é€😀\u202e\ufffd"


@dataclass
class FuzzRequest:
    """One HTTP request: which route, its headers and body, and how it reaches the handler."""

    route: str  # "webhook" or "slack"
    path: str
    source: str  # the webhook source in the path ("" for Slack)
    headers: dict[str, str]
    body: bytes
    kind: str  # what was generated (for reports)
    forged: bool  # not signed with the right secret for exactly this body
    encoding: str = "text"  # "text", "base64", "bad-base64" (not valid base64), "surrogates" (invalid text)
    content_type: str = "application/json"
    extra: dict[str, Any] = field(default_factory=dict)

    def event_body(self) -> tuple[str, bool]:
        """The event's `body` and `isBase64Encoded` as API Gateway would pass them (or could not)."""
        if self.encoding == "base64":
            return base64.b64encode(self.body).decode(), True
        if self.encoding == "bad-base64":
            return base64.b64encode(self.body).decode()[:-1] + "!*", True
        if self.encoding == "surrogates":
            return self.body.decode("utf-8", "surrogateescape"), False
        return self.body.decode("utf-8"), False

    def event(self) -> dict[str, Any]:
        """An API Gateway HTTP API (payload 2.0) event for the handler."""
        body, is_base64 = self.event_body()
        route = "POST /webhooks/{source}" if self.route == "webhook" else "POST /slack/interactions"
        event = slack_requests.api_event(self.path, body, dict(self.headers), route)
        event["isBase64Encoded"] = is_base64
        if self.route == "webhook":
            event["pathParameters"] = {"source": self.source}
        return event


class Fuzzer:
    """Draws requests: roughly half webhooks (generic, zendesk, unknown sources) and half Slack."""

    def __init__(
        self,
        rnd: random.Random,
        webhook_secrets: dict[str, str],
        slack_secret: str,
        approval_ids: list[str] | None = None,
    ) -> None:
        self.rnd = rnd
        self.webhook_secrets = webhook_secrets
        self.slack_secret = slack_secret
        self.approval_ids = approval_ids or ["apr_0000000000000000000"]
        self.counter = 0

    def request(self) -> FuzzRequest:
        return self.webhook() if self.rnd.random() < 0.5 else self.slack()

    # --- values ----------------------------------------------------------------------------------------

    def text(self, longest: int = 24) -> str:
        return "".join(self.rnd.choice(TEXT_ALPHABET) for _ in range(self.rnd.randint(0, longest)))

    def json_value(self, depth: int = 0) -> Any:
        r = self.rnd
        choice = r.randint(0, 9 if depth < 3 else 6)
        if choice == 0:
            return None
        if choice == 1:
            return r.choice([True, False])
        if choice == 2:
            return r.choice([0, -1, 1, 2**31, 2**63, -(2**64), 10**30])
        if choice == 3:
            return r.choice([0.5, -1e308, 1e-300, 3.14])
        if choice in (4, 5, 6):
            return self.text()
        if choice in (7, 8):
            return [self.json_value(depth + 1) for _ in range(r.randint(0, 3))]
        return {self.text(8): self.json_value(depth + 1) for _ in range(r.randint(0, 3))}

    def mutate(self, document: dict[str, Any]) -> dict[str, Any]:
        """A copy with one to three places changed: a value replaced, a key removed or one added."""
        doc = copy.deepcopy(document)
        for _ in range(self.rnd.randint(1, 3)):
            paths = list(_paths(doc))
            if not paths:
                break
            parent, key = self.rnd.choice(paths)
            action = self.rnd.random()
            if action < 0.55:
                parent[key] = self.json_value()
            elif action < 0.8 and isinstance(parent, dict):
                parent.pop(key, None)
            elif isinstance(parent, dict):
                parent[self.text(10)] = self.json_value()
            else:
                parent[key] = [parent[key]]
        return doc

    def special_body(self, limit: int) -> tuple[str, bytes]:
        """Bodies no parser should choke on."""
        r = self.rnd
        kind = r.choice(
            ["deep", "deep-object", "bytes", "huge", "big-number", "surrogate", "empty", "text", "nul"]
        )
        if kind == "deep":
            n = r.choice([33, 100, 999, 5000, 50000])
            return kind, b"[" * n + b"]" * n
        if kind == "deep-object":
            n = r.choice([40, 1000, 20000])
            return kind, b'{"a":' * n + b"1" + b"}" * n
        if kind == "bytes":
            return kind, r.randbytes(r.randint(1, 300))
        if kind == "huge":
            return kind, b'{"a":"' + b"x" * (limit + r.randint(0, 4096)) + b'"}'
        if kind == "big-number":
            return kind, b'{"event_id": ' + b"7" * r.choice([4301, 20000]) + b"}"
        if kind == "surrogate":
            return kind, b'{"event_id": "\\ud800", "ticket": {"id": "\\udfff"}}'
        if kind == "empty":
            return kind, b""
        if kind == "nul":
            return kind, b"\x00" * r.randint(1, 64)
        return kind, self.text(200).encode("utf-8", "surrogatepass")

    # --- webhooks --------------------------------------------------------------------------------------

    def webhook(self) -> FuzzRequest:
        r = self.rnd
        self.counter += 1
        source = r.choices(["generic", "zendesk", self.text(12) or "x", "Generic"], [45, 45, 7, 3])[0]
        known = source in SOURCES
        if source == "zendesk" and r.random() < 0.4:
            template = zendesk_event_template(self.counter * 1000 + r.randint(0, 999))
        else:
            template = _webhook_template(source if known else "generic", self.counter)
        roll = r.random()
        if roll < 0.25:
            kind, body = "valid", json.dumps(template).encode()
        elif roll < 0.6:
            kind, body = "mutated", json.dumps(self.mutate(template)).encode()
        elif roll < 0.7:
            kind, body = "random-json", json.dumps(self.json_value()).encode()
        else:
            kind, body = self.special_body(boundary.WEBHOOK_MAX_BYTES)
        headers, forged, signing = self.webhook_headers(source, body)
        encoding = self.encoding(body)
        return FuzzRequest(
            "webhook",
            f"/webhooks/{source}",
            source,
            headers,
            body,
            f"{kind}/{signing}",
            forged or not known,
            encoding,
        )

    def webhook_headers(self, source: str, body: bytes) -> tuple[dict[str, str], bool, str]:
        r = self.rnd
        hook = SOURCES.get(source, SOURCES["generic"])
        secret = self.webhook_secrets.get(source, "not-a-secret")
        roll = r.random()
        base = {"content-type": "application/json"}
        if roll < 0.55:
            return {**base, **webhook_headers(hook.name, secret, body)}, False, "signed"
        if roll < 0.62:
            return base, True, "unsigned"
        if roll < 0.7:
            return {**base, **webhook_headers(hook.name, "wrong-secret", body)}, True, "wrong-secret"
        if roll < 0.76:
            return {**base, **webhook_headers(hook.name, secret, body, time.time() - 900)}, True, "stale"
        if roll < 0.9:
            headers = {**base, **webhook_headers(hook.name, secret, body)}
            headers[hook.timestamp_header.lower()] = r.choice([*BAD_TIMESTAMPS, self.text()])
            return headers, True, "bad-timestamp"
        headers = {**base, **webhook_headers(hook.name, secret, body)}
        headers[hook.signature_header.lower()] = r.choice(
            ["", "sha256=", "sha256=zz", "é" * 10, "x" * 5000, self.text()]
        )
        return headers, True, "bad-signature"

    # --- Slack -----------------------------------------------------------------------------------------

    def slack(self) -> FuzzRequest:
        r = self.rnd
        approval = r.choice(self.approval_ids)
        action = r.choice(["approve", "partial", "deny", "reply_manually", "take_over", "nope"])
        if r.random() < 0.5:
            template = slack_requests.block_action(
                approval, action, user=r.choice(["U0APPROVER1", "U0RANDOM"])
            )
        else:
            modal = r.choice(["partial", "deny", "reply_manually"])
            template = slack_requests.view_submission(
                approval, modal, r.choice(["$10", "9999", "", "no", "x" * 20])
            )
        roll = r.random()
        if roll < 0.2:
            kind, body = "valid", slack_requests.form_body(template).encode()
        elif roll < 0.6:
            kind, body = "mutated", slack_requests.form_body(self.mutate(template)).encode()
        elif roll < 0.7:
            kind, body = "random-json", urlencode({"payload": json.dumps(self.json_value())}).encode()
        elif roll < 0.78:
            form = {self.text(6): self.text(), r.choice(["payload", "Payload", "payload[]"]): self.text(40)}
            kind, body = "form", urlencode(form).encode()
        else:
            kind, special = self.special_body(boundary.SLACK_MAX_BYTES)
            body = b"payload=" + special if r.random() < 0.6 else special
        headers, forged, signing = self.slack_headers(body)
        return FuzzRequest(
            "slack",
            "/slack/interactions",
            "",
            headers,
            body,
            f"{kind}/{signing}",
            forged,
            self.encoding(body),
            "application/x-www-form-urlencoded",
        )

    def slack_headers(self, body: bytes) -> tuple[dict[str, str], bool, str]:
        r = self.rnd
        base = {"content-type": "application/x-www-form-urlencoded"}
        signed = {**base, **slack_requests.sign_headers(self.slack_secret, body)}
        roll = r.random()
        if roll < 0.55:
            return signed, False, "signed"
        if roll < 0.62:
            return base, True, "unsigned"
        if roll < 0.68:
            return {**base, "x-slack-signature": signed["x-slack-signature"]}, True, "no-timestamp"
        if roll < 0.74:
            return {**base, **slack_requests.sign_headers("wrong-secret", body)}, True, "wrong-secret"
        if roll < 0.8:
            return (
                {**base, **slack_requests.sign_headers(self.slack_secret, body, time.time() - 900)},
                True,
                "stale",
            )
        if roll < 0.92:
            return (
                {**signed, "x-slack-request-timestamp": r.choice([*BAD_TIMESTAMPS, self.text()])},
                True,
                "bad-timestamp",
            )
        signature = r.choice(["", "v0=", "v1=abc", "é" * 10, "v0=" + "0" * 64, "x" * 5000, self.text()])
        return {**signed, "x-slack-signature": signature}, True, "bad-signature"

    def encoding(self, body: bytes) -> str:
        """How the body travels: text when it is UTF-8 (mostly), base64, or transport nonsense."""
        r = self.rnd.random()
        try:
            body.decode("utf-8")
            utf8 = True
        except UnicodeDecodeError:
            utf8 = False
        if r < 0.05:
            return "bad-base64"
        if r < 0.1 and not utf8:
            return "surrogates"
        return "text" if utf8 and r < 0.75 else "base64"


# Calls that change no state (the audit MAC key's GenerateMac seals a refusal's entry; it stores nothing).
READS = (
    "Get",
    "Query",
    "Scan",
    "Describe",
    "List",
    "Receive",
    "BatchGet",
    "TransactGet",
    "GenerateMac",
    "VerifyMac",
)
REFUSAL_ENTRY = "refusal audit entry"


class AwsWrites:
    """Every AWS write call made while a handler answers one request: a botocore hook on the clients made
    from boto3's default session (the handlers' clients, once `start` has dropped the cached ones). Reads
    are not recorded; a refused webhook's one audit entry is recorded as REFUSAL_ENTRY."""

    def __init__(self, audit_table: str) -> None:
        self.audit_table = audit_table
        self.local = threading.local()
        self.last: list[str] = []

    def start(self) -> AwsWrites:
        boto3._get_default_session().events.register("before-parameter-build", self._hook)
        aws.reset_clients()  # clients made from now on carry the hook
        return self

    def stop(self) -> None:
        boto3._get_default_session().events.unregister("before-parameter-build", self._hook)
        aws.reset_clients()

    def _hook(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        calls = getattr(self.local, "calls", None)
        if calls is not None and not model.name.startswith(READS):
            calls.append(self._describe(model.service_model.service_name, model.name, params))

    def _describe(self, service: str, operation: str, params: dict[str, Any]) -> str:
        item = params.get("Item") or {}
        if (
            operation == "PutItem"
            and params.get("TableName") == self.audit_table
            and item.get("session_id", {}).get("S", "").startswith(REJECTIONS)
            and item.get("seq", {}).get("N") == "1"
        ):
            return REFUSAL_ENTRY
        return f"{service}:{operation}"

    @contextlib.contextmanager
    def recording(self) -> Iterator[list[str]]:
        """Record the writes made in this thread inside the block."""
        calls: list[str] = []
        self.local.calls = calls
        try:
            yield calls
        finally:
            self.local.calls = None
            self.last = calls

    def wrap(self, call: Callable[..., Any]) -> Callable[..., Any]:
        """`call`, recording the writes made in whichever thread runs it (serve's request threads)."""

        def recorded(*args: Any, **kwargs: Any) -> Any:
            with self.recording():
                return call(*args, **kwargs)

        return recorded


def refusal_writes(route: str, status: int, writes: list[str], slack_calls: int) -> list[str]:
    """What a refusal (4xx) wrote beyond what it may: its one audit entry (webhooks), nothing (Slack)."""
    if not 400 <= status < 500:
        return []
    # A webhook refused by the service writes its audit entry; one the router refuses (a path no route
    # matches: 404 before any code of ours) writes nothing.
    allowed: list[list[str]] = [[REFUSAL_ENTRY], []] if route == "webhook" else [[]]
    problems = []
    if writes not in allowed:
        problems.append(f"state change from a refusal (writes: {', '.join(writes) or 'none'})")
    if slack_calls:
        problems.append("state change from a refusal (Slack API called)")
    return problems


def _paths(doc: Any) -> Any:
    """(container, key) for every place in a JSON document."""
    stack = [doc]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, child in items:
            yield node, key
            stack.append(child)


def _webhook_template(source: str, n: int) -> dict[str, Any]:
    ticket_id = f"FZ-{n}-{time.time_ns() % 10**9}"
    if source == "zendesk":
        return {
            "ticket": {
                "id": ticket_id,
                "subject": "Where is my order?",
                "description": "Where is my order ORD-5001? It has been a week.",
                "url": "https://acme.zendesk.com/agent/tickets/1",
                "tags": "shipping fuzz",
                "created_at": "2026-11-28T06:00:00Z",
                "requester": {"email": "jane.smith@example.com", "name": "Jane", "external_id": "cus_jane"},
            }
        }
    return {
        "event_id": f"evt-{ticket_id}",
        "event_type": "ticket.created",
        "ticket": {
            "id": ticket_id,
            "subject": "Where is my order?",
            "body": "Where is my order ORD-5001? It has been a week.",
            "requester": {"email": "jane.smith@example.com", "name": "Jane"},
            "customer_id": "cus_jane",
            "tags": ["fuzz"],
        },
    }


def zendesk_event_template(n: int) -> dict[str, Any]:
    """A Zendesk event-subscription delivery (`zen:event-type:ticket.created`)."""
    return {
        "type": "zen:event-type:ticket.created",
        "id": f"01JFUZZ{n:019d}",
        "account_id": "10000001",
        "time": "2026-11-28T06:05:00Z",
        "zendesk_event_version": "2022-11-06",
        "subject": f"zen:ticket:{n}",
        "detail": {
            "id": str(n),
            "subject": "Where is my order?",
            "description": "Hello, my order has not arrived yet. Where is it?",
            "requester_id": "377001",
            "status": "NEW",
            "tags": ["order"],
            "created_at": "2026-11-28T06:05:00Z",
        },
        "event": {},
    }
