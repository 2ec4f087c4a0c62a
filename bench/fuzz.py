"""Fuzz both HTTP routes: generated requests (webhooks generic/zendesk/unknown, Slack clicks and modal
submissions; well-formed, mutated, deeply nested, binary, oversized; signed right, unsigned, forged,
stale, malformed timestamps) through three ways in:

1. the services (IntakeService, SlackEndpoint) on the in-memory fakes,
2. the real Lambda handlers on the embedded stack (moto, provisioned from template.yaml),
3. HTTP through `support-agent serve`'s server on 127.0.0.1 (same stack, queue pollers off so the state
   stays still between requests).

Every answer is counted by status class. Must be 0: answers 5xx, dropped connections, forged requests
accepted, and state changes from refusals (a refused webhook may add exactly its one audit entry, a
refused Slack request nothing). Bounded: -n requests (default 10,000) and --max-seconds.

Usage: python bench/fuzz.py [-n 10000] [--seed 7] [--max-seconds 600]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import io
import json
import random
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3
from support_agent.agent.offline import OfflineProvider
from support_agent.intake.service import IntakeService
from support_agent.models import NotifyMessage
from support_agent.rules.audit import AuditDraft, AuditEntry, verify
from support_agent.rules.policy import load_policy
from support_agent_local.emulator import LOCAL_SECRETS, EmbeddedAws
from support_agent_local.events import invoke_sample
from support_agent_local.functions import invoke
from support_agent_local.fuzzing import (
    REFUSAL_ENTRY,
    REJECTIONS,
    AwsWrites,
    Fuzzer,
    FuzzRequest,
    refusal_writes,
)
from support_agent_local.memory import (
    MemoryAuditLog,
    MemoryDailyBudget,
    MemoryQueue,
    MemorySessionStore,
    MemoryWorld,
)
from support_agent_local.runtime import Poller

ROOT = Path(__file__).resolve().parents[1]
WEBHOOK_SECRETS = LOCAL_SECRETS["WebhookSecretName"]
SLACK_SECRET = LOCAL_SECRETS["SlackSecretName"]["signing_secret"]
REFUND = "We had a 3-day outage in March and the service was down. I want a refund of the $199 March invoice."


class Tally:
    def __init__(self) -> None:
        self.by_way: dict[str, Counter[str]] = {}
        self.problems: Counter[str] = Counter()
        self.examples: dict[str, str] = {}
        self.statuses: Counter[tuple[str, int | None]] = Counter()
        self.refusal_entries = 0  # written on the stack, where the audit table is checked at the end

    def count(self, way: str, request: FuzzRequest, status: int | None, problems: list[str]) -> None:
        klass = "dropped" if status is None else f"{status // 100}xx"
        self.statuses[(request.route, status)] += 1
        self.by_way.setdefault(way, Counter())[klass] += 1
        if status is not None and status >= 500:
            problems = [*problems, "5xx"]
        if status is None:
            problems = [*problems, "dropped connection"]
        if request.forged and status is not None and status < 300:
            problems = [*problems, "forged request accepted"]
        for problem in problems:
            self.problems[problem] += 1
            self.examples.setdefault(
                problem, f"{way} {request.route} {request.kind} {request.encoding} → {status}"
            )

    def total(self, klass: str | None = None) -> int:
        return sum(c[klass] if klass else sum(c.values()) for c in self.by_way.values())


def refusal_problems(request: FuzzRequest, status: int, before: Any, after: Any) -> list[str]:
    """What a refusal (4xx) changed beyond what it may: one audit entry in a new chain for a webhook."""
    if not 400 <= status < 500:
        return []
    if before["other"] != after["other"]:
        changed = sorted(k for k in before["other"] if before["other"][k] != after["other"][k])
        return [f"state change from a refusal ({', '.join(changed)})"]
    allowed = 1 if request.route == "webhook" else 0
    if after["rejections"] - before["rejections"] != allowed:
        return [
            f"refusal wrote {after['rejections'] - before['rejections']} audit entries (allowed {allowed})"
        ]
    return []


# --- 1. services on the in-memory fakes -------------------------------------------------------------------


class Secrets:
    def get_json(self, name: str) -> dict[str, Any]:
        return dict(WEBHOOK_SECRETS)


class CountingAudit(MemoryAuditLog):
    """The in-memory trail, counting refusal entries and the rest as they are written."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    def extend(self, session_id: str, drafts: list[AuditDraft]) -> list[AuditEntry]:
        self.counts["rejections" if session_id.startswith(REJECTIONS) else "other"] += len(drafts)
        return super().extend(session_id, drafts)


