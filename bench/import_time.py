"""Cold start of each handler next to `import boto3` alone, in paired fresh interpreters.

Two figures per handler, each the median of fresh interpreter runs and of ratios paired with a boto3 probe
run just before it (so that drift in machine load hits both alike):

- import: `import app` as Lambda does it (module `app`, the layer on the path, the function's environment
  from template.yaml set: a handler checks its settings when imported);
- first call: `import app` and the handler's first invocation with a sample event from events/, against
  the embedded emulation (moto, served over HTTP from this process: the probe imports nothing of it), with
  tracing as deployed (Tracing: Active, so the X-Ray SDK loads) unless --no-tracing. It includes the
  AWS and Slack calls of that request, over the loopback.

Usage: python bench/import_time.py [--runs N] [--no-tracing]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from support_agent_local.emulator import LOCAL_SECRETS, EmbeddedAws
from support_agent_local.events import invoke_sample, prepare, sample

ROOT = Path(__file__).resolve().parents[1]
LAYER = ROOT / "layers" / "common"

# The sample event each function's first call gets (its `after` events run first, in this process).
FIRST_EVENT = {
    "agent_step": "agent_step_start.json",
    "intake": "intake_webhook_generic.json",
    "notifier": "notifier_request.json",
    "slack_interaction": "slack_block_approve.json",
    "sweeper": "sweeper_schedule.json",
}

PROBE = """
import sys, time
sys.path[:0] = [{func!r}, {layer!r}]
t = time.perf_counter()
{stmt}
print(time.perf_counter() - t)
"""

# The handler's first call, with the attributes of Lambda's context that handlers and Powertools read.
FIRST_CALL = """import app
import json
class Context:
    function_name = "support-agent-probe"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:support-agent-probe"
    memory_limit_in_mb = 512
    aws_request_id = "probe"
    log_group_name = log_stream_name = ""
    def get_remaining_time_in_millis(self):
        return 30000
print("RESULT", json.dumps(app.lambda_handler(json.load(open({event!r})), Context())))"""

# What Lambda sets when the function is traced (Powertools and the X-Ray SDK read them).
TRACED = {
    "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
    "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
}


def cold_import(
    stmt: str, func_dir: Path, env: dict[str, str] | None = None, expect: dict[str, object] | None = None
) -> float:
    """Seconds one fresh interpreter spends on `stmt` (with the function's environment: a handler checks
    its settings when imported); `expect` is checked against the line the statement prints after RESULT."""
    code = PROBE.format(func=str(func_dir), layer=str(LAYER), stmt=stmt)
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=func_dir,
        env={**os.environ, **(env or {})},
    )
    lines = out.stdout.strip().splitlines()
    if expect is not None:
        result = json.loads(next(line for line in lines if line.startswith("RESULT "))[7:])
        if any(result.get(k) != v for k, v in expect.items()):
            raise RuntimeError(f"{func_dir.name} answered {result}, not {expect}")
    return float(lines[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def first_call(func_dir: Path, endpoint: str, tracing: bool, scratch: Path) -> float:
    """Seconds a fresh interpreter spends importing the handler and serving its sample event, on a new
    stack (so that every run takes the same path) whose earlier events ran in this process."""
    event = sample(FIRST_EVENT[func_dir.name])
    with EmbeddedAws() as stack:
        for before in event.spec.get("after", []):
            invoke_sample(stack, before)
        path = scratch / event.name
        path.write_text(json.dumps(prepare(event, LOCAL_SECRETS)))
        env = {
            **stack.function_environment(stack.function_for_code(f"functions/{func_dir.name}")),
            "AWS_ENDPOINT_URL": endpoint,
            "LAMBDA_TASK_ROOT": str(func_dir),
        }
        if tracing:
            env.update(TRACED)
            os.environ.pop("POWERTOOLS_TRACE_DISABLED", None)
        else:
            env["POWERTOOLS_TRACE_DISABLED"] = "1"
        return cold_import(FIRST_CALL.format(event=str(path)), func_dir, env, event.spec["expect"])


def environments(functions: list[Path]) -> dict[str, dict[str, str]]:
    """Each function's environment as the template sets it, inside Lambda (LAMBDA_TASK_ROOT)."""
    with EmbeddedAws() as stack:  # only for the names and addresses each function's environment holds
        return {
            d.name: {
                **stack.function_environment(stack.function_for_code(f"functions/{d.name}")),
                "LAMBDA_TASK_ROOT": str(d),
            }
            for d in functions
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--no-tracing", dest="tracing", action="store_false", help="first calls untraced")
    args = parser.parse_args()
    functions = sorted(d for d in (ROOT / "functions").iterdir() if (d / "app.py").exists())
    envs = environments(functions)
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    # The server shares moto's state with the stacks this process starts: each probe sees the current one.
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    names = [d.name for d in functions]
    took: dict[str, list[float]] = {n: [] for n in ["boto3", *names]}
    ratios: dict[str, list[float]] = {n: [] for n in names}
    first: dict[str, list[float]] = {n: [] for n in names}
    first_ratios: dict[str, list[float]] = {n: [] for n in names}
    try:
        with tempfile.TemporaryDirectory() as scratch:
            for _ in range(args.runs):
                for func_dir in functions:
                    name = func_dir.name
                    b = cold_import("import boto3", ROOT)
                    t = cold_import("import app", func_dir, envs[name])
                    f = first_call(func_dir, f"http://127.0.0.1:{port}", args.tracing, Path(scratch))
                    took["boto3"].append(b)
                    took[name].append(t)
                    ratios[name].append(t / b)
                    first[name].append(f)
                    first_ratios[name].append(f / b)
    finally:
        server.stop()
    print(f"{'import boto3 alone':<34} {statistics.median(took['boto3']) * 1000:7.1f} ms")
    for name in names:
        label = f"functions/{name}/app.py"
        print(
            f"{label:<34} import {statistics.median(took[name]) * 1000:7.1f} ms "
            f"({statistics.median(ratios[name]):.2f}x boto3);  first call "
            f"{statistics.median(first[name]) * 1000:7.1f} ms ({statistics.median(first_ratios[name]):.2f}x)"
            f"  [{FIRST_EVENT[name]}]"
        )
    print("ratios: medians of paired runs (each handler's probes right after a boto3 probe)")
    print(f"first calls traced as deployed (Tracing: Active): {'yes' if args.tracing else 'no'}")
    print(f"runs: {args.runs} fresh interpreters per figure; python {sys.version.split(maxsplit=1)[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
