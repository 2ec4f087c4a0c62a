"""Load and call Lambda handlers exactly as Lambda does: module `app` from functions/<name>/."""

from __future__ import annotations

import importlib.util
import sys
import time
import uuid
from dataclasses import dataclass, field
from functools import cache
from types import ModuleType
from typing import Any

from support_agent_local.template import PROJECT_ROOT, load_template

_LOADED: dict[str, ModuleType] = {}


def load_handler_module(name: str) -> ModuleType:
    """functions/<name>/app.py imported as module `app` (the layer, layers/common, is on sys.path)."""
    if name in _LOADED:
        return _LOADED[name]
    path = PROJECT_ROOT / "functions" / name / "app.py"
    if not path.exists():
        raise KeyError(f"no function {name!r} (expected {path})")
    layer = str(PROJECT_ROOT / "layers" / "common")
    if layer not in sys.path:
        sys.path.insert(0, layer)
    spec = importlib.util.spec_from_file_location("app", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get("app")
    sys.modules["app"] = module
    try:
        spec.loader.exec_module(module)
    finally:
        if previous is not None:
            sys.modules["app"] = previous
        else:
            sys.modules.pop("app", None)
    _LOADED[name] = module
    return module


@dataclass
class LambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int = 512
    timeout_ms: int = 30000
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = ""

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        """Counts down from the function's timeout, as Lambda's does (the agent plans by it)."""
        return max(0, self.timeout_ms - int((time.monotonic() - self.started) * 1000))


@cache
def template_timeout(name: str) -> int:
    """The Timeout template.yaml gives functions/<name> (or Globals' default)."""
    template = load_template()
    default = int(template.get("Globals", {}).get("Function", {}).get("Timeout", 3))
    for spec in template.get("Resources", {}).values():
        props = spec.get("Properties", {})
        if spec.get("Type") == "AWS::Serverless::Function" and str(props.get("CodeUri", "")).rstrip("/") == (
            f"functions/{name}"
        ):
            return int(props.get("Timeout", default))
    return default


def invoke(name: str, event: dict[str, Any], timeout_s: int | None = None) -> Any:
    """Call functions/<name>'s lambda_handler with `event` and a Lambda-like context (its template timeout)."""
    module = load_handler_module(name)
    seconds = template_timeout(name) if timeout_s is None else timeout_s
    context = LambdaContext(function_name=f"support-agent-{name}", timeout_ms=seconds * 1000)
    return module.lambda_handler(event, context)
