"""JSON over HTTP for the adapters to outside systems: deadlines, bounded retries, safe errors.

Built on httpx2, which the layer already ships as the Anthropic SDK's HTTP client. Every failure the
caller sees is an `AdapterError` whose message names the system and the reason, never a credential, a
header or a response body (those can echo what we sent).

Retries: 429 waits `Retry-After` (when it fits before the deadline); 5xx and transport errors back off
exponentially. A write that is not idempotent is never re-sent here: its caller re-reads the system and
decides (see `OutcomeUnknown`).
"""

from __future__ import annotations

import email.utils
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx2

from support_agent.adapters.ports import AdapterError

# Seconds left for this invocation (in Lambda: context.get_remaining_time_in_millis() / 1000).
Remaining = Callable[[], float]

RETRYABLE = frozenset({500, 502, 503, 504})
_CODE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,40}$")


class NotFound(AdapterError):
    """The system answered 404 for the resource."""


class Conflict(AdapterError):
    """The system refused the write because the resource changed meanwhile (409)."""


class OutcomeUnknown(AdapterError):
    """A non-idempotent write may or may not have been applied (timeout, dropped connection or 5xx)."""


def fixed_budget(seconds: float) -> Remaining:
    """A deadline `seconds` from now (for tools and tests; Lambda passes the context's remaining time)."""
    end = time.monotonic() + seconds
    return lambda: end - time.monotonic()


class InvocationDeadline:
    """The current Lambda invocation's remaining time, for adapters built once per container.

    The handler calls `start(context)` at the top of each invocation; before the first, or outside
    Lambda, it answers `fallback` seconds.
    """

    def __init__(self, fallback: float = 30.0) -> None:
        self.fallback = fallback
        self._context: Any = None

    def start(self, context: Any) -> None:
        self._context = context

    def __call__(self) -> float:
        if self._context is None:
            return self.fallback
        return float(self._context.get_remaining_time_in_millis()) / 1000


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    base_delay: float = 0.2
    max_delay: float = 5.0
    # Keep this much of the invocation for our own writes after the last call.
    margin: float = 1.0

    def backoff(self, attempt: int) -> float:
        """Full jitter: a random wait up to base * 2**attempt, capped."""
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))  # noqa: S311


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_code(response: httpx2.Response, field: str = "error") -> str:
    """The machine-readable error code of a JSON error body, when it looks like one (else '')."""
    try:
        body = response.json()
    except ValueError:
        return ""
    value = body.get(field) if isinstance(body, dict) else None
    if isinstance(value, dict):  # {"error": {"code": "..."}}
        value = value.get("code")
    return value if isinstance(value, str) and _CODE.match(value) else ""


class JsonApi:
    """One outside system's JSON API: `request` returns the decoded body or raises AdapterError."""

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        auth: httpx2.Auth | tuple[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        remaining: Remaining | None = None,
        retry: RetryPolicy | None = None,
        transport: httpx2.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        secrets: tuple[str, ...] = (),
        error_field: str = "error",
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        # Without a deadline each call gets a fixed allowance (attempts still bound it).
        self.remaining: Remaining = remaining or (lambda: 60.0)
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.error_field = error_field
        self._secrets = tuple(s for s in secrets if s)
        self.client = httpx2.Client(
            base_url=self.base_url,
            auth=auth,
            headers={"Accept": "application/json", "User-Agent": "support-agent", **(headers or {})},
            transport=transport,
            follow_redirects=False,
            trust_env=False,
        )

    def close(self) -> None:
        self.client.close()

    def same_origin(self, url: str) -> bool:
        """True when `url` points at this API (pagination links are followed only then: they carry auth)."""
        return url == self.base_url or url.startswith(self.base_url + "/")

    def _fail(self, cls: type[AdapterError], reason: str) -> AdapterError:
        for secret in self._secrets:
            reason = reason.replace(secret, "***")
        return cls(f"{self.name}: {reason}")

    def _left(self) -> float:
        return self.remaining() - self.retry.margin

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        idempotent: bool | None = None,
        what: str = "",
    ) -> Any:
        """Send one request (retried within the deadline when safe) and return its JSON body.

        `what` names the resource in a NotFound message ("ticket 42"). `idempotent` defaults to True for
        GET and HEAD only; a write is re-sent after a 5xx or a timeout only when the caller says it is
        idempotent, else that ends in OutcomeUnknown. A 429 is always retried (nothing was done).
        """
        if idempotent is None:
            idempotent = method in {"GET", "HEAD"}
        label = what or "the resource"
        attempt = 0
        while True:
            left = self._left()
            if left <= 0:
                raise self._fail(AdapterError, "no time left before the deadline")
            try:
                response = self.client.request(
                    method, path, params=params, json=json, timeout=min(self.timeout, left)
                )
            except httpx2.TimeoutException:
                problem = "timed out"
                response = None
            except httpx2.TransportError as exc:
                problem = f"unreachable ({type(exc).__name__})"
                response = None
            if response is None:
                if not idempotent:
                    raise self._fail(OutcomeUnknown, f"{problem}; the change may or may not have been made")
                attempt = self._wait_or_raise(attempt, None, problem)
                continue
            status = response.status_code
            if status < 300:
                if status == 204 or not response.content:
                    return {}
                try:
                    return response.json()
                except ValueError:
                    raise self._fail(
                        AdapterError, f"answered HTTP {status} with a body that is not JSON"
                    ) from None
            if status == 429:
                wait = retry_after(response.headers.get("Retry-After"))
                attempt = self._wait_or_raise(attempt, wait, "rate limited (HTTP 429)", rate_limited=True)
                continue
            if status in RETRYABLE:
                if not idempotent:
                    raise self._fail(
                        OutcomeUnknown, f"failed with HTTP {status}; the change may or may not have been made"
                    )
                wait = retry_after(response.headers.get("Retry-After"))
                attempt = self._wait_or_raise(attempt, wait, f"failed with HTTP {status}")
                continue
            raise self._status_error(status, response, label)

    def _status_error(self, status: int, response: httpx2.Response, label: str) -> AdapterError:
        code = error_code(response, self.error_field)
        detail = f" ({code})" if code else ""
        if status == 404:
            return self._fail(NotFound, f"{label} was not found")
        if status == 409:
            return self._fail(Conflict, f"{label} changed meanwhile{detail}")
        if status in {401, 403}:
            return self._fail(AdapterError, f"refused our credentials (HTTP {status}){detail}")
        return self._fail(AdapterError, f"refused the request with HTTP {status}{detail}")

    def _wait_or_raise(
        self, attempt: int, wait: float | None, problem: str, *, rate_limited: bool = False
    ) -> int:
        """Sleep before the next attempt, or raise when attempts or the deadline run out."""
        if attempt + 1 >= self.retry.attempts:
            raise self._fail(AdapterError, f"{problem}, {self.retry.attempts} attempts")
        delay = wait if wait is not None else self.retry.backoff(attempt)
        if delay > self._left():
            hint = f"; retry in {round(delay)} s" if rate_limited else ""
            raise self._fail(AdapterError, f"{problem}, and no time left to retry before the deadline{hint}")
        self.sleep(delay)
        return attempt + 1
