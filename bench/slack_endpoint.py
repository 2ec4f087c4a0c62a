"""How fast the Slack interactive endpoint answers on the emulation: median and p95 over 50 signed
approve clicks on 50 pending approvals (real state machine executions, real task tokens), plus the Slack
Web API calls each kind of request makes.

Usage: python bench/slack_endpoint.py [-n 50]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from support_agent_local import slack_requests
from support_agent_local.emulator import EmbeddedAws
from support_agent_local.events import signed_webhook_event
from support_agent_local.functions import invoke
from support_agent_local.runtime import Poller


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=50)
    args = parser.parse_args()
    with EmbeddedAws(parameters={"LogLevel": "ERROR"}) as stack:
        assert stack.slack is not None
        secret = stack.secret("WebhookSecretName")["generic"]
        signing = stack.secret("SlackSecretName")["signing_secret"]
        sessions = []
        for i in range(args.n + 1):
            payload = {
                "event_id": f"click-{i}",
                "ticket": {
                    "id": f"S-{i}",
                    "subject": "Refund for March invoice",
                    "body": "We had an outage in March, the service was down. Please refund the March invoice.",
                    "requester": {"email": "jane.smith@example.com"},
                    "customer_id": "cus_jane",
                },
            }
            event = signed_webhook_event("generic", secret, payload)
            with stack.environment_of("IntakeFunction"):
                sessions.append(json.loads(invoke("intake", event)["body"])["session_id"])
        Poller(stack).run_until_quiet(quiet_seconds=1.0, timeout=300)
        repo = stack.sessions()
        approval_ids = [repo.get(s).approval_id for s in sessions]

        def click(payload: dict) -> tuple[float, list[str]]:
            before = len(stack.slack.calls)
            event = slack_requests.signed_event(payload, signing)
            with stack.environment_of("SlackInteractionFunction"):
                started = time.perf_counter()
                invoke("slack_interaction", event)
                took = time.perf_counter() - started
            return took, [name for name, _ in stack.slack.calls[before:]]

        # The handler's first request in this process: its import, settings, secret, clients and views.open
        # (the library is imported already by the functions that ran before it; see bench/import_time.py).
        first, _ = click(slack_requests.block_action(approval_ids[-1], "partial"))
        print(f"Slack endpoint, first request (opens a modal): {first * 1000:.0f} ms")
        times = []
        for approval_id in approval_ids[: args.n]:
            took, _ = click(slack_requests.block_action(approval_id, "approve"))
            times.append(took)
        times.sort()
        print(
            f"Slack endpoint, {args.n} signed approve clicks: median {statistics.median(times) * 1000:.0f} ms, "
            f"p95 {times[int(0.95 * (len(times) - 1))] * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms (Slack allows 3000 ms)"
        )
        last = approval_ids[-1]  # still pending: only the warm-up modal was opened on it
        paths = {
            "partial click (opens modal)": slack_requests.block_action(last, "partial"),
            "partial submission": slack_requests.view_submission(last, "partial", "$50"),
            "second click (already decided)": slack_requests.block_action(
                last, "approve", user="U0APPROVER2"
            ),
            "non-approver click": slack_requests.block_action(last, "approve", user="U0NOBODY"),
        }
        for label, payload in paths.items():
            _took, slack_calls = click(payload)
            print(f"  {label:<32} Slack API calls: {', '.join(slack_calls) or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
