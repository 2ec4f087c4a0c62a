"""boto3 clients and resources, created once per process (warm Lambdas reuse them)."""

from __future__ import annotations

import os
from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kms import KMSClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_stepfunctions import SFNClient


# Seconds one AWS call may take, attempts included, where a caller waits (the Slack endpoint: Slack gives up
# after 3 s). Unset: botocore's defaults (60 s reads, retries), right for the queue-fed functions.
CALL_SECONDS_VARIABLE = "CALL_TIMEOUT_SECONDS"


def client_config() -> Config | None:
    """The clients' timeouts and retries from CALL_TIMEOUT_SECONDS: two attempts that fit in it, or None."""
    raw = os.environ.get(CALL_SECONDS_VARIABLE)
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise ValueError(f"{CALL_SECONDS_VARIABLE} must be a positive number of seconds, not {raw!r}")
    # Two attempts, each connecting within a quarter and answering within half of the whole.
    return Config(
        connect_timeout=seconds / 4,
        read_timeout=seconds / 2,
        retries={"total_max_attempts": 2, "mode": "standard"},
    )


@cache
def dynamodb() -> DynamoDBClient:
    """Low-level DynamoDB client (we marshal items ourselves: fewer surprises with numbers)."""
    return boto3.client("dynamodb", config=client_config())


@cache
def sqs() -> SQSClient:
    """SQS client."""
    return boto3.client("sqs", config=client_config())


@cache
def stepfunctions() -> SFNClient:
    """Step Functions client."""
    return boto3.client("stepfunctions", config=client_config())


@cache
def kms() -> KMSClient:
    """KMS client (the audit trail's MAC and signing keys)."""
    return boto3.client("kms", config=client_config())


def reset_clients() -> None:
    """Forget cached clients (tests and the local runtime call this after switching endpoints)."""
    for factory in (dynamodb, sqs, stepfunctions, kms):
        factory.cache_clear()


_SERIALIZER: Any = None
_DESERIALIZER: Any = None


def to_item(data: dict[str, Any]) -> dict[str, Any]:
    """Python dict to DynamoDB attribute values (floats become exact decimals of their repr)."""
    global _SERIALIZER
    if _SERIALIZER is None:
        from boto3.dynamodb.types import TypeSerializer

        _SERIALIZER = TypeSerializer()
    return {k: _SERIALIZER.serialize(_decimals(v)) for k, v in data.items() if v is not None}


def _decimals(value: Any) -> Any:
    from decimal import Decimal

    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: _decimals(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_decimals(v) for v in value]
    return value


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    """DynamoDB attribute values to a Python dict, with whole numbers as int."""
    global _DESERIALIZER
    if _DESERIALIZER is None:
        from boto3.dynamodb.types import TypeDeserializer

        _DESERIALIZER = TypeDeserializer()
    out = {k: _DESERIALIZER.deserialize(v) for k, v in item.items()}
    return {k: _plain(v) for k, v in out.items()}


def _plain(value: Any) -> Any:
    from decimal import Decimal

    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, set):
        return {_plain(v) for v in value}
    return value


KEY_COLUMNS = frozenset({"pk", "sk", "expires_at"})


def record(item: dict[str, Any], *, drop: frozenset[str] = frozenset()) -> dict[str, Any]:
    """A stored item as plain data for a model: key columns (and `drop`) left out."""
    return {k: v for k, v in from_item(item).items() if k not in KEY_COLUMNS and k not in drop}


def set_fields(fields: dict[str, Any], condition: str = "attribute_exists(pk)") -> dict[str, Any]:
    """UpdateItem arguments that SET each field (or REMOVE it when None), guarded by `condition`."""
    names = {f"#f{i}": name for i, name in enumerate(fields)}
    values = to_item({f":v{i}": v for i, v in enumerate(fields.values())})
    sets = ", ".join(f"#f{i} = :v{i}" for i in range(len(fields)) if f":v{i}" in values)
    removes = ", ".join(f"#f{i}" for i in range(len(fields)) if f":v{i}" not in values)
    args: dict[str, Any] = {
        "UpdateExpression": (f"SET {sets}" if sets else "") + (f" REMOVE {removes}" if removes else ""),
        "ConditionExpression": condition,
        "ExpressionAttributeNames": names,
    }
    if values:
        args["ExpressionAttributeValues"] = values
    return args


def is_conditional_failure(exc: Exception) -> bool:
    """True when a DynamoDB write was refused by its condition.

    A cancelled transaction counts only when one of its conditions failed: one cancelled by a conflict
    with another transaction, by throttling or by validation is an error, not a refusal.
    """
    response = getattr(exc, "response", {})
    error = response.get("Error", {})
    code = error.get("Code", "")
    if code == "ConditionalCheckFailedException":
        return True
    if code != "TransactionCanceledException":
        return False
    reasons = response.get("CancellationReasons")
    if reasons:
        return any(r.get("Code") == "ConditionalCheckFailed" for r in reasons)
    return "ConditionalCheckFailed" in str(error.get("Message", ""))


class DynamoTable:
    """Base of the classes that own one DynamoDB table: its name, and a client (injected or the shared one)."""

    def __init__(self, table: str, client: DynamoDBClient | None = None) -> None:
        self.table = table
        self._client = client

    @property
    def client(self) -> DynamoDBClient:
        return self._client or dynamodb()
