"""Pure status logic: conditions, phases, reconnect counts and last errors.

Every function here takes plain values (pod status dicts as the API server returns
them, MediaMTX health) and returns plain values, so the whole table of pod states is
unit-tested without a cluster and the handlers only write what these decide.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import urls

# Waiting reasons that no restart will fix: the user must change something.
FATAL_WAITING = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "ErrImageNeverPull",
    }
)
# FFmpeg's closing lines that only say "it failed": the reason is on the line before.
EPILOGUE = re.compile(r"^(Error initializing output stream \d+:\d+ --.*|Conversion failed!|Exiting normally.*)$")
URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
MAX_ERROR = 300


def now_iso(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


@dataclass(frozen=True)
class Cond:
    """A condition as decided, before lastTransitionTime is carried over."""

    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str


def conditions(
    previous: list[dict[str, Any]] | None, new: list[Cond], generation: int, now: str
) -> list[dict[str, Any]]:
    """Kubernetes-convention conditions; lastTransitionTime moves only when status does."""
    before = {c.get("type"): c for c in previous or []}
    out = []
    for cond in new:
        old = before.get(cond.type)
        changed = old is None or old.get("status") != cond.status
        out.append(
            {
                "type": cond.type,
                "status": cond.status,
                "reason": cond.reason,
                "message": cond.message,
                "lastTransitionTime": now if changed else old.get("lastTransitionTime", now),  # type: ignore[union-attr]
                "observedGeneration": generation,
            }
        )
    return out


def status_changed(current: dict[str, Any] | None, desired: dict[str, Any]) -> bool:
    """True when writing `desired` would change what the user sees (no patch storms)."""
    current = current or {}
    return any(current.get(k) != v for k, v in desired.items())


def one_line_error(text: str | None) -> str:
    """FFmpeg's last words, as one short masked line fit for status and Events."""
    if not text:
        return ""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return ""
    said = [ln for ln in lines if not EPILOGUE.match(ln)] or lines
    line = URL_IN_TEXT.sub(_mask_match, said[-1])
    return line[:MAX_ERROR]


def _mask_match(match: re.Match[str]) -> str:
    """FFmpeg writes `URL: error`; the colon and other trailing punctuation is not URL."""
    text = match.group(0)
    core = text.rstrip(":,.;)")
    return urls.mask(core) + text[len(core) :]


# --- outputs ------------------------------------------------------------------


@dataclass(frozen=True)
class PodView:
    """What the operator reads from an output's pod."""

    name: str
    phase: str = "Pending"
    deleting: bool = False
    unschedulable: str = ""
    waiting_reason: str = ""
    waiting_message: str = ""
    running_since: datetime | None = None
    terminated_reason: str = ""
    restart_count: int = 0
    last_message: str = ""
    last_exit_code: int | None = None
    # When the container last exited: a CrashLoopBackOff wait is measured from here.
    last_finished: datetime | None = None
    ip: str = ""

    @classmethod
    def from_pod(cls, pod: dict[str, Any]) -> PodView:
        meta = pod.get("metadata") or {}
        status = pod.get("status") or {}
        unsched = ""
        for cond in status.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                unsched = cond.get("message") or cond.get("reason") or "Unschedulable"
        cs: dict[str, Any] = next(iter(status.get("containerStatuses") or []), {})
        state = cs.get("state") or {}
        last = (cs.get("lastState") or {}).get("terminated") or {}
        term = state.get("terminated") or {}
        waiting = state.get("waiting") or {}
        running = state.get("running") or {}
        return cls(
            name=meta.get("name", ""),
            phase=status.get("phase", "Pending"),
            deleting=bool(meta.get("deletionTimestamp")),
            unschedulable=unsched,
            waiting_reason=waiting.get("reason", ""),
            waiting_message=waiting.get("message", ""),
            running_since=parse_time(running.get("startedAt")) if running else None,
            terminated_reason=term.get("reason", "") if term else "",
            restart_count=int(cs.get("restartCount") or 0),
            last_message=(term or last).get("message") or "",
            last_exit_code=(term or last).get("exitCode"),
            last_finished=parse_time((term or last).get("finishedAt")),
            ip=status.get("podIP") or "",
        )


