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
import statistics
import subprocess
import sys
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
    runtime.invoke = timed_invoke  # type: ignore[assignment]
    OfflineProvider.create = model.wrap(OfflineProvider.create)  # type: ignore[method-assign]
    botocore.client.BaseClient._make_api_call = api.wrap(botocore.client.BaseClient._make_api_call)  # type: ignore[method-assign]
    BotocoreStubber.process_request = emulator.wrap(BotocoreStubber.process_request)  # type: ignore[method-assign]
    SlackClient.api_call = slack.wrap(SlackClient.api_call)  # type: ignore[method-assign]

    slept = [0.0]

    def sleep(seconds: float) -> None:
        slept[0] += seconds
        time.sleep(seconds)

    wall_per_ticket: list[float] = []
    end_to_end: dict[str, list[float]] = collections.defaultdict(list)
    cpu_per_ticket: list[float] = []
    by_outcome: dict[str, list[collections.Counter[str]]] = collections.defaultdict(list)
    out = sys.stdout
    # The handlers print metrics (EMF) and logs to stdout as on Lambda; keep them out of the report.
    quiet = open(os.devnull, "w")  # noqa: SIM115
    sys.stdout = quiet
    try:
        with EmbeddedAws(parameters={"LogLevel": "ERROR"}) as stack:
            boto3._get_default_session().events.register(
                "before-call",
                lambda model, **_: calls.update([f"{model.service_model.service_name}.{model.name}"]),
            )
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
    control = totals["handlers"][0] - totals["model"][0]
    moto_s = totals["emulator"][0]
    client_s = totals["api"][0] - moto_s
    slack_s = totals["slack"][0]
    ours = control - totals["api"][0] - slack_s
    print(
        f"wall time: {totals['handlers'][0] - totals['model'][0]:.1f} s control plane, "
        f"{totals['model'][0]:.1f} s offline model, {totals_slept:.1f} s the bench's sleeps between polls, "
        f"{wall - totals['handlers'][0] - totals_slept:.1f} s polling queues and reading sessions (Lambda's and the bench's share)"
    )
    for outcome, seconds in sorted(end_to_end.items()):
        print(f"  end to end, {outcome:<26} median {median_ms(seconds):.0f} ms (n={len(seconds)})")
    print(f"where the control-plane time goes ({control:.1f} s wall in handlers, model excluded):")
    for label, seconds in (
        ("moto (the emulated AWS services)", moto_s),
        ("botocore client (serialize, sign, parse)", client_s),
        ("fake Slack Web API (HTTP on 127.0.0.1)", slack_s),
        ("our code and its libraries", ours),
    ):
        print(f"  {label:<44} {seconds:7.1f} s  {seconds / control * 100:5.1f}%")
    print(
        "calls per ticket outside the functions (the event source mappings' polling, the bench's reads): "
        + ", ".join(f"{op} {count / n:.1f}" for op, count in harness.most_common())
    )
    print("AWS calls per ticket by outcome (per service.operation: mean per ticket):")
    for outcome, counters in sorted(by_outcome.items()):
        totals_per = [sum(c.values()) for c in counters]
        print(
            f"  {outcome:<26} median {statistics.median(totals_per):.0f} calls "
            f"(mean {statistics.mean(totals_per):.1f}, n={len(counters)})"
        )
        merged: collections.Counter[str] = collections.Counter()
        for c in counters:
            merged.update(c)
        for op, count in sorted(merged.items(), key=lambda kv: (-kv[1], kv[0])):
            print(f"      {op:<40} {count / len(counters):5.2f}")
    if not args.no_imports:
        print("cold import (median of paired fresh interpreters):", flush=True)
        subprocess.run([sys.executable, str(ROOT / "bench" / "import_time.py"), "--runs", "5"], check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
