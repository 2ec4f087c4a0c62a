"""Sample events in events/: prepared (signed at run time where the manifest says so) and invoked."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support_agent.intake.webhooks import SOURCES

from support_agent_local.template import PROJECT_ROOT

EVENTS_DIR = PROJECT_ROOT / "events"
STALE_SECONDS = 600


@dataclass(frozen=True)
class SampleEvent:
    name: str
    function: str
    spec: dict[str, Any]

    @property
    def path(self) -> Path:
        return EVENTS_DIR / self.name

    def raw(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.path.read_text())
        return data


def manifest() -> dict[str, SampleEvent]:
    """Every sample event with its preparation and expectation."""
    data = json.loads((EVENTS_DIR / "manifest.json").read_text())
    return {
        name: SampleEvent(name, spec["function"], spec)
        for name, spec in data.items()
        if not name.startswith("_")
    }


def sample(name: str) -> SampleEvent:
    """One sample event by file name (with or without the events/ prefix)."""
    events = manifest()
    key = Path(name).name
    if key not in events:
        raise KeyError(f"{name} is not listed in events/manifest.json")
    return events[key]


def webhook_headers(source: str, secret: str, body: bytes, timestamp: float | None = None) -> dict[str, str]:
    """Signature headers a sender with `secret` would put on `body`."""
    hook = SOURCES[source]
    ts = time.time() if timestamp is None else timestamp
    stamp = str(int(ts)) if source == "generic" else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
    return {
        hook.signature_header.lower(): hook.sign(secret, stamp, body),
        hook.timestamp_header.lower(): stamp,
    }


def prepare(event: SampleEvent, secrets: dict[str, dict[str, str]]) -> dict[str, Any]:
    """The event ready to invoke: signatures computed now with the local secrets, as the manifest asks."""
    data = event.raw()
    signing = event.spec.get("signing", "none")
    if signing == "none":
        return data
    if signing == "slack":
        from support_agent_local.slack_requests import sign_headers

        data["headers"] = {
            **data.get("headers", {}),
            **sign_headers(secrets["SlackSecretName"]["signing_secret"], data["body"]),
        }
        return data
    if event.spec.get("source") in SOURCES:
        secret = secrets["WebhookSecretName"][event.spec["source"]]
        body = data["body"].encode()
        if signing == "tampered":
            body = sample(event.spec["signed_body_from"]).raw()["body"].encode()
        when = time.time() - STALE_SECONDS if signing == "stale" else None
        headers = webhook_headers(event.spec["source"], secret, body, when)
        data["headers"] = {**data.get("headers", {}), **headers}
        return data
    raise ValueError(f"{event.name}: unknown signing {signing!r}")


def invoke_sample(stack: Any, name: str) -> Any:
    """Prepare and invoke one sample event in its function's environment, after the events it depends on."""
    from support_agent_local.emulator import LOCAL_SECRETS
    from support_agent_local.functions import invoke

    event = sample(name)
    for before in event.spec.get("after", []):
        invoke_sample(stack, before)
    if event.spec.get("settle"):
        from support_agent_local.runtime import Poller

        # Let background work land (state machines, notifications) before the event is sent.
        Poller(stack).run_until_quiet(quiet_seconds=1.0)
    logical_id = stack.function_for_code(f"functions/{event.function}")
    with stack.environment_of(logical_id):
        return invoke(event.function, prepare(event, LOCAL_SECRETS))


def signed_webhook_event(source: str, secret: str, payload: dict[str, Any]) -> dict[str, Any]:
    """An API Gateway event for POST /webhooks/{source} carrying `payload`, signed now with `secret`."""
    from support_agent_local.slack_requests import api_event

    body = json.dumps(payload)
    headers = {"content-type": "application/json", **webhook_headers(source, secret, body.encode())}
    event = api_event(f"/webhooks/{source}", body, headers, "POST /webhooks/{source}")
    event["pathParameters"] = {"source": source}
    return event
