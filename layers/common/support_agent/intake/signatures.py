"""Webhook signature schemes, checked on the raw body before anything is parsed."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime

from support_agent.boundary import is_unix_seconds

MAX_HEADER_CHARS = 512  # longer signature or timestamp headers are refused before any work


class SignatureError(Exception):
    """The request is not signed by the expected sender; the message is safe to return to the caller."""


def _timestamp_seconds(value: str) -> float:
    value = value.strip()
    if is_unix_seconds(value):  # ASCII digits only: '²'.isdigit() is True too
        return float(value)
    if not value.isascii() or len(value) > 40:
        raise SignatureError("signature timestamp is not a Unix time or ISO-8601 date")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except (ValueError, OverflowError, OSError):  # OverflowError, OSError: a year mktime cannot place
        raise SignatureError("signature timestamp is not a Unix time or ISO-8601 date") from None


def check_window(timestamp: str | None, now: float, tolerance: int) -> None:
    """Refuse a missing timestamp or one further than `tolerance` seconds from now (replays)."""
    if not timestamp:
        raise SignatureError("missing signature timestamp header")
    if len(timestamp) > MAX_HEADER_CHARS:
        raise SignatureError("signature timestamp is not a Unix time or ISO-8601 date")
    if abs(now - _timestamp_seconds(timestamp)) > tolerance:
        raise SignatureError(f"signature timestamp is outside the {tolerance // 60}-minute window")


def hmac_sha256(secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


def sign_generic(secret: str, timestamp: str, body: bytes) -> str:
    """X-Signature value for our generic webhook: `sha256=` + hex HMAC over `timestamp.body`."""
    return "sha256=" + hmac_sha256(secret, timestamp.encode() + b"." + body).hex()


def sign_zendesk(secret: str, timestamp: str, body: bytes) -> str:
    """X-Zendesk-Webhook-Signature value: base64 HMAC-SHA256 over timestamp + body."""
    return base64.b64encode(hmac_sha256(secret, timestamp.encode() + body)).decode()


def verify(expected: str, given: str | None) -> None:
    """Constant-time comparison of signature header values."""
    if not given:
        raise SignatureError("missing signature header")
    if len(given) > MAX_HEADER_CHARS:
        raise SignatureError("signature does not match the body")
    # Bytes, not str: compare_digest refuses str with non-ASCII characters (a TypeError, not a mismatch).
    if not hmac.compare_digest(expected.encode(), given.strip().encode(errors="replace")):
        raise SignatureError("signature does not match the body")
