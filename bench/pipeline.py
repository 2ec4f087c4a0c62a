"""The whole pipeline on the embedded runtime with the offline provider: N tickets through intake, the
agent step, the approval workflow, the notifier and Slack decisions, one after another.

Prints tickets per second; control-plane time per ticket (the handlers' wall time, the model excluded):
median, p95, and the medians of the first and the last W tickets with their ratio (a ratio above 1 means
the cost per ticket grows with what is stored); where that time goes (moto, the botocore client, the
fake Slack Web API, our code and its libraries); AWS calls per ticket by outcome and by service and
operation; and each handler's cold import time next to `import boto3`.

The machine may be shared: wall-clock figures move with its load, so the main thread's CPU time in the
handlers is printed next to them.

Usage: python bench/pipeline.py [-n 1000] [--window 100] [--no-imports]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.client
from moto.core.botocore_stubber import BotocoreStubber
from slack_sdk.web.base_client import BaseClient as SlackClient
from support_agent import aws
from support_agent.agent.llm import ModelRequest, ModelResponse, Usage
from support_agent.agent.offline import OfflineProvider
from support_agent_local import functions, runtime, slack_requests
from support_agent_local.demo import BUNDLED, load_tickets
from support_agent_local.emulator import EmbeddedAws
from support_agent_local.events import signed_webhook_event

ROOT = Path(__file__).resolve().parents[1]
TERMINAL = {"responded", "handoff", "closed"}


class Clock:
    """Seconds spent (wall, and the main thread's CPU) inside wrapped calls made on the main thread (and,
    with `within`, only while that clock is running)."""

    def __init__(self, within: Clock | None = None) -> None:
        self.wall = 0.0
        self.cpu = 0.0
        self.within = within
        self._depth = 0

    @contextlib.contextmanager
    def timing(self) -> Iterator[None]:
        if (
            threading.current_thread() is not threading.main_thread()
            or self._depth
            or (self.within is not None and not self.within._depth)
        ):
            yield
            return
        self._depth += 1
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            self.wall += time.perf_counter() - wall
            self.cpu += time.thread_time() - cpu
            self._depth -= 1

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.timing():
                return fn(*args, **kwargs)

        return timed

    def snapshot(self) -> tuple[float, float]:
        return self.wall, self.cpu


def raise_session_budget(tickets: int, folder: Path) -> None:
    """Functions read a copy of their policy whose sessions-per-day budget fits every ticket of the run (with
    the shipped budget, tickets past it are handed off at intake, and the last ones would not be like the
    first)."""
    real = EmbeddedAws.function_environment
    copies: dict[str, str] = {}

    def environment(self: EmbeddedAws, logical_id: str) -> dict[str, str]:
        env = real(self, logical_id)
        original = env.get("POLICY_FILE")
        if original:
            if original not in copies:
                text = Path(original).read_text(encoding="utf-8")
                raised, count = re.subn(
                    r"(max_sessions_per_day:\s*)\d+", lambda m: f"{m.group(1)}{2 * tickets}", text
                )
                if count != 1:
                    raise SystemExit(f"{original}: no budget.max_sessions_per_day to raise")
                copy = folder / f"{len(copies)}-{Path(original).name}"
                copy.write_text(raised, encoding="utf-8")
                copies[original] = str(copy)
            env["POLICY_FILE"] = copies[original]
        return env

    EmbeddedAws.function_environment = environment  # type: ignore[method-assign]


def print_cache_share(usages: dict[int, list[Usage]]) -> None:
    """Share of input tokens read from the prompt cache: per call from each session's second call on."""

    def share(u: Usage) -> float:
        whole = u.input_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens
        return u.cache_read_input_tokens / whole if whole else 0.0

    first = [calls[0] for calls in usages.values() if calls]
    later = [u for calls in usages.values() for u in calls[1:]]
    if not later:
        print("prompt cache: no session made a second model call")
        return
    shares = sorted(share(u) for u in later)
    read = sum(u.cache_read_input_tokens for u in later)
    whole = sum(u.input_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens for u in later)
    print(
        f"prompt cache (offline provider, simulated; tokens = characters/4): {len(later)} calls after a "
        f"session's first: read share median {statistics.median(shares):.0%}, min {shares[0]:.0%}, "
        f"p10 {shares[len(shares) // 10]:.0%}, all tokens {read / whole:.0%}; "
        f"calls at >= 80%: {sum(s >= 0.8 for s in shares) / len(shares):.0%}"
    )
    print(
        f"  first calls ({len(first)}): read share median {statistics.median(share(u) for u in first):.0%} "
        f"(tools + system prompt from earlier sessions); mean input "
        f"{statistics.mean(u.input_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens for u in first):.0f} tokens"
    )


