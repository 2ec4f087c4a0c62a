"""Messaging ports: a queue (SQS) and the approval workflow (Step Functions), with their AWS implementations.

Every hop between functions goes through one of these two, so each is retryable and each has one fake.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

from support_agent import aws
from support_agent.models import Decision

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_stepfunctions import SFNClient


class Queue(Protocol):
    def send(self, message: BaseModel) -> None:
        """Put one message on the queue."""
        ...


class TokenRejected(Exception):
    """The workflow no longer waits on this task token (timed out, replaced by a reminder, or unknown)."""


class ApprovalWorkflow(Protocol):
    def start(self, approval_id: str, payload: dict[str, Any]) -> None:
        """Start the workflow execution named `approval_id` (a second start of the same name is a no-op)."""
        ...

    def answer(self, task_token: str, decision: Decision) -> None:
        """Hand a decision to the waiting task; TokenRejected when nothing waits on that token."""
        ...


class SqsQueue:
    """Sends pydantic messages as JSON to one queue."""

    def __init__(self, queue_url: str, client: SQSClient | None = None) -> None:
        self.queue_url = queue_url
        self._client = client

    def send(self, message: BaseModel) -> None:
        client = self._client or aws.sqs()
        client.send_message(QueueUrl=self.queue_url, MessageBody=message.model_dump_json(exclude_none=True))


class StepFunctionsWorkflow:
    """The approval state machine; executions are named by the approval id, so a retry cannot start two."""

    def __init__(self, state_machine_arn: str, client: SFNClient | None = None) -> None:
        self.arn = state_machine_arn
        self._client = client

    @property
    def client(self) -> SFNClient:
        return self._client or aws.stepfunctions()

    def start(self, approval_id: str, payload: dict[str, Any]) -> None:
        try:
            self.client.start_execution(stateMachineArn=self.arn, name=approval_id, input=json.dumps(payload))
        except self.client.exceptions.ExecutionAlreadyExists:
            return

    def answer(self, task_token: str, decision: Decision) -> None:
        errors = self.client.exceptions
        try:
            self.client.send_task_success(taskToken=task_token, output=decision.model_dump_json())
        except (errors.TaskTimedOut, errors.InvalidToken, errors.TaskDoesNotExist) as exc:
            raise TokenRejected(type(exc).__name__) from None