@dataclass(frozen=True)
class OutputState:
    phase: str
    reason: str
    message: str


# A running FFmpeg whose data flow is not measured yet counts as streaming after this
# long: a destination that refuses makes it exit well within it.
CONFIRM_SECONDS = 5.0


def output_phase(
    pod: PodView | None,
    input_receiving: bool | None,
    flowing: bool | None = None,
    now: datetime | None = None,
) -> OutputState:
    """Phase of a runnable output from its pod, its input, and whether data flows.

    `flowing` is None where the flow cannot be measured (no router health): then a
    running container is taken as streaming.
    """
    if pod is None or pod.deleting:
        return OutputState("Pending", "PodPending", "waiting for the FFmpeg pod to be created")
    if pod.unschedulable:
        return OutputState("Pending", "Unschedulable", pod.unschedulable[:MAX_ERROR])
    if pod.waiting_reason in FATAL_WAITING:
        return OutputState("Failed", pod.waiting_reason, (pod.waiting_message or pod.waiting_reason)[:MAX_ERROR])
    if pod.running_since is not None:
        if input_receiving is False:
            return OutputState("Connecting", "InputNotReceiving", "FFmpeg is running but the input has no source")
        up_for = ((now or datetime.now(UTC)) - pod.running_since).total_seconds()
        if flowing is False and up_for < CONFIRM_SECONDS:
            return OutputState("Connecting", "Connecting", "FFmpeg is connecting to the destination")
        return OutputState("Streaming", "Streaming", "FFmpeg is sending to the destination")
    if pod.restart_count > 0 or pod.waiting_reason == "CrashLoopBackOff" or pod.terminated_reason:
        detail = last_error(pod) or pod.waiting_reason or "FFmpeg exited"
        return OutputState("Reconnecting", "Reconnecting", detail)
    return OutputState("Connecting", "Starting", "FFmpeg is starting")


def last_error(pod: PodView) -> str:
    """FFmpeg's last words; FFmpeg exits 0 when its source ends, and then says nothing
    (the kubelet keeps logs as the message only on failure), so name that case."""
    said = one_line_error(pod.last_message)
    if said:
        return said
    if pod.last_exit_code == 0:
        return "FFmpeg exited cleanly: its source (the input's router) ended the stream or stopped sending"
    return ""


def backoff_allowed(delay: int, max_delay: int, restarts: int) -> float:
    """Seconds the spec allows between the n-th failure and its retry (doubling, capped)."""
    return float(min(max_delay, delay * (2 ** max(0, restarts - 1))))


def backoff_overdue(pod: PodView, delay: int, max_delay: int, failures: int, now: datetime, grace: float) -> bool:
    """True when the kubelet holds the pod in back-off longer than the spec allows.

    The kubelet's own back-off starts at 10 s and grows to 5 min, too long for live
    video; `failures` counts consecutive failures (kubelet restarts and replacements).
    """
    if pod.waiting_reason != "CrashLoopBackOff" or pod.last_finished is None:
        return False
    waited = (now - pod.last_finished).total_seconds()
    return waited > backoff_allowed(delay, max_delay, failures) + grace


def quantize_bitrate(previous: int | None, current: float | None) -> int | None:
    """Keep the written bitrate unless it moved by more than 10 %: no patch per poll."""
    if current is None:
        return None
    value = round(current)
    if previous and abs(value - previous) <= 0.1 * previous:
        return previous
    return value


# Replacements that follow a failure: the new pod is a reconnect. Any other replacement
# (the spec, a rotated Secret, the input's tracks or the image changed) is planned.
FORCED_REPLACEMENTS = frozenset({"BackoffReplaced", "Stalled", "PodDeleted"})


