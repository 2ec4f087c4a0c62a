"""The README's local commands run as written (the AWS ones, `sam deploy` and `aws secretsmanager`, need an
account; `make demo` and `make test` have their own tests and CI)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers import serving

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```bash\n(.*?)```", README, re.S)
CLI_LINES = [
    line.strip()
    for block in BLOCKS
    for line in block.splitlines()
    if line.strip().startswith(".venv/bin/support-agent")
    # The eval commands run in tests/e2e/test_eval.py, which checks their results (and that they are here).
    and not line.strip().startswith(".venv/bin/support-agent eval ")
]


def test_readme_opens_with_the_two_commands():
    first = BLOCKS[0].splitlines()
    assert first[0].startswith("make demo") and first[1].startswith("make test")


@pytest.mark.parametrize("line", CLI_LINES)
def test_readme_cli_command(line):
    out = subprocess.run(line, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-1500:]
    assert out.stdout.strip()


def test_readme_curl_against_serve():
    block = next(b for b in BLOCKS if "curl" in b)
    with serving() as url:
        port = url.rsplit(":", 1)[1]
        out = subprocess.run(
            ["bash", "-c", block.replace("localhost:3000", f"localhost:{port}")],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert '"status":"queued"' in out.stdout.replace(" ", ""), out.stdout + out.stderr
