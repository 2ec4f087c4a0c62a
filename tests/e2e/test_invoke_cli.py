"""`support-agent invoke FUNCTION --event FILE` runs every sample event, as `sam local invoke -e` would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support_agent_local import events

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted(events.manifest()))
def test_invoke_every_event(name):
    spec = events.sample(name)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "support_agent_local.cli",
            "invoke",
            spec.function,
            "--event",
            f"events/{name}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-1500:]
    # Handler logs come first (JSON lines); the response is the indented object starting at a lone "{".
    lines = out.stdout.splitlines()
    start = max(i for i, line in enumerate(lines) if line == "{")
    response = json.loads("\n".join(lines[start:]))
    for key, value in spec.spec["expect"].items():
        assert response[key] == value
