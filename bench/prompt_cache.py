"""Which models cache the agent's prompt: the bundled demo tickets through the agent (in-memory fakes, the
offline provider), once per model, each with a fresh simulated prompt cache at that model's minimum
cacheable length (support_agent.agent.prompt_cache; tokens = characters / 4). Prints the share of input
tokens read from the cache on each session's first model call and on its later calls.

Usage: python bench/prompt_cache.py
"""

from __future__ import annotations

from pathlib import Path

from support_agent.agent.llm import ModelRequest, ModelResponse, Usage, min_cacheable_tokens
from support_agent.agent.offline import OfflineProvider
from support_agent.agent.prompt_cache import PromptCache
from support_agent.rules.policy import load_policy
from support_agent_local.demo import BUNDLED, load_tickets
from support_agent_local.memory import MemoryWorld

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("claude-sonnet-4-5", "claude-sonnet-4-6", "claude-haiku-4-5", "claude-opus-4-5")


class Recording(OfflineProvider):
    def __init__(self, model: str) -> None:
        super().__init__(model, PromptCache(min_cacheable_tokens(model)))
        self.calls: list[Usage] = []

    def create(self, request: ModelRequest) -> ModelResponse:
        response = super().create(request)
        self.calls.append(response.usage)
        return response


def read_share(usages: list[Usage]) -> float:
    read = sum(u.cache_read_input_tokens for u in usages)
    whole = sum(u.input_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens for u in usages)
    return read / whole if whole else 0.0


def main() -> int:
    tickets = load_tickets(BUNDLED)
    policy = load_policy(ROOT / "policies" / "acme-support.yaml")
    print(f"prompt cache by model ({len(tickets)} demo tickets, simulated; tokens = characters/4):")
    for model in MODELS:
        world, provider = MemoryWorld(policy), Recording(model)
        first: list[Usage] = []
        later: list[Usage] = []
        for ticket in tickets:
            provider.calls = []
            extra = {"customer_id": ticket["customer_id"]} if ticket.get("customer_id") else {}
            sid = world.ticket(
                ticket["body"], subject=ticket["subject"], email=ticket["requester_email"], **extra
            )
            world.runner(provider).start(sid)
            first += provider.calls[:1]
            later += provider.calls[1:]
        print(
            f"  {model:<20} minimum {min_cacheable_tokens(model):>5} tokens: first calls "
            f"{read_share(first):4.0%} read from the cache, later calls {read_share(later):4.0%} "
            f"({len(first)} first, {len(later)} later calls)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