def fakes(fuzzer: Fuzzer, n: int, tally: Tally, deadline: float) -> None:
    policy = load_policy(ROOT / "policies" / "acme-support.yaml")
    world = MemoryWorld(policy, audit=CountingAudit(), signing_secret=SLACK_SECRET)
    audit = CountingAudit()
    sessions = MemorySessionStore()
    intake = IntakeService(
        policy=policy,
        sessions=sessions,
        budget=MemoryDailyBudget(sessions),
        audit=audit,
        queue=MemoryQueue(),
        secrets=Secrets(),
        webhook_secret_name="webhooks",
    )
    endpoint = world.endpoint()

    def state() -> dict[str, Any]:
        approvals = {k: v.model_dump_json() for k, v in world.approvals.items.items()}
        return {
            "rejections": audit.counts["rejections"],
            "other": {
                "sessions": len(intake.sessions.items) + len(world.sessions.items),
                "budget": dict(intake.budget.days),
                "agent queue": len(intake.queue.sent) + len(world.agent_queue.sent),
                "audit": audit.counts["other"] + sum(world.audit.counts.values()),  # type: ignore[attr-defined]
                "approvals": _digest(approvals),
                "workflow": len(world.workflow.answers),
                "slack": len(world.slack.calls),
            },
        }

    for i in range(n):
        if time.monotonic() > deadline:
            break
        if i % 500 == 0:  # a fresh pending approval now and then, so signed clicks can decide
            fuzzer.approval_ids = [_waiting(world), "apr_0000000000000000000"]
        request = fuzzer.request()
        before = state()
        raw, is_base64 = request.event_body()
        try:
            if request.route == "webhook":
                status = intake.receive_encoded(
                    request.source, request.headers, raw, is_base64, f"fz-{i}"
                ).status
            else:
                status = endpoint.handle_encoded(request.headers, raw, is_base64).status
        except Exception as exc:
            tally.count("services on fakes", request, 500, [f"exception {type(exc).__name__}"])
            continue
        tally.count("services on fakes", request, status, refusal_problems(request, status, before, state()))


def _waiting(world: MemoryWorld) -> str:
    """A ticket run until it waits on a person, its Slack message posted; the approval id."""
    sid = world.ticket(REFUND, subject="Refund for March", customer_id="cus_jane")
    world.runner(OfflineProvider()).start(sid)
    session = world.sessions.get(sid)
    if session is None or not session.approval_id:
        raise RuntimeError("the refund ticket should wait for an approval")
    message = NotifyMessage(
        type="request", session_id=sid, approval_id=session.approval_id, task_token=f"tok-{sid}"
    )
    world.notifier().handle(message)
    return session.approval_id


# --- 2. and 3. the embedded stack ------------------------------------------------------------------------


def handlers(
    stack: EmbeddedAws, writes: AwsWrites, requests: list[FuzzRequest], tally: Tally, deadline: float
) -> None:
    slack = stack.slack
    assert slack is not None
    for route, logical_id, function in (
        ("webhook", "IntakeFunction", "intake"),
        ("slack", "SlackInteractionFunction", "slack_interaction"),
    ):
        with stack.environment_of(logical_id):
            for request in (r for r in requests if r.route == route):
                if time.monotonic() > deadline:
                    break
                slack_before = len(slack.calls)
                try:
                    with writes.recording() as calls, contextlib.redirect_stdout(io.StringIO()):
                        status = int(invoke(function, request.event())["statusCode"])
                except Exception as exc:
                    tally.count("handlers on the stack", request, 500, [f"exception {type(exc).__name__}"])
                    continue
                problems = refusal_writes(request.route, status, calls, len(slack.calls) - slack_before)
                tally.refusal_entries += calls.count(REFUSAL_ENTRY)
                tally.count("handlers on the stack", request, status, problems)