def inside_step_functions() -> bool:
    """The current call is made by the emulated state machine (a service integration), not a function."""
    frame = sys._getframe(1)
    while frame is not None:
        if "moto/stepfunctions" in frame.f_code.co_filename:
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def tables_of(params: dict[str, Any]) -> set[str]:
    """The DynamoDB tables one call's parameters name (none for other services)."""
    found = {params["TableName"]} if "TableName" in params else set()
    for item in params.get("TransactItems", []):
        found.update(op["TableName"] for op in item.values() if isinstance(op, dict) and "TableName" in op)
    found.update(params.get("RequestItems", {}))
    return found


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000 if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=1000, help="tickets (default 1000)")
    parser.add_argument("--window", type=int, default=100, help="first/last window size (default 100)")
    parser.add_argument("--no-imports", action="store_true", help="skip the cold import figures")
    args = parser.parse_args()
    window = max(1, min(args.window, args.n // 2 or 1))
    tickets = load_tickets(BUNDLED)
    calls: collections.Counter[str] = collections.Counter()

    # Where the handlers' time goes. Each clock counts the main thread only (the state machines' own
    # threads call SQS in the background) and is not re-entered; the inner ones count only inside handlers
    # (the poller's and the bench's own calls are not the control plane's).
    handlers = Clock()
    model, api, emulator, slack = (Clock(within=handlers) for _ in range(4))
    real_invoke = functions.invoke
    timed_invoke = handlers.wrap(real_invoke)
    functions.invoke = timed_invoke  # type: ignore[assignment]
    runtime.invoke = timed_invoke  # type: ignore[assignment,attr-defined]
    # Every model call's usage, by ticket (the offline provider simulates the prompt cache, see
    # support_agent.agent.prompt_cache): the cache-read share of input tokens from a session's second call.
    usages: dict[int, list[Usage]] = collections.defaultdict(list)
    current = [0]
    real_create = OfflineProvider.create

    def create(self: OfflineProvider, request: ModelRequest) -> ModelResponse:
        response = real_create(self, request)
        usages[current[0]].append(response.usage)
        return response

    OfflineProvider.create = model.wrap(create)  # type: ignore[method-assign]
    botocore.client.BaseClient._make_api_call = api.wrap(botocore.client.BaseClient._make_api_call)  # type: ignore[attr-defined]
    BotocoreStubber.process_request = emulator.wrap(BotocoreStubber.process_request)  # type: ignore[method-assign]
    SlackClient.api_call = slack.wrap(SlackClient.api_call)  # type: ignore[method-assign]

    slept = [0.0]

    def sleep(seconds: float) -> None:
        slept[0] += seconds
        time.sleep(seconds)

    wall_per_ticket: list[float] = []
    outcomes: list[str] = []
    end_to_end: dict[str, list[float]] = collections.defaultdict(list)
    cpu_per_ticket: list[float] = []
    by_outcome: dict[str, list[collections.Counter[str]]] = collections.defaultdict(list)
    policies = tempfile.TemporaryDirectory()
    raise_session_budget(args.n, Path(policies.name))
    out = sys.stdout
    # The handlers print metrics (EMF) and logs to stdout as on Lambda; keep them out of the report.
    quiet = open(os.devnull, "w")  # noqa: SIM115
    sys.stdout = quiet
    try:
        with EmbeddedAws(parameters={"LogLevel": "ERROR"}) as stack:
            backend_table = stack.ref("EmbeddedDataTable")

            def count(model: Any, params: dict[str, Any], **_: Any) -> None:
                # A call on the embedded data table is the sample helpdesk, CRM or billing (Zendesk, your
                # customer API, Stripe when deployed): counted apart from the control plane's. The
                # approval workflow's own sends (moto runs the state machine) are Step Functions' calls.
                part = (
                    "workflow"
                    if inside_step_functions()
                    else "backend"
                    if tables_of(params) == {backend_table}
                    else "control"
                )
                calls.update([f"{part} {model.service_model.service_name}.{model.name}"])

            boto3._get_default_session().events.register("before-parameter-build", count)
            aws.reset_clients()
            checker = boto3.session.Session().client("dynamodb", region_name="us-east-1")  # not counted
            poller = runtime.Poller(stack)
            harness: collections.Counter[str] = (
                collections.Counter()
            )  # event source mappings' and bench's calls
            for client in (checker, poller.sqs):
                client.meta.events.register(
                    "before-call",
                    lambda model, **_: harness.update([f"{model.service_model.service_name}.{model.name}"]),
                )
            secret = stack.secret("WebhookSecretName")["generic"]
            signing = stack.secret("SlackSecretName")["signing_secret"]
            started_all, cpu_all = time.perf_counter(), time.process_time()
            totals_before = {c: c.snapshot() for c in (handlers, model, api, emulator, slack)}
            for i in range(args.n):
                current[0] = i
                ticket = tickets[i % len(tickets)]
                before_calls = calls.copy()
                h0, m0, t0 = handlers.snapshot(), model.snapshot(), time.perf_counter()
                payload = {
                    "event_id": f"bench-{i}",
                    "ticket": {
                        "id": f"B-{i}",
                        "subject": ticket["subject"],
                        "body": ticket["body"],
                        "requester": {"email": ticket["requester_email"]},
                        **({"customer_id": ticket["customer_id"]} if ticket.get("customer_id") else {}),
                    },
                }
                event = signed_webhook_event("generic", secret, payload)
                with stack.environment_of("IntakeFunction"):
                    sid = json.loads(timed_invoke("intake", event)["body"])["session_id"]
                decided = False
                deadline = time.monotonic() + 30
                state = ""
                while time.monotonic() < deadline:
                    poller.poll_once()
                    item = checker.get_item(
                        TableName=stack.ref("SessionsTable"),
                        Key={"pk": {"S": f"SESSION#{sid}"}, "sk": {"S": "SESSION"}},
                    )["Item"]
                    state = item["state"]["S"]
                    if state in TERMINAL:
                        break
                    if state == "awaiting_approval" and not decided:
                        approval = checker.get_item(
                            TableName=stack.ref("SessionsTable"),
                            Key={
                                "pk": {"S": f"APPROVAL#{item['approval_id']['S']}"},
                                "sk": {"S": "APPROVAL"},
                            },
                        )["Item"]
                        if "slack_ts" not in approval:
                            sleep(0.005)
                            continue
                        choice = ticket.get("decision") or {"action": "approve"}
                        if choice["action"] in {"deny", "partial", "reply_manually"}:
                            payload = slack_requests.view_submission(
                                item["approval_id"]["S"], choice["action"], choice.get("value", "")
                            )
                        else:
                            payload = slack_requests.block_action(item["approval_id"]["S"], "approve")
                        with stack.environment_of("SlackInteractionFunction"):
                            timed_invoke("slack_interaction", slack_requests.signed_event(payload, signing))
                        decided = True
                    sleep(0.002)
                outcome = f"{state}{' after approval' if decided else ''}"
                by_outcome[outcome].append(calls - before_calls)
                end_to_end[outcome].append(time.perf_counter() - t0)
                outcomes.append(outcome)
                h1, m1 = handlers.snapshot(), model.snapshot()
                wall_per_ticket.append((h1[0] - h0[0]) - (m1[0] - m0[0]))
                cpu_per_ticket.append((h1[1] - h0[1]) - (m1[1] - m0[1]))
                if (i + 1) % window == 0:
                    print(
                        f"  {i + 1} tickets, {time.perf_counter() - started_all:.0f} s; "
                        f"last {window}: control-plane median {median_ms(wall_per_ticket[-window:]):.0f} ms "
                        f"(main-thread CPU {median_ms(cpu_per_ticket[-window:]):.0f} ms)",
                        file=out,
                        flush=True,
                    )
            wall = time.perf_counter() - started_all
            cpu = time.process_time() - cpu_all
            totals_slept = slept[0]
            totals = {
                name: (c.snapshot()[0] - totals_before[c][0], c.snapshot()[1] - totals_before[c][1])
                for name, c in (
                    ("handlers", handlers),
                    ("model", model),
                    ("api", api),
                    ("emulator", emulator),
                    ("slack", slack),
                )
            }
    finally:
        sys.stdout = out
        quiet.close()
        policies.cleanup()

    n = args.n
    print(f"tickets: {n} in {wall:.1f} s → {n / wall:.1f} tickets/s (sequential, one process, moto)")
    print(f"process CPU: {cpu / n * 1000:.0f} ms per ticket → {n / cpu:.1f} tickets per CPU-second")
    ordered = sorted(wall_per_ticket)
    print(
        f"control-plane time per ticket (handlers, model excluded): median {median_ms(ordered):.0f} ms, "
        f"p95 {ordered[int(0.95 * (len(ordered) - 1))] * 1000:.0f} ms"
    )
    for label, series in (("wall", wall_per_ticket), ("main-thread CPU", cpu_per_ticket)):
        first, last = median_ms(series[:window]), median_ms(series[-window:])
        print(
            f"control-plane {label}: first {window} median {first:.0f} ms, last {window} median {last:.0f} ms, "
            f"last/first {last / first:.2f}"
        )
    for label, part in (("first", outcomes[:window]), ("last", outcomes[-window:])):
        mix = ", ".join(f"{k} {v}" for k, v in sorted(collections.Counter(part).items()))
        print(f"  outcomes of the {label} {window}: {mix}")

    def split(i: int) -> list[tuple[str, float]]:
        """Control-plane seconds by part: i=0 wall, i=1 the main thread's CPU."""
        control = totals["handlers"][i] - totals["model"][i]
        return [
            ("moto (the emulated AWS services)", totals["emulator"][i]),
            ("botocore client (serialize, sign, parse)", totals["api"][i] - totals["emulator"][i]),
            ("fake Slack Web API (HTTP on 127.0.0.1)", totals["slack"][i]),
            ("our code and its libraries", control - totals["api"][i] - totals["slack"][i]),
            ("control plane (handlers, model excluded)", control),
        ]

    print(
        f"wall time: {totals['handlers'][0] - totals['model'][0]:.1f} s control plane, "
        f"{totals['model'][0]:.1f} s offline model, {totals_slept:.1f} s the bench's sleeps between polls, "
        f"{wall - totals['handlers'][0] - totals_slept:.1f} s polling queues and reading sessions (Lambda's share and the bench's)"
    )
    for outcome, durations in sorted(end_to_end.items()):
        print(f"  end to end, {outcome:<26} median {median_ms(durations):.0f} ms (n={len(durations)})")
    print("where the control-plane time goes (wall; the main thread's CPU):")
    wall_split, cpu_split = split(0), split(1)
    wall_total, cpu_total = wall_split[-1][1], cpu_split[-1][1]
    for (label, w), (_, c) in zip(wall_split, cpu_split, strict=True):
        print(
            f"  {label:<44} {w:7.1f} s {w / wall_total * 100:5.1f}%;  {c:7.1f} s {c / cpu_total * 100:5.1f}%"
        )
    print(
        "calls per ticket outside the functions (the event source mappings' polling, the bench's reads): "
        + ", ".join(f"{op} {count / n:.1f}" for op, count in harness.most_common())
    )
    print(
        "AWS calls per ticket by outcome, whole pipeline (control: the functions' calls to sessions, "
        "budgets, audit, queues and the workflow; backend: the embedded helpdesk/CRM/billing table, HTTP "
        "APIs when deployed; workflow: the state machine's own sends); per part, service.operation: mean "
        "per ticket:"
    )
    for outcome, counters in sorted(by_outcome.items()):
        totals_per = [sum(c.values()) for c in counters]
        parts = {
            part: statistics.median(sum(v for k, v in c.items() if k.startswith(part)) for c in counters)
            for part in ("control", "backend", "workflow")
        }
        print(
            f"  {outcome:<26} median {statistics.median(totals_per):.0f} calls: functions' control plane "
            f"{parts['control']:.0f}, backends {parts['backend']:.0f}, Step Functions' own "
            f"{parts['workflow']:.0f} (mean {statistics.mean(totals_per):.1f}, n={len(counters)})"
        )
        merged: collections.Counter[str] = collections.Counter()
        for counter in counters:
            merged.update(counter)
        for op, count in sorted(merged.items(), key=lambda kv: (-kv[1], kv[0])):
            print(f"      {op:<40} {count / len(counters):5.2f}")
    print_cache_share(usages)
    if not args.no_imports:
        print("cold import (median of paired fresh interpreters):", flush=True)
        subprocess.run([sys.executable, str(ROOT / "bench" / "import_time.py"), "--runs", "5"], check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
