"""The whole pipeline on the embedded runtime with the offline provider: N tickets through intake, the
agent step, the approval workflow, the notifier and Slack decisions.

Prints tickets per second, median and p95 control-plane time per ticket (handler time, model excluded),
AWS calls per ticket by outcome, and each handler's cold import time next to `import boto3`.

Usage: python bench/pipeline.py [-n 200]
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
from support_agent import aws
from support_agent.agent.offline import OfflineProvider
from support_agent_local import functions, runtime, slack_requests
from support_agent_local.demo import BUNDLED, load_tickets
from support_agent_local.emulator import EmbeddedAws
from support_agent_local.events import signed_webhook_event

ROOT = Path(__file__).resolve().parents[1]
TERMINAL = {"responded", "handoff", "closed"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=200)
    args = parser.parse_args()
    tickets = load_tickets(BUNDLED)
    calls: collections.Counter[str] = collections.Counter()
    handler_seconds = [0.0]
    model_seconds = [0.0]

    real_invoke = functions.invoke

    def timed_invoke(name: str, event: dict[str, Any], timeout_s: int = 30) -> Any:
        started = time.perf_counter()
        try:
            return real_invoke(name, event, timeout_s)
        finally:
            handler_seconds[0] += time.perf_counter() - started

    real_create = OfflineProvider.create

    def timed_create(self: OfflineProvider, request: Any) -> Any:
        started = time.perf_counter()
        try:
            return real_create(self, request)
        finally:
            model_seconds[0] += time.perf_counter() - started

    functions.invoke = timed_invoke  # type: ignore[assignment]
    runtime.invoke = timed_invoke  # type: ignore[assignment]
    OfflineProvider.create = timed_create  # type: ignore[method-assign]

    per_ticket: list[float] = []
    by_outcome: dict[str, list[int]] = collections.defaultdict(list)
    with EmbeddedAws(parameters={"LogLevel": "ERROR"}) as stack:
        boto3._get_default_session().events.register(
            "before-call", lambda model, **_: calls.update([model.service_model.service_name])
        )
        aws.reset_clients()
        checker = boto3.session.Session().client("dynamodb", region_name="us-east-1")  # not counted
        poller = runtime.Poller(stack)
        secret = stack.secret("WebhookSecretName")["generic"]
        signing = stack.secret("SlackSecretName")["signing_secret"]
        started_all = time.perf_counter()
        for i in range(args.n):
            ticket = tickets[i % len(tickets)]
            before_calls, before_handler, before_model = (
                sum(calls.values()),
                handler_seconds[0],
                model_seconds[0],
            )
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
                        Key={"pk": {"S": f"APPROVAL#{item['approval_id']['S']}"}, "sk": {"S": "APPROVAL"}},
                    )["Item"]
                    if "slack_ts" not in approval:
                        time.sleep(0.005)
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
                time.sleep(0.002)
            outcome = f"{state}{' after approval' if decided else ''}"
            by_outcome[outcome].append(sum(calls.values()) - before_calls)
            per_ticket.append((handler_seconds[0] - before_handler) - (model_seconds[0] - before_model))
            if (i + 1) % 25 == 0:
                recent = sorted(per_ticket[-25:])
                print(
                    f"  {i + 1} tickets, {time.perf_counter() - started_all:.0f} s; last 25: median {statistics.median(recent) * 1000:.0f} ms",
                    flush=True,
                )
        wall = time.perf_counter() - started_all
    per_ticket.sort()
    print(
        f"tickets: {args.n} in {wall:.1f} s → {args.n / wall:.1f} tickets/s (sequential, one process, moto)"
    )
    print(
        f"control-plane time per ticket (handlers, model excluded): median {statistics.median(per_ticket) * 1000:.0f} ms, "
        f"p95 {per_ticket[int(0.95 * (len(per_ticket) - 1))] * 1000:.0f} ms"
    )
    for outcome, counts in sorted(by_outcome.items()):
        print(f"AWS calls per ticket, {outcome:<26} median {statistics.median(counts):.0f} (n={len(counts)})")
    print("cold import (median of paired fresh interpreters):")
    subprocess.run([sys.executable, str(ROOT / "bench" / "import_time.py"), "--runs", "5"], check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
