"""The local runtime: queues polled and delivered to handlers the way Lambda event source mappings do.

Batch size and partial batch failures come from the template's SQS events; a failed record becomes
visible again at once (locally there is no point waiting) and moto's redrive moves it to the DLQ after
the queue's maxReceiveCount.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import boto3

from support_agent_local.emulator import EmbeddedAws
from support_agent_local.functions import invoke


@dataclass(frozen=True)
class EventSourceMapping:
    function: str  # folder name under functions/
    logical_id: str
    queue: str  # logical id of the queue
    batch_size: int


def mappings(stack: EmbeddedAws) -> list[EventSourceMapping]:
    """The SQS event sources declared in template.yaml."""
    found = []
    for logical_id in stack.function_ids():
        spec = stack.function_spec(logical_id)
        for event in (spec.get("Events") or {}).values():
            if event.get("Type") != "SQS":
                continue
            queue_arn = event["Properties"]["Queue"]
            queue = queue_arn["Fn::GetAtt"][0] if isinstance(queue_arn, dict) else str(queue_arn)
            name = str(spec["CodeUri"]).rstrip("/").rsplit("/", 1)[-1]
            found.append(
                EventSourceMapping(name, logical_id, queue, int(event["Properties"].get("BatchSize", 10)))
            )
    return found


def _record(message: Any, queue_arn: str) -> dict[str, Any]:
    attributes = message.get("Attributes", {})
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {"ApproximateReceiveCount": attributes.get("ApproximateReceiveCount", "1")},
        "messageAttributes": {},
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": "us-east-1",
    }


def settled(stack: EmbeddedAws, session_id: str) -> Any:
    """A condition: the session is done (answered, with people, closed) or waits on a posted request."""
    from support_agent.models import Approval

    def check() -> bool:
        session = stack.sessions().get(session_id)
        if session is None or session.state.value in {"queued", "running"}:
            return False
        if session.state.value == "awaiting_approval" and session.approval_id:
            approval = stack.approvals().get(session.approval_id)
            # Settled while a posted request waits for a person; not while a decision travels back.
            return isinstance(approval, Approval) and approval.status == "pending" and bool(approval.slack_ts)
        return True

    return check


class Poller:
    """Delivers every SQS queue's messages to its function until the system is quiet."""

    def __init__(self, stack: EmbeddedAws, log: Any = None) -> None:
        self.stack = stack
        # The event source mapping's own receives and deletes are Lambda's, not the function's: a separate
        # session keeps them out of per-function call counts.
        self.sqs = boto3.session.Session().client("sqs", region_name="us-east-1")
        self.mappings = mappings(stack)
        self.log = log
        self.deliveries = 0
        self.busy: dict[str, float] = {}  # seconds spent inside each function's handler

    def poll_once(self) -> int:
        """One receive per mapping; returns the number of records delivered."""
        delivered = 0
        for mapping in self.mappings:
            url = self.stack.queue_url(mapping.queue)
            messages = self.sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=min(mapping.batch_size, 10), AttributeNames=["All"]
            ).get("Messages", [])
            if not messages:
                continue
            event = {"Records": [_record(m, self.stack.queue_arn(mapping.queue)) for m in messages]}
            started = time.perf_counter()
            try:
                with self.stack.environment_of(mapping.logical_id):
                    response = invoke(mapping.function, event) or {}
                failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
            except Exception as exc:  # a function error returns the whole batch to the queue, as on Lambda
                failed = {m["MessageId"] for m in messages}
                if self.log:
                    self.log(f"{mapping.function}: error {type(exc).__name__}: {exc}")
            finally:
                spent = time.perf_counter() - started
                self.busy[mapping.function] = self.busy.get(mapping.function, 0.0) + spent
            for message in messages:
                if message["MessageId"] in failed:
                    self.sqs.change_message_visibility(
                        QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                    )
                else:
                    self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            if self.log:
                self.log(f"{mapping.function}: {len(messages)} record(s), {len(failed)} failed")
            delivered += len(messages)
        self.deliveries += delivered
        return delivered

    def run_until(self, condition: Any, timeout: float = 30.0) -> None:
        """Poll until `condition()` holds (state machines run in background threads, at their own pace)."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError("the local runtime did not reach the expected state in time")
            if not self.poll_once():
                time.sleep(0.02)

    def settle(self, session_id: str, timeout: float = 30.0) -> None:
        """Poll until the session is settled (see `settled`), then drain what is still in flight."""
        self.run_until(settled(self.stack, session_id), timeout)
        self.run_until_quiet(quiet_seconds=0.2, timeout=timeout)

    def run_until_quiet(self, quiet_seconds: float = 0.3, timeout: float = 30.0) -> None:
        """Poll until nothing arrived for `quiet_seconds` (state machines run in the background)."""
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while time.monotonic() < deadline:
            if self.poll_once():
                last = time.monotonic()
            elif time.monotonic() - last > quiet_seconds:
                return
            else:
                time.sleep(0.02)
