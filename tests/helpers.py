"""Test helpers shared by the integration and end-to-end suites."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
from support_agent_local import events

ROOT = Path(__file__).resolve().parents[1]


def run_sample(stack: Any, name: str) -> dict[str, Any]:
    """Prepare (sign) and invoke one sample event, after the events its manifest entry says come first."""
    response: dict[str, Any] = events.invoke_sample(stack, name)
    return response


def sqs_event(stack: Any, queue: str, bodies: list[dict[str, Any]], receive_count: int = 1) -> dict[str, Any]:
    """An SQS event as Lambda delivers it, for messages with these bodies."""
    return {
        "Records": [
            {
                "messageId": f"msg-{i}",
                "receiptHandle": f"rh-{i}",
                "body": json.dumps(body),
                "attributes": {"ApproximateReceiveCount": str(receive_count)},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": stack.queue_arn(queue),
                "awsRegion": "us-east-1",
            }
            for i, body in enumerate(bodies)
        ]
    }


def queue_messages(url: str) -> list[dict[str, Any]]:
    """Drain a queue (without deleting), bodies parsed."""
    sqs = boto3.client("sqs")
    out: list[dict[str, Any]] = []
    while True:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30).get(
            "Messages", []
        )
        if not msgs:
            return out
        out.extend(json.loads(m["Body"]) for m in msgs)


@contextlib.contextmanager
def serving(preexec_fn: Callable[[], None] | None = None) -> Iterator[str]:
    """`support-agent serve --port 0` in a subprocess; yields its base URL, then stops it with Ctrl-C."""
    proc = subprocess.Popen(
        [sys.executable, "-X", "faulthandler", "-u", "-m", "support_agent_local.cli", "serve", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=preexec_fn,
    )
    output: list[str] = []
    try:
        deadline = time.monotonic() + 60
        url = None
        while url is None and time.monotonic() < deadline and proc.stdout is not None:
            line = proc.stdout.readline()
            output.append(line)
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
            url = found.group(1) if found else None
        assert url, "serve did not start: " + "".join(output)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rest, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            # Still running: have faulthandler print every thread's stack, so the failure says where.
            proc.send_signal(signal.SIGABRT)
            rest, _ = proc.communicate(timeout=30)
            raise AssertionError("serve did not stop on Ctrl-C:\n" + "".join(output) + (rest or "")) from None
        serving.last_output = "".join(output) + (rest or "")  # type: ignore[attr-defined]
        serving.last_returncode = proc.returncode  # type: ignore[attr-defined]


def scan(table: str) -> list[dict[str, Any]]:
    return boto3.client("dynamodb").scan(TableName=table)["Items"]
