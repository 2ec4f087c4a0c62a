"""A model of Anthropic's prompt cache, so that the offline provider reports `usage` as the API would:
how many input tokens were read from the cache, written to it, and processed without it.

What it follows (Anthropic's prompt-caching documentation): the prompt is tools, then system, then
messages, in blocks; a `cache_control` breakpoint writes the prefix up to and including its block, if
that prefix reaches the model's minimum cacheable length; a later request reads the longest written
prefix it repeats exactly, found at one of its breakpoints or up to 20 blocks before one; an entry lives
5 minutes from its last use. The marker itself is not part of the prefix (moving the breakpoint to the
newest message keeps the earlier prefix readable). Tokens are counted as everywhere offline: one per 4
characters of JSON (`llm.estimate_tokens`).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from support_agent.agent.llm import estimate_tokens

LOOKBACK_BLOCKS = 20
TTL_SECONDS = 300.0


@dataclass(frozen=True)
class CacheUsage:
    read: int
    written: int
    uncached: int


def blocks(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The prompt's blocks in the order the API reads them (tools, system, then each message's blocks,
    each tagged with its message's role and position)."""
    out: list[dict[str, Any]] = [{"tool": t} for t in payload.get("tools", [])]
    out += [{"system": b} for b in payload.get("system", [])]
    for n, message in enumerate(payload.get("messages", [])):
        content = message["content"]
        items = [{"type": "text", "text": content}] if isinstance(content, str) else content
        out += [{"message": n, "role": message["role"], "block": b} for b in items]
    return out


def _is_breakpoint(block: dict[str, Any]) -> bool:
    inner = block.get("tool") or block.get("system") or block.get("block") or {}
    return "cache_control" in inner


def _without_marker(block: dict[str, Any]) -> str:
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "cache_control"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return json.dumps(strip(block), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class PromptCache:
    """Prefix hashes with their expiry; safe to share between threads (one per model, like the API's)."""

    def __init__(
        self,
        min_tokens: int,
        capacity: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.min_tokens = min_tokens
        self.capacity = capacity
        self.clock = clock
        self._entries: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def use(self, payload: dict[str, Any]) -> CacheUsage:
        """What one request reads, writes and processes uncached; records what it writes."""
        items = blocks(payload)
        digest = hashlib.sha256()
        hashes: list[str] = []
        ends: list[int] = []  # tokens up to and including each block
        total = 0
        for block in items:
            text = _without_marker(block)
            digest.update(text.encode())
            hashes.append(digest.copy().hexdigest())
            total += estimate_tokens(text)
            ends.append(total)
        marks = [i for i, block in enumerate(items) if _is_breakpoint(block)]
        now = self.clock()
        with self._lock:
            hit = -1
            for mark in marks:
                for i in range(mark, max(-1, mark - LOOKBACK_BLOCKS), -1):
                    expires = self._entries.get(hashes[i])
                    if expires is not None and expires > now:
                        hit = max(hit, i)
                        break
            read = ends[hit] if hit >= 0 else 0
            writes = [m for m in marks if m > hit and ends[m] >= self.min_tokens]
            written = ends[writes[-1]] - read if writes else 0
            for i in ([hit] if hit >= 0 else []) + writes:
                self._entries[hashes[i]] = now + TTL_SECONDS
                self._entries.move_to_end(hashes[i])
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        return CacheUsage(read=read, written=written, uncached=total - read - written)
