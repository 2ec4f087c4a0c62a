"""Model providers behind one small port: Claude (Anthropic API or Bedrock), replay, and offline.

Every provider returns the Messages API's shape (content blocks, stop reason, usage), so the loop is the
same whichever runs. Three cache breakpoints (of the four the API allows): the last tool and the system
prompt (the same bytes for every session of a deployment), and the last block of the latest user
message, so that each later turn reads the conversation so far from the prompt cache. A prefix shorter
than the model's minimum cacheable length is not cached at all (`min_cacheable_tokens`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict


class ModelUnavailable(Exception):
    """The model could not be reached after the SDK's retries (rate limits, 5xx, timeouts)."""


class Usage(BaseModel):
    model_config = ConfigDict(defer_build=True)

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0

    @property
    def total(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_input_tokens
            + self.cache_creation_input_tokens
        )


class ModelResponse(BaseModel):
    model_config = ConfigDict(defer_build=True)

    content: list[dict[str, Any]]
    stop_reason: str | None
    usage: Usage
    model: str


BREAKPOINT = {"type": "ephemeral"}
# Anthropic's prompt-caching documentation: the shortest prefix each model caches (tokens), by the model
# id's family; any other model, 1,024 (the Sonnet 4.5, Sonnet 4, Opus 4.1 and Opus 4 figure).
_MIN_CACHEABLE = (
    ("opus-4-6", 4096),
    ("opus-4-5", 4096),
    ("haiku-4-5", 4096),
    ("sonnet-4-6", 2048),
    ("3-5-haiku", 2048),
    ("3-haiku", 2048),
)


def min_cacheable_tokens(model_id: str) -> int:
    """The shortest prompt prefix `model_id` writes to its prompt cache."""
    return next((tokens for family, tokens in _MIN_CACHEABLE if family in model_id), 1024)


