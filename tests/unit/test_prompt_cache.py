"""The cache breakpoints a request carries, and the simulated prompt cache the offline provider reports
usage from: what a later turn and another session read, what stays uncached, and when nothing caches."""

from __future__ import annotations

from typing import Any

from support_agent.agent.llm import ModelRequest, estimate_tokens, min_cacheable_tokens
from support_agent.agent.prompt_cache import TTL_SECONDS, PromptCache

TOOLS = [
    {"name": f"tool_{i}", "description": "Looks something up. " * 20, "input_schema": {"type": "object"}}
    for i in range(6)
]
SYSTEM = "You are the support agent. " * 200


def request(*messages: dict[str, Any], tools: list[dict[str, Any]] = TOOLS) -> ModelRequest:
    return ModelRequest(SYSTEM, tools, list(messages), 500)


FIRST = {"role": "user", "content": "<ticket_data>where is my order ORD-1</ticket_data> " * 10}
TURN = {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "tool_0", "input": {}}]}
RESULT = {
    "role": "user",
    "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "shipped " * 40}],
}


def whole(r: ModelRequest, cache: PromptCache) -> tuple[int, int, int]:
    used = cache.use(r.payload())
    return used.read, used.written, used.uncached


def test_breakpoints_sit_on_the_last_tool_the_system_prompt_and_the_latest_user_block() -> None:
    payload = request(FIRST, TURN, RESULT).payload()
    marked = [t["name"] for t in payload["tools"] if "cache_control" in t]
    assert marked == ["tool_5"] and "cache_control" in payload["system"][0]
    first, turn, result = payload["messages"]
    assert first == FIRST  # the earlier user turn is sent as it was (no marker left behind)
    assert turn == TURN
    assert result["content"][-1]["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" not in RESULT["content"][-1]  # the transcript itself is not changed
    string_turn = request(FIRST).payload()["messages"][0]["content"]
    assert string_turn == [{"type": "text", "text": FIRST["content"], "cache_control": {"type": "ephemeral"}}]


def test_a_later_turn_reads_the_conversation_so_far_and_another_session_reads_tools_and_system() -> None:
    cache = PromptCache(min_tokens=1024)
    read, written, uncached = whole(request(FIRST), cache)
    assert read == 0 and uncached == 0 and written > 1024  # everything up to the ticket is written
    first_prefix = written
    read, written, uncached = whole(request(FIRST, TURN, RESULT), cache)
    assert read == first_prefix  # found 2 blocks before the new breakpoint
    assert written > 0 and uncached == 0
    other = {"role": "user", "content": "a different ticket " * 10}
    read, written, _ = whole(request(other), cache)
    shared = estimate_tokens_of(request(other).payload(), upto="system")
    assert read == shared and written > 0


def estimate_tokens_of(payload: dict[str, Any], upto: str) -> int:
    """Tokens of the tools and (with upto="system") the system blocks, counted as the cache counts them."""
    from support_agent.agent.prompt_cache import _without_marker, blocks

    parts = [b for b in blocks(payload) if "tool" in b or (upto == "system" and "system" in b)]
    return sum(estimate_tokens(_without_marker(b)) for b in parts)


def test_a_prefix_below_the_minimum_is_never_cached() -> None:
    cache = PromptCache(min_tokens=1_000_000)
    for _ in range(2):
        read, written, uncached = whole(request(FIRST), cache)
        assert (read, written) == (0, 0) and uncached > 0


def test_changed_tools_miss_and_entries_expire() -> None:
    now = [0.0]
    cache = PromptCache(min_tokens=1024, clock=lambda: now[0])
    whole(request(FIRST), cache)
    changed = [*TOOLS[:-1], {**TOOLS[-1], "description": "changed"}]
    assert whole(request(FIRST, tools=changed), cache)[0] == 0  # tools lead the prefix
    assert whole(request(FIRST), cache)[0] > 0
    now[0] += TTL_SECONDS + 1
    assert whole(request(FIRST), cache)[0] == 0


def test_minimum_cacheable_length_by_model() -> None:
    assert min_cacheable_tokens("claude-sonnet-4-5") == 1024
    assert min_cacheable_tokens("us.anthropic.claude-haiku-4-5-20251001-v1:0") == 4096
    assert min_cacheable_tokens("claude-opus-4-5") == 4096
    assert min_cacheable_tokens("claude-3-5-haiku-latest") == 2048


def test_a_session_reads_its_earlier_turns_and_every_call_offers_the_same_tools() -> None:
    from support_agent.agent.llm import ModelResponse
    from support_agent.agent.offline import OfflineProvider
    from support_agent.rules.policy import load_policy
    from support_agent_local.memory import MemoryWorld

    from tests.helpers import ROOT

    class Recording(OfflineProvider):
        def __init__(self) -> None:
            super().__init__("claude-sonnet-4-5", PromptCache(min_tokens=1024))
            self.seen: list[tuple[ModelRequest, ModelResponse]] = []

        def create(self, request: ModelRequest) -> ModelResponse:
            response = super().create(request)
            self.seen.append((request, response))
            return response

    world = MemoryWorld(load_policy(ROOT / "policies" / "acme-support.yaml"))
    provider = Recording()
    for n, text in enumerate(["Where is my order ORD-5001?", "Your agent was rude, I want to complain."]):
        sid = world.ticket(text, subject=f"ticket {n}", customer_id="cus_jane")
        world.runner(provider).start(sid)
    tools = {str(r.tools) for r, _ in provider.seen}
    systems = {r.system for r, _ in provider.seen}
    assert len(tools) == 1 and len(systems) == 1  # byte-identical across turns, routes and sessions
    first, second = provider.seen[0][1].usage, provider.seen[1][1].usage
    assert first.cache_read_input_tokens == 0 and first.cache_creation_input_tokens > 1024
    # The second call of the session reads everything the first one wrote.
    assert second.cache_read_input_tokens == first.cache_creation_input_tokens
    later_session = [
        u for r, u in ((r, resp.usage) for r, resp in provider.seen) if "complain" in str(r.messages[0])
    ]
    assert later_session[0].cache_read_input_tokens > 0  # tools and system prompt from the first session
