"""A strict stand-in of Anthropic's Messages API on 127.0.0.1, for the real `anthropic` SDK.

It applies the documented request rules and answers with the documented error shapes (400
invalid_request_error, 401 authentication_error, 429 rate_limit_error, 500 api_error, 529
overloaded_error), so a conversation the real API would reject fails here too. What the model "says"
comes from a responder the test supplies; the stand-in wraps it in a Message (id, usage counted from
the request, the model echoed). Point the SDK at it with ANTHROPIC_BASE_URL (or `base_url`).
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from support_agent.agent.conversation import ConversationError, check

MAX_CACHE_BREAKPOINTS = 4  # the API refuses a request with more blocks marked cache_control
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


class ApiError(Exception):
    """An error answer: the status and the message of the documented error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


Responder = Callable[[dict[str, Any]], dict[str, Any]]
"""Given a valid request body, the model's turn: `content` and `stop_reason` (or raise ApiError)."""


def tool_use(name: str, tool_input: dict[str, Any], tool_id: str | None = None) -> dict[str, Any]:
    """A tool_use block as the API returns it."""
    return {
        "type": "tool_use",
        "id": tool_id or f"toolu_{uuid.uuid4().hex[:24]}",
        "name": name,
        "input": tool_input,
    }


def validate(body: Any) -> None:
    """Raise ApiError(400) for a request body the Messages API would refuse."""
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise ApiError(400, "model: field required")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise ApiError(400, "max_tokens: must be an integer ≥ 1")
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise ApiError(400, "messages: field required")
    try:
        check(messages)
    except ConversationError as exc:
        raise ApiError(400, str(exc)) from None
    tools = body.get("tools") or []
    names = [t.get("name") for t in tools if isinstance(t, dict)]
    if len(names) != len(tools) or any(not isinstance(n, str) or not _TOOL_NAME.match(n) for n in names):
        raise ApiError(400, "tools: each tool needs a name matching ^[a-zA-Z0-9_-]{1,64}$")
    if len(set(names)) != len(names):
        raise ApiError(400, "tools: tool names must be unique")
    for tool in tools:
        schema = tool.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise ApiError(400, f"tools.{tool['name']}.input_schema: type must be 'object'")
    uses_tools = any(
        isinstance(b, dict) and b.get("type") in {"tool_use", "tool_result"}
        for m in messages
        if isinstance(m.get("content"), list)
        for b in m["content"]
    )
    if uses_tools and not tools:
        raise ApiError(400, "requests which include tool_use or tool_result blocks must define tools")
    choice = body.get("tool_choice")
    if choice is not None and (
        not isinstance(choice, dict)
        or choice.get("type") not in {"auto", "any", "tool", "none"}
        or (choice.get("type") == "tool" and choice.get("name") not in names)
    ):
        raise ApiError(400, "tool_choice: must be auto, any, none, or a tool that is defined")
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        raise ApiError(400, "system: must be a string or a list of text blocks")
    if _breakpoints(body) > MAX_CACHE_BREAKPOINTS:
        raise ApiError(400, f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided")


def _breakpoints(value: Any) -> int:
    if isinstance(value, dict):
        own = 1 if "cache_control" in value else 0
        return own + sum(_breakpoints(v) for k, v in value.items() if k != "cache_control")
    if isinstance(value, list):
        return sum(_breakpoints(v) for v in value)
    return 0


@dataclass
class MessagesApiStandIn:
    """The stand-in server. `calls` records (status, request body) for every request it answered."""

    responder: Responder
    api_keys: frozenset[str] = frozenset({"sk-ant-test"})
    calls: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> MessagesApiStandIn:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> MessagesApiStandIn:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def statuses(self) -> list[int]:
        """The status of every answer, in order."""
        return [status for status, _ in self.calls]

    def answer(self, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, Any]]:
        """The status and body for one POST /v1/messages."""
        body: dict[str, Any] = {}
        try:
            # The SDK sends the key as x-api-key or as a bearer token, depending on its version and options.
            bearer = headers.get("authorization", "").removeprefix("Bearer ").strip()
            if (headers.get("x-api-key") or bearer) not in self.api_keys:
                raise ApiError(401, "invalid x-api-key")
            if not headers.get("anthropic-version"):
                raise ApiError(400, "anthropic-version: header is required")
            try:
                body = json.loads(raw)
            except ValueError:
                raise ApiError(400, "request body is not valid JSON") from None
            validate(body)
            turn = self.responder(body)
        except ApiError as exc:
            kind = _ERROR_TYPES.get(exc.status, "api_error")
            return exc.status, {"type": "error", "error": {"type": kind, "message": exc.message}}
        text = (
            json.dumps(body.get("system", ""))
            + json.dumps(body.get("tools", []))
            + json.dumps(body["messages"])
        )
        output = json.dumps(turn.get("content", []))
        return 200, {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": turn.get("content", []),
            "stop_reason": turn.get("stop_reason", "end_turn"),
            "stop_sequence": None,
            "usage": {"input_tokens": max(1, len(text) // 4), "output_tokens": max(1, len(output) // 4)},
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.path.split("?")[0] != "/v1/messages":
                    status, body = (
                        404,
                        {"type": "error", "error": {"type": "not_found_error", "message": "Not found"}},
                    )
                else:
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    status, body = stand_in.answer(headers, raw)
                    with stand_in._lock:
                        try:
                            request = json.loads(raw)
                        except ValueError:
                            request = {}
                        stand_in.calls.append((status, request))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.send_header("request-id", f"req_{uuid.uuid4().hex[:24]}")
                if status in (429, 500, 529):
                    # Documented retry hint; short here so the SDK's retries do not slow the tests.
                    self.send_header("retry-after-ms", "20")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        return Handler
