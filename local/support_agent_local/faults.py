"""Fault injection through the whole pipeline on the local runtime: one fault per row, two tickets each (a
refund that needs a person's approval, and an order question), Claude reached through the real SDK on the
strict Messages API stand-in, DynamoDB, SQS and Step Functions on moto, Slack on its stand-in.

Every row must end with each ticket answered or with a person (none left queued or running) and nothing
run twice (at most one refund per invoice, one public reply per ticket). A run killed mid-way is found
by the sweeper once its lease has run out. `python -m support_agent_local.faults` prints the table.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any

FaultSetup = Callable[["Rig"], None]
REFUND_TICKET = "intake_webhook_zendesk.json"
ORDER_TICKET = "intake_webhook_generic.json"
# Past every lease (360 s) and queue grace (15 min): what the sweeper finds then is really stuck.
SWEEP_AFTER = 15 * 60 + 1
SENDER_ATTEMPTS = 3


class Killed(BaseException):
    """Lambda stopping a run (timeout, out of memory): no handler in the function sees it."""


@dataclass
class ScriptedClaude:
    """The model's side of the conversation, with faults in front of it: `errors` are answered (status,
    message) before any turn; `delay` seconds pass before answering."""

    errors: list[tuple[int, str]] = field(default_factory=list)
    always: tuple[int, str] | None = None
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, body: dict[str, Any]) -> dict[str, Any]:
        from support_agent_local.messages_api import ApiError, tool_use

        with self.lock:
            error = self.always or (self.errors.pop(0) if self.errors else None)
        if error is not None:
            raise ApiError(*error)
        if self.delay:
            time.sleep(self.delay)
        first = body["messages"][0]["content"]
        text = first if isinstance(first, str) else json.dumps(first)
        refund = "refund" in text.lower()
        if len(body["messages"]) == 1:
            category = "refund_request" if refund else "order_status"
            classify = {"category": category, "confidence": 0.9, "sentiment": "neutral", "language": "en"}
            calls = [tool_use("classify_ticket", classify)]
            if refund:
                calls.append(tool_use("list_invoices", {}))
                args = {"invoice_id": "in_jane_2026_03", "amount_cents": 19900, "reason": "March outage"}
                calls.append(tool_use("issue_refund", args))
            else:
                calls.append(tool_use("list_orders", {}))
            return {"stop_reason": "tool_use", "content": calls}
        body_text = "Your refund is on its way." if refund else "Your order ORD-5001 ships this week."
        reply = {"body": body_text, "status": "solved"}
        return {"stop_reason": "tool_use", "content": [tool_use("reply_to_customer", reply)]}


@dataclass
class Rig:
    """One row's running system."""

    stack: Any
    api: Any
    poller: Any
    claude: ScriptedClaude
    undo: list[Callable[[], None]] = field(default_factory=list)

    def on_aws_call(self, service: str, operation: str, answer: Callable[[], Any | None]) -> None:
        """Answer `operation` with `answer()` instead of AWS while it returns a response (None: let it by)."""
        import boto3
        from support_agent import aws

        client = {"dynamodb": aws.dynamodb, "sqs": aws.sqs, "stepfunctions": aws.stepfunctions}[service]()
        event = f"before-send.{client.meta.service_model.service_id.hyphenize()}.{operation}"

        def handler(request: Any = None, **_: Any) -> Any:
            response = answer()
            if response is not None and request is not None:
                # botocore calls every before-send handler: point the request where moto's stub does not
                # answer, so the emulated service never sees a call that failed.
                request.url = "https://fault.invalid/"
            return response

        # The functions' clients are made anew on every environment switch: they copy the session's
        # handlers when they are made, so the fault goes on the session (and on the client made already).
        session = boto3._get_default_session()._session
        emitters: list[Any] = [session.get_component("event_emitter"), client.meta.events]
        for emitter in emitters:
            emitter.register_first(event, handler)
            self.undo.append(partial(emitter.unregister, event, handler))

    def patch(self, owner: Any, name: str, value: Any) -> None:
        """Replace an attribute for this row."""
        original = getattr(owner, name)
        setattr(owner, name, value)
        self.undo.append(lambda: setattr(owner, name, original))


def error_response(status: int, code: str, message: str, extra: dict[str, Any] | None = None) -> Any:
    """A botocore HTTP response carrying an AWS JSON error (what the service would send)."""
    from botocore.awsrequest import AWSResponse, HTTPHeaders

    body = json.dumps(
        {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message, **(extra or {})}
    )

    class Raw:
        def stream(self) -> Iterator[bytes]:
            yield body.encode()

    headers = HTTPHeaders()
    headers["x-amzn-ErrorType"] = code
    headers["Content-Type"] = "application/x-amz-json-1.0"
    return AWSResponse("https://aws.local/", status, headers, Raw())


def times(n: int, make: Callable[[], Any]) -> Callable[[], Any | None]:
    """An answer for the first `n` calls, then the real service."""
    left = [n]
    lock = threading.Lock()

    def answer() -> Any | None:
        with lock:
            if left[0] <= 0:
                return None
            left[0] -= 1
        return make()

    return answer


