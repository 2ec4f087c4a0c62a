"""`support-agent serve`: the HTTP API on 127.0.0.1 plus the queue pollers and the state machine.

Requests become API Gateway HTTP API (payload 2.0) events for the same handlers the stack runs; answers go
back as HTTP. `GET /sessions/{id}` (local only) shows a session, so a script can follow a ticket. One lock
serialises handler invocations, because each runs with its own function's environment variables.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from support_agent_local.emulator import EmbeddedAws
from support_agent_local.functions import invoke
from support_agent_local.runtime import Poller
from support_agent_local.slack_requests import api_event

ROUTES: list[tuple[re.Pattern[str], str, str, str]] = [
    (re.compile(r"^/webhooks/(?P<source>[^/]+)$"), "IntakeFunction", "intake", "POST /webhooks/{source}"),
    (
        re.compile(r"^/slack/interactions$"),
        "SlackInteractionFunction",
        "slack_interaction",
        "POST /slack/interactions",
    ),
]


class LocalApi:
    def __init__(
        self, stack: EmbeddedAws, host: str = "127.0.0.1", port: int = 3000, out: Any = sys.stdout
    ) -> None:
        self.stack = stack
        self.lock = threading.Lock()
        self.out = out
        self.stopping = threading.Event()
        self.poller = Poller(stack, log=self.log)
        self.server = ThreadingHTTPServer((host, port), self._handler())
        self.threads = [
            threading.Thread(target=self.server.serve_forever, daemon=True),
            threading.Thread(target=self._poll, daemon=True),
        ]

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def log(self, line: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {line}", file=self.out, flush=True)

    def start(self) -> LocalApi:
        for thread in self.threads:
            thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        for thread in self.threads:
            thread.join(timeout=5)

    def _poll(self) -> None:
        while not self.stopping.is_set():
            with self.lock:
                delivered = self.poller.poll_once()
            if not delivered:
                self.stopping.wait(0.1)

    def call(
        self, method: str, path: str, headers: dict[str, str], body: str
    ) -> tuple[int, dict[str, str], str]:
        """One HTTP request through the matching handler."""
        if method == "GET" and path.startswith("/sessions/"):
            session = self.stack.sessions().get(path.rsplit("/", 1)[-1])
            if session is None:
                return 404, {"content-type": "application/json"}, json.dumps({"error": "no such session"})
            return 200, {"content-type": "application/json"}, session.model_dump_json(exclude={"transcript"})
        for pattern, logical_id, function, route in ROUTES:
            match = pattern.match(path)
            if match and method == "POST":
                event = api_event(path, body, {k.lower(): v for k, v in headers.items()}, route)
                event["pathParameters"] = match.groupdict()
                with self.lock, self.stack.environment_of(logical_id):
                    response = invoke(function, event)
                self.log(f"{function}: {method} {path} → {response['statusCode']}")
                return (
                    int(response["statusCode"]),
                    dict(response.get("headers") or {}),
                    str(response.get("body") or ""),
                )
        return (
            404,
            {"content-type": "application/json"},
            json.dumps({"error": f"no route for {method} {path}"}),
        )

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                status, headers, text = api.call(
                    method, self.path.split("?", 1)[0], dict(self.headers.items()), body
                )
                data = text.encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                self._answer("POST")

            def do_GET(self) -> None:
                self._answer("GET")

            def log_message(self, *args: Any) -> None:
                return

        return Handler


def serve(host: str, port: int) -> int:
    """Run until Ctrl-C."""
    with EmbeddedAws(parameters={"LogLevel": "WARNING"}) as stack:
        api = LocalApi(stack, host, port).start()
        secret = stack.secret("WebhookSecretName")
        api.log(
            f"listening on {api.url} (POST /webhooks/generic|zendesk, POST /slack/interactions, GET /sessions/ID)"
        )
        api.log(
            f"local webhook secrets: generic={secret['generic']} zendesk={secret['zendesk']}; Slack API stand-in at {stack.slack.url if stack.slack else '-'}"
        )
        try:
            while True:
                time.sleep(0.5)
        except KeyboardInterrupt:
            api.log("stopping")
        finally:
            api.stop()
    return 0
