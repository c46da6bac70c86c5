"""Are we the replica that acts? Read from kopf's own peering object.

kopf pauses its watch handlers when a live peer has a higher (or the same) priority,
but our resync loop is not a kopf handler: it asks the same question, the same way
kopf answers it, before it touches anything.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any


def paused(status: dict[str, Any], me: str, priority: int, now: datetime | None = None) -> bool:
    """True when another live peer outranks us or ties with us (kopf then pauses all)."""
    now = now or datetime.now(UTC)
    for peer_id, info in (status or {}).items():
        if peer_id == me or not isinstance(info, dict):
            continue
        if _dead(info, now):
            continue
        if int(info.get("priority", 0)) >= priority:
            return True
    return False


def _dead(info: dict[str, Any], now: datetime) -> bool:
    seen = info.get("lastseen")
    if not seen:
        return True
    try:
        last = datetime.fromisoformat(str(seen).replace("Z", "+00:00"))
    except ValueError:
        return True
    if last.tzinfo is None:
        last = last.replace(tzinfo=UTC)
    return last + timedelta(seconds=int(info.get("lifetime") or 60)) < now
