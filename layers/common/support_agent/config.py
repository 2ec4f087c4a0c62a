"""Settings of each function, read from its environment (set by template.yaml) and validated at cold start.

This is the only module that reads the environment. A field without a default is required: a missing
queue URL or ARN fails when the handler module is imported, naming the variable, not on first use.
Field names are the variable names in lower case.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

_LAYER_ROOT = Path(__file__).resolve().parent


def default_policy_file() -> str:
    """Policy bundled with the layer (policies/ sits beside the package there), used when POLICY_FILE is unset."""
    return str(_LAYER_ROOT.parent / "policies" / "acme-support.yaml")


class ConfigurationError(RuntimeError):
    """The function's environment is incomplete or invalid; the message names the variables."""


class Common(BaseModel):
    """What every function needs."""

    # defer_build: a function validates its own settings class only; the others' schemas are never built.
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)

    policy_file: str = Field(default_factory=default_policy_file)
    sessions_table: str = Field(min_length=1)
    audit_table: str = Field(min_length=1)
    # KMS HMAC key that seals audit chains (GenerateMac only: the key itself is never readable).
    audit_mac_key_id: str = Field(min_length=1)
    secrets_max_age_seconds: int = Field(default=300, ge=0)


class IntakeSettings(Common):
    budgets_table: str = Field(min_length=1)
    agent_queue_url: str = Field(min_length=1)
    webhook_secret_name: str = Field(min_length=1)
    signature_tolerance_seconds: int = Field(default=300, gt=0)
    session_ttl_days: int = Field(default=90, gt=0)


class AgentSettings(Common):
    notify_queue_url: str = Field(min_length=1)
    approval_state_machine_arn: str = Field(min_length=1)
    model_provider: str = Field(default="auto", pattern=r"^(auto|anthropic|bedrock|offline|replay:.+)$")
    anthropic_secret_name: str = "support-agent/anthropic"
    # Local runs only (the demo with a key of your own); deployed functions read the key from Secrets Manager.
    anthropic_api_key: SecretStr | None = None
    # claude-sonnet-4-5 reaches end of life on 2026-11-30 (the anthropic SDK warns on every call).
    model_id: str = "claude-sonnet-4-6"
    bedrock_model_id: str = "us.anthropic.claude-sonnet-4-6"
    aws_region: str | None = None
    model_timeout_seconds: float = Field(default=60.0, gt=0)
    max_turns: int = Field(default=8, gt=0)
    # How long a claim holds a session: longer than the function's timeout (template.yaml's arithmetic).
    lease_seconds: float = Field(default=360.0, gt=0)
    # Which backend serves each port; the composition root is the one place that reads these.
    tickets_backend: Literal["embedded", "zendesk"] = "embedded"
    crm_backend: Literal["embedded", "customer_api"] = "embedded"
    billing_backend: Literal["embedded", "stripe"] = "embedded"
    accounts_backend: Literal["embedded", "cognito"] = "embedded"
    knowledge_backend: Literal["markdown", "zendesk"] = "markdown"
    knowledge_folder: str | None = None
    embedded_data_table: str = ""
    zendesk_secret_name: str = "support-agent/zendesk"
    help_center_locale: str = "en-us"
    customer_api_secret_name: str = "support-agent/customer-api"
    stripe_secret_name: str = "support-agent/stripe"
    # Local runs only: another Stripe-compatible endpoint (localstripe); Stripe itself by default.
    stripe_api_base: str | None = None
    cognito_user_pool_id: str = ""
    cognito_user_lookup: Literal["username", "email"] = "username"

    @model_validator(mode="after")
    def _backends_configured(self) -> AgentSettings:
        embedded = {self.tickets_backend, self.crm_backend, self.billing_backend, self.accounts_backend}
        if "embedded" in embedded and not self.embedded_data_table:
            raise ValueError("EMBEDDED_DATA_TABLE is required while a backend is `embedded`")
        if self.accounts_backend == "cognito" and not self.cognito_user_pool_id:
            raise ValueError("COGNITO_USER_POOL_ID is required when ACCOUNTS_BACKEND is `cognito`")
        return self


class SlackSettings(Common):
    slack_secret_name: str = Field(min_length=1)
    # Another Slack-compatible endpoint (the local runtime's stand-in); Slack itself by default.
    slack_api_url: str = "https://slack.com/api/"


class NotifierSettings(SlackSettings):
    max_reminders: int = Field(default=2, ge=0)


class InteractionSettings(SlackSettings):
    agent_queue_url: str = Field(min_length=1)


class SweeperSettings(Common):
    agent_queue_url: str = Field(min_length=1)
    budgets_table: str = Field(min_length=1)


S = TypeVar("S", bound=Common)


@cache
def settings(kind: type[S]) -> S:
    """The settings of this process (read once: a Lambda's environment does not change while warm)."""
    values = {name: os.environ[name.upper()] for name in kind.model_fields if name.upper() in os.environ}
    try:
        return kind.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{str(e['loc'][0]).upper() + ': ' if e['loc'] else ''}{'not set' if e['type'] == 'missing' else e['msg']}"
            for e in exc.errors()
        )
        raise ConfigurationError(f"{kind.__name__}: {problems}") from None


def forget() -> None:
    """Read the environment again on next use (the local runtime switches between functions' environments)."""
    settings.cache_clear()
