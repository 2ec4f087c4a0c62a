"""Shared fixtures: the embedded AWS provisioned from template.yaml, and handler loading as Lambda does it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support_agent_local.emulator import EmbeddedAws

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "policies" / "acme-support.yaml"


@pytest.fixture
def stack() -> Iterator[EmbeddedAws]:
    """A fresh emulated stack (moto) with every table, queue and secret that template.yaml declares."""
    with EmbeddedAws() as emulated:
        yield emulated


@pytest.fixture
def intake_env(stack: EmbeddedAws) -> Iterator[EmbeddedAws]:
    """The stack, with the Intake function's environment set as Lambda would."""
    with stack.environment_of("IntakeFunction"):
        yield stack