@dataclass
class OutputStatus:
    """Inputs to one status write of a StreamOutput."""

    generation: int
    phase: str
    reason: str
    message: str
    protocol: str = ""
    destination: str = ""
    endpoint: str = ""
    pod: str = ""
    reconnects: int = 0
    carried: int = 0
    replacements: int = 0
    last_error: str = ""
    input_ready: Cond | None = None
    degraded: Cond | None = None  # from the pod's own telemetry, while a pod runs
    extra: dict[str, Any] = field(default_factory=dict)

    def render(self, previous: dict[str, Any] | None, now: str) -> dict[str, Any]:
        ready = Cond("Ready", "True" if self.phase == "Streaming" else "False", self.reason, self.message)
        conds = [ready, self.input_ready or Cond("InputReady", "Unknown", "Unknown", "input not evaluated")]
        conds += [self.degraded] if self.degraded else []
        out: dict[str, Any] = {
            "observedGeneration": self.generation,
            "phase": self.phase,
            "protocol": self.protocol,
            "destination": self.destination,
            "endpoint": self.endpoint,
            "pod": self.pod,
            "reconnects": self.reconnects,
            "reconnectsCarried": self.carried,
            "replacements": self.replacements,
            "lastError": self.last_error,
            "conditions": conditions((previous or {}).get("conditions"), conds, self.generation, now),
            **self.extra,
        }
        return out


# --- inputs -------------------------------------------------------------------


def input_phase(
    router_ready: bool, receiving: bool | None, previous_phase: str | None = None
) -> tuple[str, Cond, Cond]:
    """Phase and the Ready/Receiving conditions of an input that has its router.

    ``previous_phase`` is given while the router has not been polled yet (an operator
    replica that just started or took over): then the phase last written still holds.
    Reporting Waiting would announce a lost source (Event SourceLost) at every handover,
    for nothing. A poll that fails is an answer: it gives no previous phase."""
    ready = (
        Cond("Ready", "True", "RouterRunning", "MediaMTX is running")
        if router_ready
        else Cond("Ready", "False", "RouterStarting", "waiting for the MediaMTX pod to become ready")
    )
    if receiving is True:
        recv = Cond("Receiving", "True", "SourcePublishing", "a source is publishing")
    elif receiving is False:
        recv = Cond("Receiving", "False", "NoSource", "no source is publishing")
    else:
        recv = Cond("Receiving", "Unknown", "HealthUnknown", "MediaMTX's control API has not answered yet")
    if not router_ready:
        return "Pending", ready, recv
    if receiving is None and previous_phase in ("Live", "Waiting"):
        return previous_phase, ready, recv
    return ("Live" if receiving else "Waiting"), ready, recv


def carry_reconnects(previous: dict[str, Any] | None, pod_name: str, restart_count: int) -> tuple[int, int]:
    """(reconnects, carried) so the count never goes down when the pod changes.

    `status.pod` names the pod the stored count refers to: a different pod now means
    the old one was replaced and its restarts are already inside the stored count. The
    replacement itself is a reconnect only when it followed a failure
    (status.lastReplacement names a FORCED_REPLACEMENTS reason); a planned one (spec,
    Secret, input tracks) is not. Re-running with the same inputs gives the same
    answer, so a handler may run twice.
    """
    prev = previous or {}
    before = int(prev.get("reconnects") or 0)
    carried = int(prev.get("reconnectsCarried") or 0)
    old_pod = prev.get("pod") or ""
    if pod_name and old_pod and pod_name != old_pod:
        failed = (prev.get("lastReplacement") or {}).get("reason") in FORCED_REPLACEMENTS
        carried = before + (1 if failed and prev.get("phase") != "Suspended" else 0)
    return max(before, carried + restart_count), carried
