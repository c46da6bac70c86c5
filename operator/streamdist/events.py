"""Which Event a change deserves: one pure policy for every Event the operator posts.

Events mark what a person watching `kubectl describe` needs to see: failures, a
recovery, a switch of source, a replacement. Steps on the way up (Pending, Connecting,
Waiting) post nothing: an Event each would triple the writes per new output. An
output entering or leaving a window of its schedule is planned: a Normal Event each way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WARNING_PHASES = frozenset({"Failed", "Invalid", "Reconnecting"})
QUIET_PHASES = frozenset({"Pending", "Connecting", "Waiting"})
UP_PHASES = frozenset({"Streaming", "Live"})
SCHEDULED = "Scheduled"  # an output off air outside every window of its schedule
ON_AIR_PHASES = frozenset({"Pending", "Connecting", "Streaming", "Reconnecting"})
WINDOW_OPENED = "a window of spec.schedule opened: the output goes on air"
WINDOW_CLOSED = "the window of spec.schedule closed: the output went off air"


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


def transition(previous: dict[str, Any], status: dict[str, Any], reason: str, message: str) -> Event | None:
    """An Event when the phase moved (or a failure's reason changed); None otherwise."""
    phase, before = status.get("phase"), previous.get("phase")
    windowed = window(before, phase)
    if windowed:
        return windowed
    if phase == before and (phase not in WARNING_PHASES or ready_reason(previous) == ready_reason(status)):
        return None
    lost = before in UP_PHASES and phase not in UP_PHASES
    if phase in QUIET_PHASES and not lost:
        return None
    return Event("Warning" if phase in WARNING_PHASES or lost else "Normal", reason, message)


def window(before: str | None, phase: str | None) -> Event | None:
    """An output entering or leaving a window of its schedule (not a failure: Normal)."""
    if before == SCHEDULED and phase in ON_AIR_PHASES:
        return Event("Normal", "WindowOpened", WINDOW_OPENED)
    if phase == SCHEDULED and before in ON_AIR_PHASES:
        return Event("Normal", "WindowClosed", WINDOW_CLOSED)
    return None


def switched(previous_source: str | None, source: str | None, reason: str, message: str) -> Event | None:
    """An input's readers now get another source (primary, backup, the slate): Normal
    for the primary, a Warning for anything else."""
    if not source or not previous_source or previous_source == source:
        return None
    return Event("Normal" if source == "primary" else "Warning", reason, message)


def replaced(reason: str, message: str, planned: bool) -> Event:
    """The operator replaced an output's pod: a failure (Warning) or a change (Normal)."""
    return Event("Normal" if planned else "Warning", reason, message)


def ready_reason(status: dict[str, Any]) -> str | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("reason")  # type: ignore[no-any-return]
    return None


def degraded(previous: dict[str, Any], status: dict[str, Any], what: str = "the output") -> Event | None:
    """The Degraded condition turned True (Warning, its reason) or back from True
    (`what` names the kind in the Recovered message)."""
    before, now = _condition(previous, "Degraded"), _condition(status, "Degraded")
    if now is None or now.get("status") == (before or {}).get("status"):
        return None
    if now.get("status") == "True":
        return Event("Warning", str(now.get("reason")), str(now.get("message")))
    if (before or {}).get("status") == "True":
        return Event("Normal", "Recovered", f"{what} is no longer degraded")
    return None


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), None)
