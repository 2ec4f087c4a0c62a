"""Test helpers shared by the integration and end-to-end suites."""

from __future__ import annotations

import json
from typing import Any

import boto3
from support_agent_local import events
from support_agent_local.emulator import LOCAL_SECRETS
from support_agent_local.functions import invoke


def run_sample(name: str) -> dict[str, Any]:
    """Prepare (sign) and invoke one sample event, after the events its manifest entry says come first."""
    sample = events.sample(name)
    for before in sample.spec.get("after", []):
        run_sample(before)
    response: dict[str, Any] = invoke(sample.function, events.prepare(sample, LOCAL_SECRETS))
    return response


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
