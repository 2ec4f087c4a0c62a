"""The Messages API's documented rules for a conversation, checked before a request leaves.

The API answers 400 to a request that breaks them; the replay and offline stand-ins apply the same check,
so no test passes on a transcript the real API would reject.
"""

from __future__ import annotations

import json
import re
from typing import Any


class ConversationError(ValueError):
    """The request breaks a rule of the Messages API; the message names the message index and the rule."""


def check(messages: list[dict[str, Any]]) -> None:
    """Raise ConversationError unless `messages` is a conversation the Messages API accepts."""
    if not messages:
        raise ConversationError("messages: at least one message is required")
    seen_ids: set[str] = set()
    pending: list[str] = []  # tool_use ids of the previous assistant turn, to be answered now
    for i, message in enumerate(messages):
        role = message.get("role")
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            raise ConversationError(f"messages.{i}: roles must alternate starting with user (got {role})")
        blocks = _blocks(i, message.get("content"))
        if role == "user":
            _check_results(i, blocks, pending)
            pending = []
            continue
        for block in blocks:
            if block.get("type") == "tool_use":
                tool_id = str(block.get("id", ""))
                if not tool_id or tool_id in seen_ids:
                    raise ConversationError(f"messages.{i}: tool_use ids must be unique (id {tool_id!r})")
                seen_ids.add(tool_id)
                pending.append(tool_id)
    if pending:
        raise ConversationError(f"messages.{len(messages) - 1}: tool_use ids {pending} have no tool_result")


def _blocks(i: int, content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        if not content.strip():
            raise ConversationError(f"messages.{i}: text content blocks must be non-empty")
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not content:
        raise ConversationError(f"messages.{i}: content must be a non-empty string or list of blocks")
    for block in content:
        if block.get("type") == "text" and not str(block.get("text", "")).strip():
            raise ConversationError(f"messages.{i}: text content blocks must be non-empty")
    return content


def _check_results(i: int, blocks: list[dict[str, Any]], pending: list[str]) -> None:
    results = [b for b in blocks if b.get("type") == "tool_result"]
    if results and blocks[: len(results)] != results:
        raise ConversationError(f"messages.{i}: tool_result blocks must come first in the user message")
    answered = [str(b.get("tool_use_id")) for b in results]
    unknown = [a for a in answered if a not in pending]
    if unknown:
        raise ConversationError(f"messages.{i}: tool_result for unknown tool_use ids {unknown}")
    missing = [p for p in pending if p not in answered]
    if missing:
        raise ConversationError(
            f"messages.{i}: tool_use ids {missing} were not answered with tool_result blocks"
        )
    if len(set(answered)) != len(answered):
        raise ConversationError(f"messages.{i}: a tool_use id is answered twice")


_TICKET_DATA = re.compile(r"<ticket_data>\s*(\{.*\})\s*</ticket_data>", re.S)


def ticket_data(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON between the ticket_data tags of the first user turn (empty when there is none)."""
    if not messages:
        return {}
    first = messages[0].get("content")
    text = (
        first
        if isinstance(first, str)
        else " ".join(b.get("text", "") for b in first or [] if b.get("type") == "text")
    )
    match = _TICKET_DATA.search(text)
    return dict(json.loads(match.group(1))) if match else {}


def model_turns(messages: list[dict[str, Any]]) -> int:
    """How many assistant turns the conversation already has (the next response's index)."""
    return sum(1 for m in messages if m.get("role") == "assistant")
