"""Learned escalation check: a hashed n-gram logistic regression that can only add escalations.

The guard's rules miss phrasings nobody wrote a pattern for ("a payment I never made", "this charge is
not mine"); the model, trained on labelled tickets (`make train-triage`), flags tickets that read like
the escalations it has seen. It only ever turns an auto route into an escalation, never the reverse, so
a wrong score costs a person's time, not a wrong answer.

Features are computed from the guard's canonical reading of the ticket (folded, obfuscation and misspelt
keywords undone): words, word pairs and character 3- to 5-grams of each word, hashed with CRC-32 into a
fixed number of buckets, each present feature counting 1/sqrt(number of features). The weights ship as
signed bytes (one per bucket, times a scale) in a JSON file of a few tens of kilobytes; inference is pure
Python, deterministic, and loading costs a few milliseconds.
"""

from __future__ import annotations

import base64
import json
import math
import re
import zlib
from array import array
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Any

FORMAT = 1
SHIPPED = Path(__file__).resolve().parents[1] / "data" / "triage_model.json"
_WORD = re.compile(r"[a-z]+")


def feature_names(reading: str, char_ngrams: tuple[int, int]) -> set[str]:
    """The distinct feature strings of a ticket's canonical reading (before hashing)."""
    words = _WORD.findall(reading)
    found = {f"w {w}" for w in words}
    found.update(f"b {a} {b}" for a, b in pairwise(words))
    low, high = char_ngrams
    for word in set(words):
        padded = f"<{word}>"
        for n in range(low, high + 1):
            found.update(f"c {padded[i : i + n]}" for i in range(len(padded) - n + 1))
    return found


def buckets(reading: str, size: int, char_ngrams: tuple[int, int]) -> list[int]:
    """The hashed feature indexes of a reading, sorted, one per distinct feature (collisions kept)."""
    return sorted(zlib.crc32(name.encode()) % size for name in feature_names(reading, char_ngrams))


@dataclass(frozen=True)
class TriageModel:
    """Weights and threshold of the learned check; `escalates` is the only decision it makes."""

    size: int
    char_ngrams: tuple[int, int]
    bias: float
    scale: float
    threshold: float
    weights: array[int]
    about: dict[str, Any]

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> TriageModel:
        """Build from the data file's contents; refuses a format or size it does not know."""
        if document.get("format") != FORMAT:
            raise ValueError(f"triage model format {document.get('format')!r}, expected {FORMAT}")
        weights = array("b", base64.b64decode(document["weights"]))
        if len(weights) != document["size"]:
            raise ValueError(f"triage model has {len(weights)} weights for {document['size']} buckets")
        low, high = document["char_ngrams"]
        return cls(
            size=document["size"],
            char_ngrams=(low, high),
            bias=document["bias"],
            scale=document["scale"],
            threshold=document["threshold"],
            weights=weights,
            about=document.get("about", {}),
        )

    @classmethod
    def load(cls, path: Path) -> TriageModel:
        """Read a model data file."""
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")))

    def score(self, reading: str) -> float:
        """Log-odds that the ticket (its canonical reading) needs a person."""
        return self.score_buckets(buckets(reading, self.size, self.char_ngrams))

    def score_buckets(self, indexes: list[int]) -> float:
        """`score` from the reading's hashed feature indexes."""
        if not indexes:
            return self.bias
        total = sum(self.weights[i] for i in indexes)
        return self.bias + self.scale * total / math.sqrt(len(indexes))

    def escalates(self, reading: str) -> bool:
        """True when the score reaches the threshold chosen at training time."""
        return self.score(reading) >= self.threshold


@lru_cache(maxsize=1)
def shipped() -> TriageModel:
    """The model that ships in the layer, loaded once per process."""
    return TriageModel.load(SHIPPED)
