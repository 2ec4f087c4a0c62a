"""Time, behind one seam so tests and the demo can pin it."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now() -> datetime:
    """Current time, timezone-aware UTC."""
    return datetime.now(UTC)


def epoch() -> int:
    """Current Unix time in whole seconds."""
    return int(time.time())


def iso(ts: datetime | None = None) -> str:
    """ISO-8601 UTC timestamp with milliseconds, sortable as text."""
    return (ts or now()).astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