# --- the faults -------------------------------------------------------------------------------------------


def model_errors(status: int, message: str, count: int | None = None) -> FaultSetup:
    def setup(rig: Rig) -> None:
        if count is None:
            rig.claude.always = (status, message)
        else:
            rig.claude.errors = [(status, message)] * count

    return setup


def wrong_key(rig: Rig) -> None:
    rig.stack.put_secret("AnthropicSecretName", {"api_key": "sk-ant-rotated"})


def slow_model(rig: Rig) -> None:
    rig.claude.delay = 1.5  # past MODEL_TIMEOUT_SECONDS=1 on every attempt: the SDK times out


def dynamodb_throttled(rig: Rig) -> None:
    throttle = times(
        3, lambda: error_response(400, "ProvisionedThroughputExceededException", "Rate exceeded")
    )
    rig.on_aws_call("dynamodb", "TransactWriteItems", throttle)


def transaction_conflict(rig: Rig) -> None:
    reasons = {"CancellationReasons": [{"Code": "TransactionConflict", "Message": "Transaction is ongoing"}]}
    conflict = times(
        1,
        lambda: error_response(
            400, "TransactionCanceledException", "Transaction cancelled [TransactionConflict]", reasons
        ),
    )
    rig.on_aws_call("dynamodb", "TransactWriteItems", conflict)


def step_functions_down(rig: Rig) -> None:
    rig.on_aws_call(
        "stepfunctions", "StartExecution", times(20, lambda: error_response(500, "InternalFailure", "down"))
    )


def notify_queue_down(rig: Rig) -> None:
    rig.on_aws_call("sqs", "SendMessage", times(20, lambda: error_response(500, "InternalError", "down")))


def slack_rate_limited(rig: Rig) -> None:
    rig.stack.slack.fail_next = [429, 503]


def killed_before_the_outcome(rig: Rig) -> None:
    """The function dies between running the loop (tools, the approved refund) and writing the outcome."""
    from support_agent.agent.outcomes import OutcomeWriter

    original = OutcomeWriter.finish
    deaths = [2]  # the refund's first run (approval request) and its resume (after the refund ran)

    def finish(self: OutcomeWriter, run: Any, outcome: Any) -> Any:
        if deaths[0] > 0 and "refund" in run.session.ticket.subject.lower():
            deaths[0] -= 1
            if deaths[0] == 0:
                raise Killed
        return original(self, run, outcome)

    rig.patch(OutcomeWriter, "finish", finish)


FAULTS: dict[str, FaultSetup | None] = {
    "none": None,
    "model 400 on every call": model_errors(400, "messages: invalid request"),
    "model 401 (rotated key)": wrong_key,
    "model 429 twice, then answers": model_errors(429, "rate limited", 2),
    "model 500 on every call": model_errors(500, "internal error"),
    "model 529 once, then answers": model_errors(529, "overloaded", 1),
    "model timeouts": slow_model,
    "DynamoDB throttling (3 writes)": dynamodb_throttled,
    "DynamoDB transaction conflict": transaction_conflict,
    "Step Functions unavailable": step_functions_down,
    "SQS unavailable (sends)": notify_queue_down,
    "Slack 429 then 503": slack_rate_limited,
    "Lambda killed before the outcome": killed_before_the_outcome,
}


@dataclass
class Row:
    fault: str
    outcomes: dict[str, str]
    running: int
    refunds: int
    most_replies: int
    swept: int
    model_calls: int

    @property
    def ok(self) -> bool:
        return self.running == 0 and self.refunds <= 1 and self.most_replies <= 1


@contextmanager
def _later(seconds: float) -> Iterator[None]:
    """Our code's clock moved forward (leases expire); AWS's emulation keeps real time."""
    from support_agent import clock

    real = clock.now
    clock.now = lambda: real() + timedelta(seconds=seconds)  # type: ignore[assignment]
    try:
        yield
    finally:
        clock.now = real  # type: ignore[assignment]


