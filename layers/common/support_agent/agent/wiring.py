"""Builds the agent from the function's environment: adapters, model provider, workflow starter."""

from __future__ import annotations

import json
import os
from typing import Any

from support_agent import aws
from support_agent.agent.llm import AnthropicProvider, ModelProvider, ReplayProvider
from support_agent.agent.loop import AgentRunner
from support_agent.agent.offline import OfflineProvider


class StepFunctionsStarter:
    """Starts the approval workflow; executions are named by the approval id, so a retry cannot start two."""

    def __init__(self, state_machine_arn: str) -> None:
        self.arn = state_machine_arn

    def start(self, approval_id: str, payload: dict[str, Any]) -> None:
        if not self.arn:
            raise RuntimeError("APPROVAL_STATE_MACHINE_ARN is not configured")
        client = aws.stepfunctions()
        try:
            client.start_execution(stateMachineArn=self.arn, name=approval_id, input=json.dumps(payload))
        except client.exceptions.ExecutionAlreadyExists:
            return


class NotifyQueueHandoffs:
    """Handoff notices go to the NotifyQueue, where the notifier posts them to Slack."""

    def __init__(self, queue_url: str) -> None:
        self.queue_url = queue_url

    def notify(self, approval_id: str, session_id: str, channel: str) -> None:
        body = {"type": "handoff", "approval_id": approval_id, "session_id": session_id, "channel": channel}
        aws.sqs().send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(body))


def provider_from_env() -> ModelProvider:
    """MODEL_PROVIDER: anthropic | bedrock | offline | replay:FILE (default: anthropic if a key exists)."""
    from support_agent.config import settings

    s = settings()
    choice = os.environ.get("MODEL_PROVIDER", "auto")
    if choice.startswith("replay:"):
        return ReplayProvider.from_file(choice.split(":", 1)[1])
    if choice == "offline":
        return OfflineProvider()
    if choice == "bedrock":
        return AnthropicProvider.bedrock(
            s.bedrock_model_id, os.environ.get("AWS_REGION"), s.model_timeout_seconds
        )
    key = os.environ.get("ANTHROPIC_API_KEY", "")
    if not key and choice in {"anthropic", "auto"} and s.anthropic_secret_name:
        from support_agent.secrets import SecretsManagerStore

        try:
            key = str(
                SecretsManagerStore(s.secrets_max_age_seconds)
                .get_json(s.anthropic_secret_name)
                .get("api_key", "")
            )
        except Exception:  # no secret: only acceptable when the caller allowed a fallback
            if choice == "anthropic":
                raise
    if key:
        return AnthropicProvider.from_api_key(key, s.model_id, s.model_timeout_seconds)
    if choice == "anthropic":
        raise RuntimeError("MODEL_PROVIDER=anthropic but no API key in ANTHROPIC_API_KEY or Secrets Manager")
    return OfflineProvider()


def runner_from_env(provider: ModelProvider | None = None) -> AgentRunner:
    """The agent wired to this function's environment."""
    from support_agent.adapters.embedded import embedded_adapters
    from support_agent.approvals import ApprovalRepository
    from support_agent.audit import AuditTrail
    from support_agent.budget import SessionTokenBudget
    from support_agent.config import settings
    from support_agent.policy import cached_policy
    from support_agent.sessions import SessionRepository

    s = settings()
    return AgentRunner(
        policy=cached_policy(s.policy_file),
        sessions=SessionRepository(s.sessions_table, s.session_ttl_days),
        approvals=ApprovalRepository(s.sessions_table),
        audit=AuditTrail(s.audit_table),
        tokens=SessionTokenBudget(s.sessions_table),
        adapters=embedded_adapters(s.embedded_data_table),
        provider=provider or provider_from_env(),
        workflow=StepFunctionsStarter(s.approval_state_machine_arn),
        handoff_notices=NotifyQueueHandoffs(s.notify_queue_url) if s.notify_queue_url else None,
        max_turns=s.max_turns,
    )
