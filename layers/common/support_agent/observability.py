"""Powertools Tracer, built when the handler first runs rather than when its module is imported.

Creating a Tracer loads the X-Ray SDK, which builds a botocore session for its sampler: about as much
again as importing boto3. Deferring it keeps a handler's import fast; the first invocation pays
instead (bench/import_time.py prints both), and warm invocations reuse the one Tracer.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

F = TypeVar("F", bound=Callable[..., Any])


class LazyTracer:
    """Decorators of Powertools' Tracer whose Tracer is created on first call."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._tracer: Tracer | None = None

    @property
    def tracer(self) -> Tracer:
        if self._tracer is None:
            from aws_lambda_powertools import Tracer

            self._tracer = Tracer(**self._options)
        return self._tracer

    def _lazy(self, fn: F, kind: str) -> F:
        wrapped: list[Callable[..., Any]] = []

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not wrapped:
                wrapped.append(getattr(self.tracer, kind)(fn))
            return wrapped[0](*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    def capture_lambda_handler(self, fn: F) -> F:
        """Tracer.capture_lambda_handler, applied on first call."""
        return self._lazy(fn, "capture_lambda_handler")

    def capture_method(self, fn: F) -> F:
        """Tracer.capture_method, applied on first call."""
        return self._lazy(fn, "capture_method")
