"""Lambda SnapStart hooks (template.yaml turns SnapStart on for the HTTP functions' published versions).

Under SnapStart, Lambda runs the init phase when it publishes a version and restores new execution
environments from a snapshot of it, so whatever the first request would load is better loaded before the
snapshot: a priming hook does that, short of the network. Secrets are not fetched into a snapshot (it
outlives rotations; each environment reads them itself). The `random` module's state would be the same in
every environment restored from one snapshot, so it is seeded again after each restore.

snapshot_restore_py ships with Lambda's managed Python runtimes only; elsewhere (tests, local runs) these
registrations do nothing, and so do they in Lambda when SnapStart is off.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable[[], object])


def before_snapshot(prime: F) -> F:
    """Register `prime` to run before Lambda takes the snapshot (and reseed `random` after each restore)."""
    try:
        from snapshot_restore_py import (  # type: ignore[import-not-found]
            register_after_restore,
            register_before_snapshot,
        )
    except ImportError:
        return prime
    register_before_snapshot(prime)
    register_after_restore(random.seed)
    return prime
