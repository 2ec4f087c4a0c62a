"""SnapStart hooks: registered only where snapshot_restore_py exists (Lambda's managed runtimes); the HTTP
handlers' priming loads their modules, policy and AWS clients without fetching a secret."""

from __future__ import annotations

import importlib.util
import random
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support_agent import aws, composition, snapstart
from support_agent.rules.policy import cached_policy
from support_agent_local.emulator import EmbeddedAws

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def hooks(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Callable[..., object]]]:
    """A stand-in for snapshot_restore_py that records what is registered."""
    registered: dict[str, list[Callable[..., object]]] = {"before": [], "after": []}
    module = types.ModuleType("snapshot_restore_py")
    module.register_before_snapshot = registered["before"].append  # type: ignore[attr-defined]
    module.register_after_restore = registered["after"].append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", module)
    return registered


def nothing() -> None:
    return None


def test_hooks_registered_in_lambda(hooks: dict[str, list[Callable[..., object]]]) -> None:
    assert snapstart.before_snapshot(nothing) is nothing
    assert hooks == {"before": [nothing], "after": [random.seed]}


def test_nothing_registered_without_the_runtime_library(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", None)  # import fails, as outside Lambda
    assert snapstart.before_snapshot(nothing) is nothing


@pytest.fixture
def slack_env(stack: EmbeddedAws) -> Iterator[EmbeddedAws]:
    with stack.environment_of("SlackInteractionFunction"):
        yield stack


def test_slack_priming_loads_clients_and_policy_but_no_secret(slack_env: EmbeddedAws) -> None:
    composition.forget()
    cached_policy.cache_clear()

    composition.prime_slack_endpoint()

    assert all(f.cache_info().currsize == 1 for f in (aws.dynamodb, aws.sqs, aws.stepfunctions, aws.kms))
    assert cached_policy.cache_info().currsize == 1
    assert composition._slack.cache_info().currsize == 0  # the Slack secret stays out of the snapshot


def test_intake_priming_loads_clients_and_policy(stack: EmbeddedAws) -> None:
    with stack.environment_of("IntakeFunction"):
        composition.forget()
        composition.prime_intake()
        assert all(f.cache_info().currsize == 1 for f in (aws.dynamodb, aws.sqs, aws.kms))
        assert aws.stepfunctions.cache_info().currsize == 0


@pytest.mark.parametrize("function", ["intake", "slack_interaction"])
def test_http_handlers_register_their_priming(
    function: str, hooks: dict[str, list[Callable[..., object]]], stack: EmbeddedAws
) -> None:
    with stack.environment_of(stack.function_for_code(f"functions/{function}")):
        spec = importlib.util.spec_from_file_location(
            f"app_{function}", ROOT / "functions" / function / "app.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert hooks["before"] == [module.prime]
        module.prime()  # runs in the function's environment without a network call to Slack
        assert composition._slack.cache_info().currsize == 0
