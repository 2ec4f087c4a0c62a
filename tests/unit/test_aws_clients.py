"""AWS clients give up in time where a caller waits (the Slack endpoint), and keep botocore's patience
elsewhere."""

from __future__ import annotations

import pytest
from support_agent import aws

from tests.unit.test_template import props


@pytest.fixture(autouse=True)
def fresh_clients(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    aws.reset_clients()
    yield
    aws.reset_clients()


def test_call_timeout_bounds_every_client(monkeypatch):
    monkeypatch.setenv(aws.CALL_SECONDS_VARIABLE, "2")
    for client in (aws.dynamodb(), aws.sqs(), aws.stepfunctions(), aws.kms()):
        config = client.meta.config
        assert (config.connect_timeout, config.read_timeout) == (0.5, 1.0)
        assert config.retries["total_max_attempts"] == 2


def test_without_it_clients_keep_botocores_defaults(monkeypatch):
    monkeypatch.delenv(aws.CALL_SECONDS_VARIABLE, raising=False)
    assert aws.dynamodb().meta.config.read_timeout == 60


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan"])
def test_a_bad_value_is_refused_with_its_name(monkeypatch, value):
    monkeypatch.setenv(aws.CALL_SECONDS_VARIABLE, value)
    with pytest.raises(ValueError, match="CALL_TIMEOUT_SECONDS must be a positive number"):
        aws.dynamodb()


def test_only_the_slack_endpoint_sets_it_within_slacks_three_seconds():
    for name in ("IntakeFunction", "AgentStepFunction", "NotifierFunction", "SweeperFunction"):
        assert aws.CALL_SECONDS_VARIABLE not in props(name).get("Environment", {}).get("Variables", {})
    seconds = float(props("SlackInteractionFunction")["Environment"]["Variables"][aws.CALL_SECONDS_VARIABLE])
    assert 0 < seconds <= 3
