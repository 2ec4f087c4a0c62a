"""LazyTracer: no Tracer (nor X-Ray SDK) where tracing is off; in Lambda with tracing on, one Tracer built on
first call that patches only the modules our outbound calls go through."""

from __future__ import annotations

from typing import Any

import aws_lambda_powertools
import pytest
from support_agent.observability import TRACED_MODULES, LazyTracer, tracing_enabled


class RecordingTracer:
    """Stands in for Powertools' Tracer: records how it was built and what it wrapped."""

    built: list[dict[str, Any]] = []

    def __init__(self, **options: Any) -> None:
        self.built.append(options)
        self.wrapped: list[str] = []

    def capture_lambda_handler(self, fn: Any) -> Any:
        def traced(*args: Any, **kwargs: Any) -> Any:
            return ("traced", fn(*args, **kwargs))

        return traced

    capture_method = capture_lambda_handler


def increment(event: dict[str, int]) -> int:
    return event["n"] + 1


def done() -> str:
    return "done"


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> type[RecordingTracer]:
    RecordingTracer.built = []
    monkeypatch.setattr(aws_lambda_powertools, "Tracer", RecordingTracer)
    return RecordingTracer


def test_disabled_tracing_builds_no_tracer(
    monkeypatch: pytest.MonkeyPatch, recording: type[RecordingTracer]
) -> None:
    monkeypatch.setenv("LAMBDA_TASK_ROOT", "/var/task")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    lazy = LazyTracer()
    handler: Any = lazy.capture_lambda_handler(increment)
    method: Any = lazy.capture_method(done)

    assert not tracing_enabled()
    assert handler({"n": 1}) == 2
    assert method() == "done"
    assert recording.built == []


def test_outside_lambda_builds_no_tracer(
    monkeypatch: pytest.MonkeyPatch, recording: type[RecordingTracer]
) -> None:
    monkeypatch.delenv("LAMBDA_TASK_ROOT", raising=False)
    monkeypatch.delenv("POWERTOOLS_TRACE_DISABLED", raising=False)

    assert LazyTracer().capture_method(done)() == "done"
    assert recording.built == []


def test_enabled_tracing_builds_one_tracer_on_first_call(
    monkeypatch: pytest.MonkeyPatch, recording: type[RecordingTracer]
) -> None:
    monkeypatch.setenv("LAMBDA_TASK_ROOT", "/var/task")
    monkeypatch.delenv("POWERTOOLS_TRACE_DISABLED", raising=False)
    monkeypatch.delenv("AWS_SAM_LOCAL", raising=False)
    lazy = LazyTracer()
    handler: Any = lazy.capture_lambda_handler(increment)
    method: Any = lazy.capture_method(done)
    assert recording.built == []  # nothing at decoration (import) time

    assert tracing_enabled()
    assert handler({"n": 1}) == ("traced", 2)
    assert handler({"n": 2}) == ("traced", 3)
    assert method() == ("traced", "done")
    assert recording.built == [{"patch_modules": TRACED_MODULES}]
    assert set(TRACED_MODULES) == {"botocore", "httplib"}