def over_http(
    stack: EmbeddedAws, writes: AwsWrites, requests: list[FuzzRequest], tally: Tally, deadline: float
) -> None:
    """Through serve's HTTP server on 127.0.0.1 (its pollers are not started: nothing moves in between)."""
    from support_agent_local import serve

    slack = stack.slack
    assert slack is not None
    log = io.StringIO()
    api = serve.LocalApi(stack, "127.0.0.1", 0, out=log)
    server = threading.Thread(target=api.server.serve_forever, daemon=True)
    server.start()
    host, port = str(api.server.server_address[0]), int(api.server.server_address[1])
    original, serve.invoke = serve.invoke, writes.wrap(serve.invoke)  # type: ignore[attr-defined]
    rnd = random.Random(len(requests))
    try:
        for request in requests:
            if time.monotonic() > deadline:
                break
            # What HTTP can carry: header values as bytes, without line breaks.
            headers: dict[str, Any] = {
                k: v.replace("\r", " ").replace("\n", " ").encode("utf-8", "surrogatepass")
                for k, v in request.headers.items()
            }
            headers["content-type"] = rnd.choice(
                [request.content_type, "application/octet-stream", "text/plain; charset=utf-8"]
            )
            writes.last, slack_before = [], len(slack.calls)
            status = _post(host, port, "POST", quote(request.path, safe="/"), request.body, headers)
            problems = (
                refusal_writes(request.route, status, writes.last, len(slack.calls) - slack_before)
                if status
                else []
            )
            tally.count("HTTP through serve", request, status, problems)
            tally.refusal_entries += writes.last.count(REFUSAL_ENTRY)
        for method, path, body in (
            ("GET", "/nowhere", b""),
            ("PUT", "/webhooks/generic", b"{}"),
            ("DELETE", "/slack/interactions", b""),
            ("BREW", "/", b""),
        ):
            probe = FuzzRequest("webhook", path, "", {}, body, f"{method} probe", True)
            tally.count("HTTP through serve", probe, _post(host, port, method, path, body, {}), [])
        # A body past serve's limit is refused on its Content-Length, unread.
        probe = FuzzRequest("webhook", "/webhooks/generic", "generic", {}, b"", "oversized probe", True)
        tally.count("HTTP through serve", probe, _declare_only(host, port, 2 * 1024 * 1024), [])
    finally:
        serve.invoke = original  # type: ignore[attr-defined]
        api.server.shutdown()
        api.server.server_close()
    if "→ 500" in log.getvalue():
        print(log.getvalue(), file=sys.stderr)


