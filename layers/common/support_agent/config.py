"""Runtime configuration read from the function's environment (set by template.yaml)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field

_LAYER_ROOT = Path(__file__).resolve().parent


def default_policy_file() -> str:
    """Policy bundled with the layer (policies/ sits beside the package there), used when POLICY_FILE is unset."""
    return str(_LAYER_ROOT.parent / "policies" / "acme-support.yaml")


class Settings(BaseModel):
    """Environment of a Support Agent function; field names are the env var names in lower case."""

    stage: str = "dev"
    policy_file: str = Field(default_factory=default_policy_file)
    sessions_table: str = "support-agent-sessions"
    budgets_table: str = "support-agent-budgets"
    audit_table: str = "support-agent-audit"
    agent_queue_url: str = ""
    notify_queue_url: str = ""
    approval_state_machine_arn: str = ""
    webhook_secret_name: str = "support-agent/webhook-signing"
    slack_secret_name: str = "support-agent/slack"
    anthropic_secret_name: str = "support-agent/anthropic"
    embedded_data_table: str = "support-agent-embedded"
    model_id: str = "claude-sonnet-4-5"
    bedrock_model_id: str = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    model_timeout_seconds: float = 60.0
    max_turns: int = 8
    max_reminders: int = 2
    human_group: str = "tier-2-humans"
    session_ttl_days: int = 90
    dedupe_ttl_days: int = 7
    signature_tolerance_seconds: int = 300
    secrets_max_age_seconds: int = 300

    @classmethod
    def from_env(cls) -> Settings:
        """Build settings from os.environ (unknown variables are ignored)."""
        values = {name: os.environ[name.upper()] for name in cls.model_fields if name.upper() in os.environ}
        return cls.model_validate(values)


@lru_cache(maxsize=1)
def settings() -> Settings:
    """Settings of this process, read once (Lambda environments do not change while warm)."""
    return Settings.from_env()
