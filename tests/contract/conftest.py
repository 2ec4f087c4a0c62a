"""One emulated stack per contract module: its tests only read and write the embedded table, each on
tickets of its own, so they can share it (a stack takes a second or two to provision). Not wider than a
module: moto's state is process-wide, and other modules provision stacks of their own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support_agent_local.emulator import EmbeddedAws


@pytest.fixture(scope="module")
def shared_stack() -> Iterator[EmbeddedAws]:
    with EmbeddedAws() as emulated:
        yield emulated
