"""Agent-step figures on the emulated stack (moto), one ticket per outcome, replay provider.

Prints for each outcome: AWS calls by service, each model request's estimated input tokens (one token per
4 characters of JSON, see support_agent.agent.llm.estimate_tokens) split as the prompt cache would
(support_agent.agent.prompt_cache: read, written, uncached), and the agent step's wall time excluding
the model.

Usage: python bench/agent_step.py
"""

from __future__ import annotations

import collections
import time
from typing import Any

import boto3
from support_agent import aws
from support_agent.agent.llm import ModelRequest, ModelResponse, ReplayProvider, min_cacheable_tokens
from support_agent.agent.prompt_cache import PromptCache
from support_agent.composition import agent_runner
from support_agent.models import Requester, SessionState, Ticket
from support_agent.rules.sessions import new_session
from support_agent_local.emulator import EmbeddedAws


def msg(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "m",
        "type": "message",
        "role": "assistant",
        "model": "claude-bench",
        "content": list(blocks),
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 2000,
            "output_tokens": 150,
            "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 0,
        },
    }


def use(name: str, id_: str, **args: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": id_, "name": name, "input": args}


CLASSIFY = use("classify_ticket", "c", category="order_status", confidence=0.9)
CASES = {
    "respond (one tool round)": (
        "Where is my order?",
        [
            msg(CLASSIFY, use("list_orders", "o")),
            msg(
                use(
                    "reply_to_customer",
                    "r",
                    body="Hi Jane, ORD-5001 shipped with UPS, arriving 29 Nov.",
                    status="solved",
                )
            ),
        ],
    ),
    "approval (refund)": (
        "Refund my March invoice, you were down 2 days.",
        [
            msg(CLASSIFY, use("list_invoices", "i")),
            msg(
                use(
                    "issue_refund",
                    "f",
                    invoice_id="in_jane_2026_03",
                    amount_cents=19900,
                    reason="outage",
                )
            ),
        ],
    ),
    "handoff (complaint)": (
        "Your agent was rude to me, I want to complain.",
        [
            msg(
                CLASSIFY,
                use("hand_off_to_human", "h", reason="complaint", summary="Complaint about an agent."),
            ),
        ],
    ),
}


class TimedReplay(ReplayProvider):
    def __init__(self, responses: list[dict[str, Any]]) -> None:
        super().__init__(responses)
        self.model_seconds = 0.0

    def create(self, request: ModelRequest) -> ModelResponse:
        started = time.perf_counter()
        try:
            return super().create(request)
        finally:
            self.model_seconds += time.perf_counter() - started


def main() -> int:
    counts: collections.Counter[str] = collections.Counter()
    # The requests as the API would cache them (Sonnet 4.5's minimum; the three tickets share the cache).
    cache = PromptCache(min_cacheable_tokens("claude-sonnet-4-5"))
    with EmbeddedAws() as stack, stack.environment_of("AgentStepFunction"):
        boto3._get_default_session().events.register(
            "before-call", lambda model, **_: counts.update([model.service_model.service_name])
        )
        aws.reset_clients()
        repo = stack.sessions()
        for n, (label, (body, script)) in enumerate(CASES.items()):
            ticket = Ticket(
                id=f"B-{n}",
                source="generic",
                subject="bench",
                body=body,
                requester=Requester(email="jane.smith@example.com"),
                customer_id="cus_jane",
            )
            repo.create(new_session(f"bench-{n}", ticket, SessionState.QUEUED))
            runner = agent_runner(TimedReplay(script))
            provider = runner.loop.provider
            assert isinstance(provider, TimedReplay)
            counts.clear()
            started = time.perf_counter()
            result = runner.start(f"bench-{n}")
            wall = time.perf_counter() - started - provider.model_seconds
            calls = dict(counts)
            total = sum(calls.values())
            print(
                f"{label}: outcome={result.outcome}  AWS calls={total} {calls}  agent time excl. model={wall * 1000:.0f} ms"
            )
            for i, req in enumerate(provider.requests, 1):
                used = cache.use(req.payload())
                whole = used.read + used.written + used.uncached
                print(
                    f"   model request {i}: ~{whole} input tokens: {used.read} read from the prompt cache "
                    f"({used.read / whole:.0%}), {used.written} written, {used.uncached} uncached"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
