"""Messages onto SQS queues."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel

from support_agent import aws

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


class MessageSender(Protocol):
    def send(self, message: BaseModel) -> None:
        """Put one message on the queue."""
        ...


class SqsSender:
    """Sends pydantic messages as JSON to one queue."""

    def __init__(self, queue_url: str, client: SQSClient | None = None) -> None:
        if not queue_url:
            raise ValueError("queue URL is not configured")
        self.queue_url = queue_url
        self._client = client

    def send(self, message: BaseModel) -> None:
        client = self._client or aws.sqs()
        client.send_message(QueueUrl=self.queue_url, MessageBody=message.model_dump_json(exclude_none=True))