@dataclass(frozen=True)
class ModelRequest:
    system: str
    tools: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    max_tokens: int
    tool_choice: dict[str, Any] | None = None
    # Seconds this call may take, retries included (the function's time left); None: no limit.
    time_budget: float | None = None

    def cached_system(self) -> list[dict[str, Any]]:
        return [{"type": "text", "text": self.system, "cache_control": BREAKPOINT}]

    def cached_tools(self) -> list[dict[str, Any]]:
        if not self.tools:
            return []
        *head, last = self.tools
        return [*head, {**last, "cache_control": BREAKPOINT}]

    def cached_messages(self) -> list[dict[str, Any]]:
        """The messages, with a breakpoint on the last block of the latest user message."""
        messages = list(self.messages)
        for i in range(len(messages) - 1, -1, -1):
            if messages[i]["role"] != "user":
                continue
            content = messages[i]["content"]
            blocks = [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
            if blocks:
                blocks[-1] = {**blocks[-1], "cache_control": BREAKPOINT}
                messages[i] = {**messages[i], "content": blocks}
            break
        return messages

    def payload(self) -> dict[str, Any]:
        """The Messages API's tools, system and messages, with the cache breakpoints (see the module)."""
        return {
            "tools": self.cached_tools(),
            "system": self.cached_system(),
            "messages": self.cached_messages(),
        }


class ModelProvider(Protocol):
    name: str

    def create(self, request: ModelRequest) -> ModelResponse:
        """One Messages API call; raises ModelUnavailable when the model cannot answer."""
        ...


def estimate_tokens(value: Any) -> int:
    """Documented estimate used for budgets and the benchmark: one token per 4 characters of JSON."""
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)
    return max(1, len(text) // 4)


def _from_message(message: Any) -> ModelResponse:
    data = message.model_dump() if hasattr(message, "model_dump") else dict(message)
    usage = data.get("usage") or {}
    return ModelResponse(
        content=[_block(b) for b in data["content"]],
        stop_reason=data.get("stop_reason"),
        usage=Usage(
            input_tokens=usage.get("input_tokens") or 0,
            output_tokens=usage.get("output_tokens") or 0,
            cache_read_input_tokens=usage.get("cache_read_input_tokens") or 0,
            cache_creation_input_tokens=usage.get("cache_creation_input_tokens") or 0,
        ),
        model=data.get("model", ""),
    )


def _block(block: dict[str, Any]) -> dict[str, Any]:
    if block.get("type") == "tool_use":
        return {
            "type": "tool_use",
            "id": block["id"],
            "name": block["name"],
            "input": block.get("input") or {},
        }
    if block.get("type") == "text":
        return {"type": "text", "text": block.get("text", "")}
    return {k: v for k, v in block.items() if v is not None}


class AnthropicProvider:
    """Claude through the `anthropic` SDK: `Anthropic` (API key) or `AnthropicBedrock` (IAM)."""

    # The SDK's backoff between attempts is at most 8 s (anthropic._constants.MAX_RETRY_DELAY).
    RETRY_DELAY = 8.0

    def __init__(
        self,
        client: Any,
        model: str,
        name: str = "anthropic",
        timeout: float = 60.0,
        max_retries: int = 3,
    ) -> None:
        self.client = client
        self.model = model
        self.name = f"{name}:{model}"
        self.timeout = timeout
        self.max_retries = max_retries

    def retries_within(self, seconds: float | None) -> int:
        """How many retries fit in `seconds` after the first attempt (each: backoff + one timeout)."""
        if seconds is None:
            return self.max_retries
        fit = int((seconds - self.timeout) // (self.RETRY_DELAY + self.timeout))
        return max(0, min(self.max_retries, fit))

    @classmethod
    def from_api_key(
        cls, api_key: str, model: str, timeout: float = 60.0, max_retries: int = 3
    ) -> AnthropicProvider:
        import anthropic

        client = anthropic.Anthropic(api_key=api_key, timeout=timeout, max_retries=max_retries)
        return cls(client, model, timeout=timeout, max_retries=max_retries)

    @classmethod
    def bedrock(cls, model: str, region: str | None = None, timeout: float = 60.0) -> AnthropicProvider:
        import anthropic

        client = anthropic.AnthropicBedrock(aws_region=region, timeout=timeout, max_retries=3)
        return cls(client, model, "bedrock", timeout=timeout)

    def create(self, request: ModelRequest) -> ModelResponse:
        import anthropic

        kwargs: dict[str, Any] = {"model": self.model, "max_tokens": request.max_tokens, **request.payload()}
        if request.tool_choice:
            kwargs["tool_choice"] = request.tool_choice
        retries = self.retries_within(request.time_budget)
        client = self.client if retries == self.max_retries else self.client.with_options(max_retries=retries)
        try:
            message = client.messages.create(**kwargs)
        except anthropic.APIConnectionError as exc:  # timeouts included
            raise ModelUnavailable(f"{type(exc).__name__}: the model did not answer after retries") from exc
        except anthropic.APIStatusError as exc:
            # 429/5xx after the SDK's retries, and 4xx that no retry fixes (a rotated key: 401; a request
            # the API refuses: 400, 413): either way the ticket goes to people, with the status as reason.
            kind = exc.body.get("error", {}).get("type", "") if isinstance(exc.body, dict) else ""
            raise ModelUnavailable(f"model API answered {exc.status_code} {kind}".strip()) from exc
        return _from_message(message)


class ReplayProvider:
    """Plays back recorded Messages API responses, in order (tests, and reproducing incidents)."""

    def __init__(self, responses: list[dict[str, Any]], name: str = "replay") -> None:
        self.responses = list(responses)
        self.requests: list[ModelRequest] = []
        self.name = name

    @classmethod
    def from_file(cls, path: str | Path) -> ReplayProvider:
        """A JSON list of responses, or JSON lines with one response each."""
        text = Path(path).read_text(encoding="utf-8").strip()
        data = (
            json.loads(text)
            if text.startswith("[")
            else [json.loads(line) for line in text.splitlines() if line]
        )
        return cls(data, f"replay:{Path(path).name}")

    def create(self, request: ModelRequest) -> ModelResponse:
        from support_agent.agent.conversation import check

        check(request.messages)  # what the real API would answer 400 to fails here too
        self.requests.append(request)
        if not self.responses:
            raise ModelUnavailable("the replay has no more recorded responses")
        recorded = self.responses.pop(0)
        if "error" in recorded and "content" not in recorded:
            raise ModelUnavailable(f"recorded failure: {recorded['error']}")
        from anthropic.types import Message

        return _from_message(Message.model_validate(recorded))


def replay_file_name(ticket_id: str) -> str:
    """The file of a ticket's recorded responses in a replay folder (the id made safe as a file name)."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in ticket_id).strip(".")
    return f"{safe or 'ticket'}.jsonl"


class ReplayLibrary:
    """Recorded responses per ticket, from a folder: `<ticket id>.jsonl`, line n answering the ticket's n-th
    model turn. It keeps no state, so it replays across invocations (a session resumed after an approval
    goes on with the next line), in any order of tickets."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise ValueError(f"replay folder {self.folder} does not exist")
        self.name = f"replay:{self.folder.name}"
        self.requests: list[ModelRequest] = []

    def create(self, request: ModelRequest) -> ModelResponse:
        from support_agent.agent.conversation import check, model_turns, ticket_data

        check(request.messages)  # what the real API would answer 400 to fails here too
        self.requests.append(request)
        ticket = str(ticket_data(request.messages).get("ticket", {}).get("id", ""))
        path = self.folder / replay_file_name(ticket)
        if not ticket or not path.is_file():
            raise ModelUnavailable(f"the replay has no recording for ticket {ticket[:64]!r}")
        recorded = ReplayProvider.from_file(path).responses
        turn = model_turns(request.messages)
        if turn >= len(recorded):
            raise ModelUnavailable(
                f"the replay of ticket {ticket[:64]!r} has no response for turn {turn + 1}"
            )
        return ReplayProvider([recorded[turn]], self.name).create(request)


def replay(path: str | Path) -> ModelProvider:
    """`replay:PATH`: a folder of recordings per ticket, or one file of responses played in order."""
    return ReplayLibrary(path) if Path(path).is_dir() else ReplayProvider.from_file(path)


def as_message(response: ModelResponse, message_id: str) -> dict[str, Any]:
    """A response in the Messages API's JSON shape (what a replay file holds, one per line)."""
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": response.model,
        "content": response.content,
        "stop_reason": response.stop_reason,
        "stop_sequence": None,
        "usage": response.usage.model_dump(),
    }
