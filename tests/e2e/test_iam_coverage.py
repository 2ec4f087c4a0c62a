"""Every AWS call a function makes on the emulated stack is allowed by that function's own IAM policy in
template.yaml.

moto does not enforce IAM, so a call outside a function's policy passes every other test and fails only
when deployed (AccessDenied). Here the demo's tickets (answered, handed off, approved, partially refunded,
denied) and the sweeper run through the pipeline while each call is recorded with the function that made
it; each call's IAM actions and resources (a transaction's per item, a query's index) must match an
Allow statement of that function, with its conditions resolved as the stack was deployed.
"""

from __future__ import annotations

import contextlib
import contextvars
import fnmatch
from collections.abc import Iterator
from typing import Any

import botocore.client
import pytest
from support_agent_local import events
from support_agent_local.demo import BUNDLED, drive, load_tickets
from support_agent_local.emulator import EmbeddedAws
from support_agent_local.runtime import Poller

ACCOUNT = "arn:aws:{service}:us-east-1:123456789012:"
_FUNCTION: contextvars.ContextVar[str | None] = contextvars.ContextVar("function", default=None)
# A transaction's items need the IAM action of each item's kind (there is no TransactWriteItems action).
_ITEM_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


def needed(service: str, operation: str, params: dict[str, Any], stack: EmbeddedAws) -> list[tuple[str, str]]:
    """The (IAM action, resource ARN) pairs one call needs."""
    if service == "dynamodb":
        table = ACCOUNT.format(service="dynamodb") + "table/"
        if operation == "TransactWriteItems":
            return [
                (f"dynamodb:{_ITEM_ACTIONS[kind]}", table + spec["TableName"])
                for item in params["TransactItems"]
                for kind, spec in item.items()
            ]
        if operation in {"BatchGetItem", "BatchWriteItem"}:
            return [(f"dynamodb:{operation}", table + name) for name in params["RequestItems"]]
        index = f"/index/{params['IndexName']}" if params.get("IndexName") else ""
        return [(f"dynamodb:{operation}", table + params["TableName"] + index)]
    if service == "sqs":
        name = params["QueueUrl"].rstrip("/").rsplit("/", 1)[-1]
        return [(f"sqs:{operation}", ACCOUNT.format(service="sqs") + name)]
    if service == "kms":
        key = params["KeyId"]
        return [
            (
                f"kms:{operation}",
                key if key.startswith("arn:") else ACCOUNT.format(service="kms") + f"key/{key}",
            )
        ]
    if service == "stepfunctions":
        if operation == "StartExecution":
            return [(f"states:{operation}", params["stateMachineArn"])]
        # A task token names no resource in the call; IAM checks it against the token's state machine.
        return [(f"states:{operation}", stack.ref("ApprovalStateMachine"))]
    if service == "secretsmanager":
        secret = params["SecretId"]
        arn = (
            secret
            if secret.startswith("arn:")
            else ACCOUNT.format(service="secretsmanager") + f"secret:{secret}-AbCdEf"
        )
        return [(f"secretsmanager:{operation}", arn)]
    return [(f"{service}:{operation}", "*")]


def _without_no_value(value: Any) -> Any:
    if isinstance(value, dict):
        if value == {"Ref": "AWS::NoValue"}:
            return None
        return {k: _without_no_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_no_value(v) for v in value]
    return value


def allowed(stack: EmbeddedAws, function: str) -> list[tuple[list[str], list[str]]]:
    """The function's Allow statements as (actions, resource patterns), conditions resolved."""
    out: list[tuple[list[str], list[str]]] = []
    for policy in stack.function_spec(function).get("Policies", []):
        for raw in policy.get("Statement", []) if isinstance(policy, dict) else []:
            statement = stack.resolver.resolve(_without_no_value(raw))
            if not statement or statement.get("Effect") != "Allow":
                continue
            actions, resources = statement["Action"], statement["Resource"]
            out.append(
                (
                    actions if isinstance(actions, list) else [actions],
                    [str(r) for r in (resources if isinstance(resources, list) else [resources])],
                )
            )
    return out


@contextlib.contextmanager
def recording(stack: EmbeddedAws) -> Iterator[list[tuple[str, str, str, dict[str, Any]]]]:
    """Record (function, service, operation, params) for every call made inside a function's invocation."""
    calls: list[tuple[str, str, str, dict[str, Any]]] = []
    real_environment = EmbeddedAws.environment_of
    real_call = botocore.client.BaseClient._make_api_call  # type: ignore[attr-defined]

    @contextlib.contextmanager
    def environment_of(self: EmbeddedAws, logical_id: str) -> Iterator[dict[str, str]]:
        token = _FUNCTION.set(logical_id)
        try:
            with real_environment(self, logical_id) as env:
                yield env
        finally:
            _FUNCTION.reset(token)

    def make_api_call(self: Any, operation: str, params: dict[str, Any]) -> Any:
        function = _FUNCTION.get()
        if function is not None:
            calls.append((function, self.meta.service_model.service_name, operation, params))
        return real_call(self, operation, params)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(EmbeddedAws, "environment_of", environment_of)
        patch.setattr(botocore.client.BaseClient, "_make_api_call", make_api_call)
        yield calls


def test_every_call_of_every_function_is_allowed_by_its_own_policy(stack: EmbeddedAws):
    poller = Poller(stack)
    with recording(stack) as calls:
        for number, ticket in enumerate(load_tickets(BUNDLED), 1):
            scripted = ticket.get("decision") or {"action": "approve"}
            drive(stack, poller, None, number, ticket, lambda _approval, picked=scripted: picked)
        events.invoke_sample(stack, "sweeper_schedule.json")
    functions = {function for function, *_ in calls}
    # The run reached every function that calls AWS (the notifier and Slack endpoint through approvals).
    assert {
        "IntakeFunction",
        "AgentStepFunction",
        "NotifierFunction",
        "SlackInteractionFunction",
        "SweeperFunction",
    } <= functions
    refused: set[str] = set()
    checked = 0
    for function, service, operation, params in calls:
        statements = allowed(stack, function)
        for action, resource in needed(service, operation, params, stack):
            checked += 1
            if not any(
                action in actions and any(fnmatch.fnmatchcase(resource, pattern) for pattern in patterns)
                for actions, patterns in statements
            ):
                refused.add(f"{function}: {action} on {resource} ({service}.{operation})")
    assert checked > 100
    assert not refused, "calls the deployed policy would refuse:\n" + "\n".join(sorted(refused))