def _post(host: str, port: int, method: str, path: str, body: bytes, headers: dict[str, Any]) -> int | None:
    """One request on its own connection; None when the connection drops without an answer."""
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def _declare_only(host: str, port: int, length: int) -> int | None:
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.putrequest("POST", "/webhooks/generic")
        conn.putheader("Content-Length", str(length))
        conn.endheaders()
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def reconcile(stack: EmbeddedAws, written: int) -> list[str]:
    """Once, from the table itself: the refusal entries the hook saw written are there, each the whole of
    its own chain, and every chain in the trail is intact."""
    trail = stack.audit()
    rejections: Counter[str] = Counter(
        e.session_id for e in trail.all_entries() if e.session_id.startswith(REJECTIONS)
    )
    problems = []
    if sum(rejections.values()) != written:
        problems.append(f"{sum(rejections.values())} refusal audit entries in the table, {written} written")
    if any(n != 1 for n in rejections.values()):
        problems.append("a refusal chain holds more than one entry")
    report = verify(trail)
    if not report.ok:
        problems.append(f"audit chains broken: {report.problems[:3]}")
    return problems


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=10_000, help="requests in all (default 10,000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--max-seconds", type=float, default=600.0, help="stop generating after this long")
    parser.add_argument(
        "--stack-share", type=float, default=0.2, help="share sent to the handlers on the stack"
    )
    parser.add_argument("--http-share", type=float, default=0.1, help="share sent over HTTP through serve")
    args = parser.parse_args()
    started = time.monotonic()
    deadline = started + args.max_seconds
    rnd = random.Random(args.seed)
    n_stack, n_http = int(args.n * args.stack_share), int(args.n * args.http_share)
    n_fakes = args.n - n_stack - n_http
    tally = Tally()

    fuzzer = Fuzzer(rnd, WEBHOOK_SECRETS, SLACK_SECRET)
    t0 = time.monotonic()
    fakes(fuzzer, n_fakes, tally, deadline)
    print(f"services on fakes: {tally.total()} requests in {time.monotonic() - t0:.1f} s", flush=True)

    with EmbeddedAws(parameters={"LogLevel": "ERROR"}) as stack:
        with contextlib.redirect_stdout(io.StringIO()):
            invoke_sample(stack, "agent_step_start_refund.json")  # one real pending approval, with its token
            Poller(stack).run_until_quiet(quiet_seconds=1.0, timeout=120)
        items = boto3.client("dynamodb").scan(TableName=stack.ref("SessionsTable"))["Items"]
        approvals = [i["pk"]["S"].split("#", 1)[1] for i in items if i["pk"]["S"].startswith("APPROVAL#")]
        fuzzer.approval_ids = [*approvals, "apr_0000000000000000000"]
        writes = AwsWrites(stack.ref("AuditTable")).start()
        before, t0 = tally.total(), time.monotonic()
        handlers(stack, writes, [fuzzer.request() for _ in range(n_stack)], tally, deadline)
        stack_done, t1 = tally.total() - before, time.monotonic()
        print(f"handlers on the stack: {stack_done} requests in {t1 - t0:.1f} s", flush=True)
        with contextlib.redirect_stdout(io.StringIO()):  # the handlers' metric lines (serve's threads)
            over_http(stack, writes, [fuzzer.request() for _ in range(n_http)], tally, deadline)
        http_done = tally.total() - before - stack_done
        print(f"HTTP through serve: {http_done} requests in {time.monotonic() - t1:.1f} s", flush=True)
        for problem in reconcile(stack, tally.refusal_entries):
            tally.problems[f"audit table: {problem}"] += 1
            tally.examples[f"audit table: {problem}"] = "after the stack phases"

    print()
    print(f"{'way in':<24}{'2xx':>8}{'4xx':>8}{'5xx':>6}{'dropped':>9}{'total':>8}")
    for way, counts in tally.by_way.items():
        print(
            f"{way:<24}{counts['2xx']:>8}{counts['4xx']:>8}{counts['5xx']:>6}{counts['dropped']:>9}{sum(counts.values()):>8}"
        )
    print(
        f"{'all':<24}{tally.total('2xx'):>8}{tally.total('4xx'):>8}{tally.total('5xx'):>6}"
        f"{tally.total('dropped'):>9}{tally.total():>8}"
    )
    print()
    for route in ("webhook", "slack"):
        answers = sorted((st, n) for (r, st), n in tally.statuses.items() if r == route and st is not None)
        print(f"{route} answers by status: " + ", ".join(f"{st}: {n}" for st, n in answers))
    print()
    refusal_changes = sum(v for k, v in tally.problems.items() if "refusal" in k)
    print(f"answered 5xx: {tally.total('5xx')}")
    print(f"dropped connections: {tally.total('dropped')}")
    print(f"state changes from refusals: {refusal_changes}")
    print(f"forged requests accepted: {tally.problems['forged request accepted']}")
    print(f"took {time.monotonic() - started:.1f} s (seed {args.seed})")
    for problem, count in tally.problems.most_common():
        print(f"  PROBLEM {problem}: {count} (e.g. {tally.examples[problem]})")
    ok = tally.total() >= min(args.n, 10_000) and not tally.problems
    if tally.total() < args.n:
        print(f"only {tally.total()} of {args.n} requests ran before --max-seconds")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
