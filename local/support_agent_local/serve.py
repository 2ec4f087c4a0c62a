"""`support-agent serve`: the HTTP API on 127.0.0.1 plus the queue pollers and the state machine.

Requests become API Gateway HTTP API (payload 2.0) events for the same handlers the stack runs; answers go
back as HTTP. `GET /sessions/{id}` (local only) shows a session, so a script can follow a ticket. One lock
serialises handler invocations, because each runs with its own function's environment variables.

Like API Gateway: a body that is not UTF-8 text (or has a binary content type) reaches the handler base64
encoded with `isBase64Encoded`; a handler that raises is answered 500 with a JSON error (and logged with
its traceback), never a dropped connection; a body past MAX_BODY_BYTES is answered 413 unread.
"""

from __future__ import annotations

import base64
import json
import re
import signal
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from support_agent_local.emulator import EmbeddedAws
from support_agent_local.functions import invoke
from support_agent_local.runtime import Poller
from support_agent_local.slack_requests import api_event

MAX_BODY_BYTES = 1024 * 1024  # the handlers refuse far less (256 KiB webhooks, 64 KiB Slack) with 413
READ_TIMEOUT_SECONDS = 10  # a client that announces a body and never sends it
_TEXT_TYPES = re.compile(
    r"^(text/|application/(json|[\w.+-]*\+json|x-www-form-urlencoded|xml|[\w.+-]*\+xml|javascript))", re.I
)
JSON = {"content-type": "application/json"}

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
        self, method: str, path: str, headers: dict[str, str], body: bytes, query: str = ""
    ) -> tuple[int, dict[str, str], str]:
        """One HTTP request through the matching handler; a handler that raises is a logged 500."""
        try:
            return self._route(method, path, headers, body, query)
        except Exception as exc:
            self.log(f"{method} {path} → 500: the handler raised\n{traceback.format_exc().rstrip()}")
            error = {"error": f"internal error ({type(exc).__name__}); see the serve log"}
            return 500, JSON, json.dumps(error)

    def _route(
        self, method: str, path: str, headers: dict[str, str], body: bytes, query: str
    ) -> tuple[int, dict[str, str], str]:
        if method == "GET" and path.startswith("/sessions/"):
            session = self.stack.sessions().get(path.rsplit("/", 1)[-1])
            if session is None:
                return 404, JSON, json.dumps({"error": "no such session"})
            return 200, JSON, session.model_dump_json(exclude={"transcript"})
        for pattern, logical_id, function, route in ROUTES:
            match = pattern.match(path)
            if match and method == "POST":
                lower = {k.lower(): v for k, v in headers.items()}
                text, is_base64 = gateway_body(body, lower.get("content-type", ""))
                event = api_event(path, text, lower, route)
                event["isBase64Encoded"] = is_base64
                event["rawQueryString"] = query
                event["pathParameters"] = match.groupdict()
                with self.lock, self.stack.environment_of(logical_id):
                    response = invoke(function, event)
                self.log(f"{function}: {method} {path} → {response['statusCode']}")
                return (
                    int(response["statusCode"]),
                    dict(response.get("headers") or {}),
                    str(response.get("body") or ""),
                )
        return 404, JSON, json.dumps({"error": f"no route for {method} {path}"})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            timeout = READ_TIMEOUT_SECONDS
            disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed ACK

            def _send(self, status: int, headers: dict[str, str], text: str) -> None:
                data = text.encode(errors="replace")
                self.send_response(status)
                for key, value in headers.items():
                    if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                if self.close_connection:
                    self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _refuse(self, status: int, reason: str) -> None:
                self.close_connection = True  # the body was not read: the connection cannot be reused
                self._send(status, JSON, json.dumps({"error": reason}))

            def _answer(self) -> None:
                try:
                    self._serve()
                except TimeoutError:
                    self._try(self._refuse, 408, "the body did not arrive in time")
                except OSError:
                    self.close_connection = True  # the client went away; nothing to answer
                except Exception:
                    api.log(f"{self.command} {self.path} → 500\n{traceback.format_exc().rstrip()}")
                    self._try(self._refuse, 500, "internal error; see the serve log")

            def _serve(self) -> None:
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    return self._refuse(411, "send the body with a Content-Length")
                declared = (self.headers.get("Content-Length") or "0").strip()
                if not (declared.isascii() and declared.isdigit()):
                    return self._refuse(400, "Content-Length is not a number")
                length = int(declared)
                if length > MAX_BODY_BYTES:
                    return self._refuse(413, f"body is larger than {MAX_BODY_BYTES // 1024} KiB")
                body = self.rfile.read(length) if length else b""
                if len(body) < length:
                    return self._refuse(400, "the body is shorter than its Content-Length")
                target, _, query = self.path.partition("?")
                status, headers, text = api.call(self.command, target, joined(self.headers), body, query)
                return self._send(status, headers, text)

            def _try(self, answer: Any, *args: Any) -> None:
                try:
                    answer(*args)
                except Exception:
                    self.close_connection = True

            def __getattr__(self, name: str) -> Any:
                # Every method reaches the router (do_POST, do_GET, do_PUT, …): an unknown route is a 404,
                # as on API Gateway, not http.server's 501.
                if name.startswith("do_"):
                    return self._answer
                raise AttributeError(name)

            def log_message(self, *args: Any) -> None:
                return

        return Handler


def joined(headers: Any) -> dict[str, str]:
    """Headers as API Gateway passes them: names in lower case, repeated headers joined by commas."""
    out: dict[str, str] = {}
    for key, value in headers.items():
        name = key.lower()
        out[name] = f"{out[name]},{value}" if name in out else value
    return out


def gateway_body(body: bytes, content_type: str) -> tuple[str, bool]:
    """The event's `body` and `isBase64Encoded`: text for UTF-8 text types, base64 for anything else."""
    if not body:
        return "", False
    if not content_type or _TEXT_TYPES.match(content_type.strip()):
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode("ascii"), True


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def serve(host: str, port: int) -> int:
    """Run until Ctrl-C (SIGINT) or SIGTERM."""
    # A stop request only sets an event the main thread waits on: nothing is interrupted halfway (a
    # KeyboardInterrupt can land inside any call of the main thread). The signals are unblocked and
    # handled explicitly, because a process may start with them blocked or ignored (inherited from a
    # test runner, nohup or a supervisor) and would then never stop.
    stop = threading.Event()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    for number in STOP_SIGNALS:
        signal.signal(number, lambda _signum, _frame: stop.set())
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
            while not stop.wait(0.5):
                pass
            api.log("stopping")
        finally:
            api.stop()
    return 0
