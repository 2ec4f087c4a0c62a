"""One emulated stack for the contract suites: they only read and write the embedded table, each test
on tickets of its own, so they can share it (a stack takes a second or two to provision)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support_agent_local.emulator import EmbeddedAws


@pytest.fixture(scope="session")
def shared_stack() -> Iterator[EmbeddedAws]:
    with EmbeddedAws() as emulated:
        yield emulated
