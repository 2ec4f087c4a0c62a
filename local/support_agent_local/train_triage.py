"""Trains the learned escalation check (support_agent.agent.triage_model) from labelled CSV files.

Rows are `text,intent,route` with route `escalate` or `auto` (`either` rows are left out). The model is a
logistic regression over hashed features of the guard's canonical reading, fitted by stochastic gradient
descent in a fixed order (no random numbers), so the same files give the same bytes on every run.

The threshold is chosen on the training files only: out-of-fold scores (each row scored by a model that did
not see it) are combined with the rules' own routes, and the threshold is the lowest one at which the model
stops no more than `AUTO_BUDGET` of the auto rows the rules let through. Only the rules' misses matter:
the model cannot take an escalation away.

`python -m support_agent_local.train_triage [--out PATH] [FILE ...]` (`make train-triage`).
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import json
import math
import sys
import zlib
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support_agent.agent.triage import Triage
from support_agent.agent.triage_model import FORMAT, SHIPPED, TriageModel, buckets
from support_agent.rules.policy import load_policy

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "triage"
FILES = (DATA / "bitext_dev.csv", DATA / "banking77_train.csv")
# Hand-written auto questions on the topics escalations are about (payments, direct debits, cash, refund
# policy and status, fees): without them the model learns those topics, not the disputes, as escalations.
ANCHORS = DATA / "guard_anchors.csv"
POLICY = ROOT / "policies" / "acme-support.yaml"

SIZE = 1 << 15
CHAR_NGRAMS = (3, 5)
EPOCHS = 12
LEARNING_RATE = 0.4
L2 = 1e-5
FOLDS = 5
# Share of the auto rows the rules let through that the model may stop, measured out of fold.
AUTO_BUDGET = 0.01


@dataclass(frozen=True)
class Row:
    text: str
    escalate: bool
    indexes: list[int]
    rules_escalate: bool
    order: int


def read_rows(files: Sequence[Path], policy: Path = POLICY) -> list[Row]:
    """The labelled rows of `files` with their features and the rules' routes."""
    triage = Triage(load_policy(policy), model=None)
    rows: list[Row] = []
    for path in files:
        with path.open(encoding="utf-8", newline="") as handle:
            for record in csv.DictReader(handle):
                if record["route"] not in ("escalate", "auto"):
                    continue
                text = record["text"]
                reading = triage.guard.readings(text)[-1]
                rows.append(
                    Row(
                        text=text,
                        escalate=record["route"] == "escalate",
                        indexes=buckets(reading, SIZE, CHAR_NGRAMS),
                        rules_escalate=triage.decide(text).route == "escalate",
                        order=zlib.crc32(text.encode()),
                    )
                )
    return rows


def fit(rows: Sequence[Row]) -> tuple[float, list[float]]:
    """Bias and weights of a logistic regression, classes weighted to count equally."""
    weights = [0.0] * SIZE
    bias = 0.0
    positives = sum(r.escalate for r in rows)
    if not positives or positives == len(rows):
        raise ValueError("training needs both escalate and auto rows")
    weight_of = {True: len(rows) / (2 * positives), False: len(rows) / (2 * (len(rows) - positives))}
    for epoch in range(EPOCHS):
        rate = LEARNING_RATE / (1 + epoch)
        # A different fixed order each epoch, from the text's checksum.
        for row in sorted(rows, key=lambda r: (zlib.crc32(r.order.to_bytes(4, "big"), epoch), r.text)):
            value = 1 / math.sqrt(len(row.indexes)) if row.indexes else 0.0
            z = bias + value * sum(weights[i] for i in row.indexes)
            p = 1 / (1 + math.exp(-max(-30.0, min(30.0, z))))
            gradient = (p - float(row.escalate)) * weight_of[row.escalate]
            bias -= rate * gradient
            step = rate * gradient * value
            for i in row.indexes:
                weights[i] -= step + rate * L2 * weights[i]
    return bias, weights


def quantise(bias: float, weights: list[float]) -> tuple[float, float, array[int]]:
    """Signed-byte weights and their scale (bias and scale rounded so the file is stable)."""
    largest = max(abs(w) for w in weights) or 1.0
    scale = round(largest / 127, 9)
    q = array("b", (max(-127, min(127, round(w / scale))) for w in weights))
    return round(bias, 6), scale, q


def model_of(bias: float, weights: list[float], threshold: float = 0.0) -> TriageModel:
    """The quantised model, as inference will see it."""
    b, scale, q = quantise(bias, weights)
    return TriageModel(SIZE, CHAR_NGRAMS, b, scale, threshold, q, {})


def out_of_fold_scores(rows: Sequence[Row], folds: int) -> list[float]:
    """Each row's score from a model trained on the other folds (fold = checksum modulo `folds`)."""
    scores = [0.0] * len(rows)
    for fold in range(folds):
        train = [r for r in rows if r.order % folds != fold]
        model = model_of(*fit(train))
        for i, row in enumerate(rows):
            if row.order % folds == fold:
                scores[i] = model.score_buckets(row.indexes)
    return scores


def choose_threshold(rows: Sequence[Row], scores: Sequence[float], budget: float = AUTO_BUDGET) -> float:
    """The threshold from out-of-fold `scores`: within `budget`, as many of the rules' misses as possible.

    Start at the lowest threshold at which the model stops at most `budget` of the auto rows the rules
    let through, then raise it as long as it still catches the same misses (auto rows are not spent for
    nothing). When it catches none, the threshold is above every score: the model stays silent.
    """
    passed = sorted(
        (s for r, s in zip(rows, scores, strict=True) if not r.escalate and not r.rules_escalate),
        reverse=True,
    )
    allowed = math.floor(budget * len(passed))
    lowest = passed[allowed] + 1e-6 if allowed < len(passed) else min(scores)
    missed = sorted(s for r, s in zip(rows, scores, strict=True) if r.escalate and not r.rules_escalate)
    caught = [s for s in missed if s >= lowest]
    if not caught:
        return round(max(scores) + 1e-6, 6)
    # The lowest caught miss: every threshold up to it catches the same ones.
    return math.floor(caught[0] * 1e6) / 1e6


def train(files: Sequence[Path], policy: Path = POLICY, folds: int = FOLDS) -> dict[str, Any]:
    """The model data file's contents, trained on `files`."""
    rows = read_rows(files, policy)
    threshold = choose_threshold(rows, out_of_fold_scores(rows, folds))
    bias, scale, q = quantise(*fit(rows))
    return {
        "format": FORMAT,
        "size": SIZE,
        "char_ngrams": list(CHAR_NGRAMS),
        "bias": bias,
        "scale": scale,
        "threshold": threshold,
        "about": {
            "trained_on": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files},
            "rows": len(rows),
            "escalate_rows": sum(r.escalate for r in rows),
            "auto_budget": AUTO_BUDGET,
            "epochs": EPOCHS,
            "folds": folds,
        },
        "weights": base64.b64encode(q.tobytes()).decode("ascii"),
    }


def write(document: dict[str, Any], out: Path) -> None:
    """Write the data file (sorted keys, fixed layout: same contents, same bytes)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, sort_keys=True, indent=1) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("files", nargs="*", type=Path, default=[*FILES, ANCHORS])
    parser.add_argument("--out", type=Path, default=SHIPPED)
    parser.add_argument("--policy", type=Path, default=POLICY)
    args = parser.parse_args(argv)
    document = train(args.files, args.policy)
    write(document, args.out)
    model = TriageModel.from_json(document)
    print(
        f"{args.out}: {args.out.stat().st_size} bytes, threshold {model.threshold}, {document['about']['rows']} rows"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
