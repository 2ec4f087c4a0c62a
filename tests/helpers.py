"""Test helpers shared by the integration and end-to-end suites."""

from __future__ import annotations

import json
from typing import Any

import boto3
from support_agent_local import events


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


def scan(table: str) -> list[dict[str, Any]]:
    return boto3.client("dynamodb").scan(TableName=table)["Items"]