def run_fault(name: str, setup: FaultSetup | None) -> Row:
    """Two tickets through the pipeline with one fault; what became of them."""
    from support_agent.adapters.embedded import EmbeddedBilling, EmbeddedTickets

    from support_agent_local.emulator import EmbeddedAws
    from support_agent_local.functions import invoke
    from support_agent_local.messages_api import MessagesApiStandIn
    from support_agent_local.runtime import Poller

    claude = ScriptedClaude()
    env = {"MODEL_TIMEOUT_SECONDS": "1"} if setup is slow_model else {}
    with MessagesApiStandIn(claude) as api:
        params = {"ModelProvider": "anthropic"}
        with EmbeddedAws(parameters=params, environment={"ANTHROPIC_BASE_URL": api.url, **env}) as stack:
            stack.put_secret("AnthropicSecretName", {"api_key": "sk-ant-test"})
            rig = Rig(stack, api, Poller(stack), claude)
            if setup is not None:
                setup(rig)
            try:
                for sample in (REFUND_TICKET, ORDER_TICKET):
                    _send(stack, sample)
                sids = _sessions(stack)  # refund (Zendesk) first, then the order (generic webhook)
                swept = 0
                for _round in range(2):
                    _drive(rig)
                    for sid in sids:  # a person approves what waits for approval
                        _approve(stack, sid)
                    _drive(rig)
                    if any(_state(stack, sid) in {"queued", "running"} for sid in sids):
                        # The next sweeper run after every lease and queue grace has run out.
                        with _later(SWEEP_AFTER), stack.environment_of("SweeperFunction"):
                            answer = invoke("sweeper", {})
                            swept += int(answer["stuck"]) + int(answer["requeued"])
                        with _later(SWEEP_AFTER):
                            _drive(rig)
            finally:
                for undo in reversed(rig.undo):
                    undo()
            billing = EmbeddedBilling(stack.ref("EmbeddedDataTable"))
            tickets = EmbeddedTickets(stack.ref("EmbeddedDataTable"))
            outcomes = {}
            for sid in sids:
                session = stack.sessions().get(sid)
                outcomes[sid] = (
                    f"{session.state.value}:{session.reason or session.outcome or ''}" if session else "?"
                )
            replies = [
                sum(c.public and c.author.startswith("agent") for c in tickets.list_comments(_key(stack, s)))
                for s in sids
            ]
            return Row(
                fault=name,
                outcomes=outcomes,
                running=sum(_state(stack, s) in {"queued", "running"} for s in sids),
                refunds=len(billing.refunds()),
                most_replies=max(replies),
                swept=swept,
                model_calls=len(api.calls),
            )


def _send(stack: Any, sample: str) -> None:
    """Deliver a webhook as its sender would: a failed delivery (5xx) is sent again, a few times."""
    from support_agent_local import events

    for _attempt in range(SENDER_ATTEMPTS):
        try:
            if events.invoke_sample(stack, sample)["statusCode"] < 500:
                return
        except Exception:  # noqa: S112 - API Gateway answers 500; the sender tries again
            continue


def _sessions(stack: Any) -> list[str]:
    """Every session of the stack, the Zendesk ticket's first."""
    from support_agent import aws

    items = aws.dynamodb().scan(TableName=stack.ref("SessionsTable"))["Items"]
    found = [aws.record(i) for i in items if i["sk"]["S"] == "SESSION"]
    found.sort(key=lambda s: s["ticket"]["source"] != "zendesk")
    return [str(s["session_id"]) for s in found]


def _drive(rig: Rig) -> None:
    """Deliver messages until every session is settled (or stuck) and the system is quiet; a killed run
    stops that delivery, as Lambda would."""
    from support_agent_local.runtime import settled

    def all_settled() -> bool:
        return all(settled(rig.stack, sid)() for sid in _sessions(rig.stack))

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            rig.poller.run_until(all_settled, timeout=15)
        except TimeoutError:
            pass  # stuck (queued or running): the sweeper's turn
        except Killed:
            continue
        try:
            rig.poller.run_until_quiet(quiet_seconds=0.4, timeout=30)
            return
        except Killed:
            continue


def _key(stack: Any, sid: str) -> str:
    session = stack.sessions().get(sid)
    return str(session.ticket.key) if session else ""


def _state(stack: Any, sid: str) -> str:
    session = stack.sessions().get(sid)
    return session.state.value if session else "missing"


def _approve(stack: Any, sid: str) -> None:
    """A person clicks Approve on the session's posted request, if it has one."""
    from support_agent.models import Approval, SessionState

    from support_agent_local import slack_requests

    session = stack.sessions().get(sid)
    if session and session.state is SessionState.AWAITING_APPROVAL and session.approval_id:
        approval = stack.approvals().get(session.approval_id)
        if isinstance(approval, Approval) and approval.slack_ts and approval.status == "pending":
            _click(stack, slack_requests.block_action(session.approval_id, "approve"))


def _click(stack: Any, payload: dict[str, Any]) -> None:
    from support_agent_local import slack_requests
    from support_agent_local.functions import invoke

    secret = stack.secret("SlackSecretName")["signing_secret"]
    with stack.environment_of("SlackInteractionFunction"):
        invoke("slack_interaction", slack_requests.signed_event(payload, secret))


def table(rows: list[Row]) -> str:
    """The rows as a text table."""
    head = f"{'fault':36} {'refund ticket':40} {'order ticket':34} run ref rep swept calls ok"
    lines = [head, "-" * len(head)]
    for row in rows:
        refund, order = list(row.outcomes.values())
        lines.append(
            f"{row.fault:36} {refund[:40]:40} {order[:34]:34} {row.running:3} {row.refunds:3} "
            f"{row.most_replies:3} {row.swept:5} {row.model_calls:5} {'yes' if row.ok else 'NO'}"
        )
    left = sum(r.running for r in rows)
    twice = sum(r.refunds > 1 or r.most_replies > 1 for r in rows)
    lines.append(
        f"{len(rows)} faults: {left} tickets left queued or running, {twice} rows with an action run twice"
    )
    return "\n".join(lines)


def main() -> int:
    rows = []
    for name, setup in FAULTS.items():
        rows.append(run_fault(name, setup))
        print(f"  {name}: done", flush=True)
    print(table(rows))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
