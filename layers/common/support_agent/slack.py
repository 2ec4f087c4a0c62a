"""Slack Web API client with retries, and approver checks (user ids and user groups, cached)."""

from __future__ import annotations

import os
import time
from typing import Any

from support_agent.policy import Approvers

_GROUP_CACHE: dict[str, tuple[float, set[str]]] = {}
GROUP_CACHE_SECONDS = 300


def web_client(bot_token: str) -> Any:
    """slack_sdk WebClient retrying rate limits (Retry-After), connection errors and 5xx with backoff.

    SLACK_API_URL points it at another Slack-compatible endpoint (the local runtime's console stand-in).
    """
    from slack_sdk import WebClient
    from slack_sdk.http_retry.builtin_handlers import (
        ConnectionErrorRetryHandler,
        RateLimitErrorRetryHandler,
        ServerErrorRetryHandler,
    )

    client = WebClient(
        token=bot_token,
        base_url=os.environ.get("SLACK_API_URL", "https://slack.com/api/"),
        timeout=5,
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=2),
            RateLimitErrorRetryHandler(max_retry_count=2),
            ServerErrorRetryHandler(max_retry_count=2),
        ],
    )
    return client


def app_credentials() -> tuple[Any, str]:
    """The Slack Web API client (bot token) and the signing secret, from Secrets Manager (cached)."""
    from support_agent.config import settings
    from support_agent.secrets import SecretsManagerStore

    s = settings()
    secret = SecretsManagerStore(s.secrets_max_age_seconds).get_json(s.slack_secret_name)
    return web_client(str(secret["bot_token"])), str(secret["signing_secret"])


def channel_name(approval_channel: str) -> str:
    """`slack:#support-escalations` → `#support-escalations` (chat.postMessage takes names or ids)."""
    return approval_channel.split(":", 1)[1] if approval_channel.startswith("slack:") else approval_channel


def is_approver(client: Any, approvers: Approvers, user_id: str) -> bool:
    """True when the user is listed, or is in one of the listed user groups (groups cached 5 minutes)."""
    if user_id in approvers.users:
        return True
    for group in approvers.usergroups:
        cached = _GROUP_CACHE.get(group)
        if cached is None or time.monotonic() - cached[0] > GROUP_CACHE_SECONDS:
            members = set(client.usergroups_users_list(usergroup=group).get("users", []))
            cached = (time.monotonic(), members)
            _GROUP_CACHE[group] = cached
        if user_id in cached[1]:
            return True
    return False
