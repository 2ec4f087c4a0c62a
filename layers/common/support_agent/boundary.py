"""What the HTTP routes accept before any service logic: body size, transport encoding, timestamps, JSON.

API Gateway (HTTP API, payload 2.0) hands a Lambda the body as text, or base64 with `isBase64Encoded`
when it is binary. Everything here refuses with a `Refused` (an HTTP status and a reason that is safe to
return: it never quotes a secret or the body), so bad input is answered 4xx and never reaches a write.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

WEBHOOK_MAX_BYTES = 256 * 1024  # a ticket webhook, decoded (Ticket.body itself is capped at 20,000 chars)
SLACK_MAX_BYTES = 64 * 1024  # an interactive payload; Slack's own are a few KiB
MAX_JSON_DEPTH = 32  # our payloads nest 5 levels (Slack's view.state.values) at most
MAX_TIMESTAMP_DIGITS = 12  # Unix seconds until the year 33658


class Refused(Exception):
    """The request is refused at the boundary with `status`; `reason` is safe to show the caller."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def decode_body(raw: str | None, is_base64: bool, limit: int) -> bytes:
    """The bytes the sender sent (what its signature covers), or Refused 413 past `limit` / 400 bad base64."""
    text = raw or ""
    if is_base64:
        # Checked before decoding: base64 is 4 characters per 3 bytes.
        if len(text) > (limit + 2) // 3 * 4 + 4:
            raise Refused(413, f"body is larger than the {limit // 1024} KiB limit")
        try:
            body = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise Refused(400, "body is marked base64 but is not valid base64") from None
    else:
        if len(text) > limit:  # each character is at least one byte
            raise Refused(413, f"body is larger than the {limit // 1024} KiB limit")
        try:
            body = text.encode()
        except UnicodeEncodeError:
            raise Refused(400, "body is not valid UTF-8") from None
    check_size(body, limit)
    return body


def check_size(body: bytes | str, limit: int) -> None:
    """Refused 413 when `body` is longer than `limit` bytes."""
    size = len(body) if isinstance(body, bytes) else len(body.encode(errors="surrogatepass"))
    if size > limit:
        raise Refused(413, f"body is larger than the {limit // 1024} KiB limit")


def is_unix_seconds(value: str) -> bool:
    """ASCII digits only, at most MAX_TIMESTAMP_DIGITS (`str.isdigit` also takes '²' and '٣')."""
    return 0 < len(value) <= MAX_TIMESTAMP_DIGITS and value.isascii() and value.isdigit()


def utf8_text(body: bytes) -> str:
    """The body as text, or Refused 400."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(400, "body is not valid UTF-8") from None


def load_json(text: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse JSON that nests at most `max_depth` levels and holds no lone surrogate (which no store can
    encode), or raise ValueError with a reason naming the problem, never quoting the input."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError(f"JSON nests deeper than {max_depth} levels") from None
    except UnicodeDecodeError:
        raise ValueError("body is not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"body is not valid JSON: {exc.msg} at position {exc.pos}") from None
    except ValueError:  # an integer with more digits than Python converts
        raise ValueError("body holds a number too large to read") from None
    check_tree(value, max_depth)
    return value


def check_tree(value: Any, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Walk parsed JSON without recursion: refuse deep nesting and lone surrogates."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, dict | list):
            if depth > max_depth:
                raise ValueError(f"JSON nests deeper than {max_depth} levels")
            if isinstance(item, dict):
                for key, child in item.items():
                    _check_text(key)
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)


def _check_text(text: str) -> None:
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            raise ValueError("JSON holds a string that is not valid Unicode (a lone surrogate)") from None
