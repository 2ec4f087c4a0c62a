"""Powertools Tracer, built when the handler first runs rather than when its module is imported, and not
at all where tracing is off.

Creating a Tracer loads the X-Ray SDK (its recorder builds a botocore session for the sampler) even when
tracing is disabled, and its default patch_all() imports every library the SDK can patch that is installed
(requests, sqlite3, httpx, ...), used or not. So:

- where Powertools would disable tracing (POWERTOOLS_TRACE_DISABLED, or outside Lambda, or under SAM local),
  no Tracer is built: the decorators call the function as it is, which is what a disabled Tracer does;
- in Lambda with tracing on (template.yaml: Tracing: Active), the Tracer is built on first call and patches
  only what carries this project's outbound calls: botocore (every AWS API call) and httplib (http.client,
  under urllib and urllib3: Slack's Web API, Stripe, Zendesk, the customer API). anthropic's httpx2 is not
  patchable by the SDK, as before.

The first invocation pays for the Tracer instead of the import (bench/import_time.py prints both); a
SnapStart snapshot can hold it already (see support_agent.snapstart).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

F = TypeVar("F", bound=Callable[..., Any])

# X-Ray SDK patchers for the libraries this project's outbound calls go through.
TRACED_MODULES = ("botocore", "httplib")


def tracing_enabled() -> bool:
    """Whether a Tracer built now would trace: Powertools' own rule (POWERTOOLS_TRACE_DISABLED, then
    inside Lambda and not under SAM local); its module loads the X-Ray SDK only when a Tracer is built."""
    from aws_lambda_powertools.tracing.tracer import Tracer

    return not Tracer._is_tracer_disabled()


class LazyTracer:
    """Decorators of Powertools' Tracer whose Tracer is created on first call, and only if tracing is on."""

    def __init__(self, **options: Any) -> None:
        self._options = {"patch_modules": TRACED_MODULES, **options}
        self._tracer: Tracer | None = None

    @property
    def tracer(self) -> Tracer:
        if self._tracer is None:
            from aws_lambda_powertools import Tracer

            self._tracer = Tracer(**self._options)
        return self._tracer

    def prime(self) -> None:
        """Build the Tracer now if tracing is on (before a SnapStart snapshot)."""
        if tracing_enabled():
            _ = self.tracer

    def _lazy(self, fn: F, kind: str) -> F:
        wrapped: list[Callable[..., Any]] = []

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not wrapped:
                wrapped.append(getattr(self.tracer, kind)(fn) if tracing_enabled() else fn)
            return wrapped[0](*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    def capture_lambda_handler(self, fn: F) -> F:
        """Tracer.capture_lambda_handler, applied on first call (the function itself when tracing is off)."""
        return self._lazy(fn, "capture_lambda_handler")

    def capture_method(self, fn: F) -> F:
        """Tracer.capture_method, applied on first call (the function itself when tracing is off)."""
        return self._lazy(fn, "capture_method")
