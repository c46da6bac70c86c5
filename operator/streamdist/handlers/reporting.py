"""Writing status and Events: only on change, so 200 quiet outputs cost no writes."""

from __future__ import annotations

from typing import Any

from ..status import status_changed
from .context import Context, logline

WARNING_PHASES = frozenset({"Failed", "Invalid", "Reconnecting"})
# Steps on the way up: an Event for each would triple the writes per new output.
QUIET_PHASES = frozenset({"Pending", "Connecting", "Waiting"})
UP_PHASES = frozenset({"Streaming", "Live"})


def previous_status(ctx: Context, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """The status as last written by us, else as last seen in the watch.

    The index lags our own patches by one watch event; reading it alone would write
    the same status twice and post the same Event twice.
    """
    meta = body["metadata"]
    written = ctx.written.get((kind, meta["namespace"], meta["name"]))
    if written and written[0] == meta.get("uid"):
        return written[1]
    return body.get("status") or {}


def write_status(ctx: Context, kind: str, body: dict[str, Any], status: dict[str, Any]) -> None:
    meta = body["metadata"]
    ctx.kube.patch_status(kind, meta["namespace"], meta["name"], status)
    merged = {**previous_status(ctx, kind, body), **status}
    ctx.written[(kind, meta["namespace"], meta["name"])] = (meta.get("uid", ""), merged)


def report(ctx: Context, kind: str, body: dict[str, Any], status: dict[str, Any], reason: str, message: str) -> None:
    """Patch status when it differs; post an Event when the phase (or failure reason) moved."""
    meta = body["metadata"]
    previous = previous_status(ctx, kind, body)
    if not status_changed(previous, status):
        return
    write_status(ctx, kind, body, status)
    phase, before = status.get("phase"), previous.get("phase")
    if phase == before and (phase not in WARNING_PHASES or _ready_reason(previous) == _ready_reason(status)):
        return
    lost = before in UP_PHASES and phase not in UP_PHASES
    logline("transition", kind=kind, namespace=meta["namespace"], name=meta["name"], phase=phase, reason=reason)
    if phase in QUIET_PHASES and not lost:
        return
    ctx.kube.event({**body, "kind": kind}, "Warning" if phase in WARNING_PHASES or lost else "Normal", reason, message)


def _ready_reason(status: dict[str, Any]) -> str | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("reason")  # type: ignore[no-any-return]
    return None
