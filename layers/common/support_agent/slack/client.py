"""The Slack Web API behind a small port, and who may decide (user ids and user groups, cached)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from support_agent.rules.policy import Approvers

GROUP_CACHE_SECONDS = 300


class SlackApi(Protocol):
    def post_message(
        self,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
    ) -> tuple[str, str]:
        """chat.postMessage; returns (channel id, ts) of the message."""
        ...

    def update_message(self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]]) -> None:
        """chat.update."""
        ...

    def post_ephemeral(self, channel: str, user: str, text: str) -> None:
        """chat.postEphemeral: a message only `user` sees."""
        ...

    def open_view(self, trigger_id: str, view: dict[str, Any]) -> None:
        """views.open (the trigger is valid for 3 seconds)."""
        ...

    def usergroup_members(self, usergroup: str) -> set[str]:
        """usergroups.users.list."""
        ...


@dataclass(frozen=True)
class SlackTiming:
    """How long one Web API call may wait, and how often each kind of failure is retried."""

    timeout: int
    retries: int


# The notifier works from a queue: a slow or failing call is worth waiting for and retrying (rate limits
# with Retry-After, connection errors, 5xx), and a message that still fails is retried by SQS.
BACKGROUND = SlackTiming(timeout=5, retries=2)
# The interactive endpoint answers a person within Slack's 3 s: one attempt, short. Its calls are
# views.open (the trigger expires after 3 s, a retry would come too late), chat.update and
# chat.postEphemeral (what the clicker sees; the decision is recorded and handed on before them), and a
# user-group lookup cached for 5 minutes.
INTERACTIVE = SlackTiming(timeout=2, retries=0)


class WebApiSlack:
    """SlackApi over slack_sdk's WebClient, retrying rate limits (Retry-After), connection errors and 5xx
    as often as `timing` says."""

    def __init__(
        self, bot_token: str, base_url: str = "https://slack.com/api/", timing: SlackTiming = BACKGROUND
    ) -> None:
        from slack_sdk import WebClient
        from slack_sdk.http_retry.builtin_handlers import (
            ConnectionErrorRetryHandler,
            RateLimitErrorRetryHandler,
            ServerErrorRetryHandler,
        )

        handlers = [
            ConnectionErrorRetryHandler(max_retry_count=timing.retries),
            RateLimitErrorRetryHandler(max_retry_count=timing.retries),
            ServerErrorRetryHandler(max_retry_count=timing.retries),
        ]
        self.client = WebClient(
            token=bot_token,
            base_url=base_url,
            timeout=timing.timeout,
            retry_handlers=handlers if timing.retries else [],
        )

    def post_message(
        self,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
    ) -> tuple[str, str]:
        posted = self.client.chat_postMessage(channel=channel, text=text, blocks=blocks, thread_ts=thread_ts)
        return str(posted["channel"]), str(posted["ts"])

    def update_message(self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]]) -> None:
        self.client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)

    def post_ephemeral(self, channel: str, user: str, text: str) -> None:
        self.client.chat_postEphemeral(channel=channel, user=user, text=text)

    def open_view(self, trigger_id: str, view: dict[str, Any]) -> None:
        self.client.views_open(trigger_id=trigger_id, view=view)

    def usergroup_members(self, usergroup: str) -> set[str]:
        return set(self.client.usergroups_users_list(usergroup=usergroup).get("users", []))


@dataclass
class ApproverDirectory:
    """Whether a Slack user may decide: listed by id, or a member of a listed user group (cached 5 min)."""

    slack: SlackApi
    cache_seconds: float = GROUP_CACHE_SECONDS
    _groups: dict[str, tuple[float, set[str]]] = field(default_factory=dict)

    def is_approver(self, approvers: Approvers, user_id: str) -> bool:
        if user_id in approvers.users:
            return True
        return any(user_id in self._members(group) for group in approvers.usergroups)

    def _members(self, group: str) -> set[str]:
        cached = self._groups.get(group)
        if cached is None or time.monotonic() - cached[0] > self.cache_seconds:
            cached = (time.monotonic(), self.slack.usergroup_members(group))
            self._groups[group] = cached
        return cached[1]


def channel_name(approval_channel: str) -> str:
    """`slack:#support-escalations` → `#support-escalations` (chat.postMessage takes names or ids)."""
    return approval_channel.split(":", 1)[1] if approval_channel.startswith("slack:") else approval_channel
