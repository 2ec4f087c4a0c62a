"""Cold import time of each handler, imported as Lambda does (module `app`, layer on the path), next to
`import boto3` alone. Each figure is the median of fresh interpreter runs.

Usage: python bench/import_time.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

from support_agent_local.emulator import EmbeddedAws

ROOT = Path(__file__).resolve().parents[1]
LAYER = ROOT / "layers" / "common"

PROBE = """
import sys, time
sys.path[:0] = [{func!r}, {layer!r}]
t = time.perf_counter()
{stmt}
print(time.perf_counter() - t)
"""


def cold_import(stmt: str, func_dir: Path, env: dict[str, str] | None = None) -> float:
    """Seconds one fresh interpreter spends on `stmt` (with the function's environment: a handler checks
    its settings when imported)."""
    code = PROBE.format(func=str(func_dir), layer=str(LAYER), stmt=stmt)
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=func_dir,
        env={**os.environ, **(env or {})},
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    functions = sorted(d for d in (ROOT / "functions").iterdir() if (d / "app.py").exists())
    with EmbeddedAws() as stack:  # only for the names and addresses each function's environment holds
        envs = {
            d.name: stack.function_environment(stack.function_for_code(f"functions/{d.name}"))
            for d in functions
        }
    # Interleave the baseline with each handler so that drift in machine load hits both alike.
    base: list[float] = []
    took: dict[str, list[float]] = {d.name: [] for d in functions}
    ratios: dict[str, list[float]] = {d.name: [] for d in functions}
    for _ in range(args.runs):
        for func_dir in functions:
            b = cold_import("import boto3", ROOT)
            t = cold_import("import app", func_dir, envs[func_dir.name])
            base.append(b)
            took[func_dir.name].append(t)
            ratios[func_dir.name].append(t / b)
    print(f"{'import boto3 alone':<32} {statistics.median(base) * 1000:7.1f} ms")
    for name in took:
        median_ms = statistics.median(took[name]) * 1000
        ratio = statistics.median(ratios[name])
        label = f"functions/{name}/app.py"
        print(f"{label:<32} {median_ms:7.1f} ms  ({ratio:.2f}x boto3, median of paired runs)")
    print(f"runs: {args.runs} fresh interpreters per figure; python {sys.version.split(maxsplit=1)[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
