"""Deciding what a StreamOutput needs, from what was seen: pure, and table-tested.

`plan_output(seen)` returns the pods to delete, the pod to create, the extra children to
apply or delete, the status to write, the Event to post and what to remember. The
executor carries it out. Nothing here reads a clock, the API or the environment: the
time, the index views and the memory arrive in `SeenOutput`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from . import events, render, telemetry, urls
from .events import Event
from .models import StreamOutput
from .schedule import Position
from .settings import Settings
from .status import (
    Cond,
    OutputStatus,
    PodView,
    backoff_allowed,
    backoff_overdue,
    carry_reconnects,
    last_error,
    now_iso,
    output_phase,
    quantize_bitrate,
)
from .telemetry import Summary

# An FFmpeg that pulls nothing this long while its input is live is stuck: replace it.
STALL_SECONDS = 12.0
# A replaced pod's FFmpeg gets this long to stop (it exits at once on SIGTERM).
REPLACE_GRACE_SECONDS = 1
STOP_GRACE_SECONDS = 5
SERVICE_DELETED = "deleted"
INPUT_REASONS = frozenset({"InputNotFound", "InputNotReady"})
VIDEO_CODECS = frozenset({"h264", "h265", "av1", "vp9", "mpeg-4 video", "mpeg-2 video"})


@dataclass(frozen=True)
class Blocked:
    """Why an output cannot run right now; no pod."""

    phase: str
    reason: str
    message: str


@dataclass(frozen=True)
class Flowing:
    """What the health poll measured of the bytes flowing to the output's FFmpeg."""

    bitrate_kbps: int | None
    stalled_seconds: float


@dataclass(frozen=True)
class SeenOutput:
    """Everything one reconcile of an output looked at."""

    body: dict[str, Any]
    output: StreamOutput | None
    invalid: str = ""  # the spec's validation message when `output` is None
    destination: urls.Destination | None = None
    secret_version: str = ""
    blocked: Blocked | None = None  # the destination cannot be used (Secret, URL, a router)
    input_body: dict[str, Any] | None = None
    input_status: dict[str, Any] = field(default_factory=dict)  # as last written, this tick
    siblings: tuple[tuple[str, str], ...] = ()  # (creationTimestamp, name) of the input's outputs
    router_exists: bool = False
    pods: tuple[dict[str, Any], ...] = ()
    previous: dict[str, Any] = field(default_factory=dict)
    flow: Flowing | None = None
    telemetry: Summary | None = None  # the output pod's own metrics, summarised
    failures: int = 0
    extras: str = ""  # digest of the extra children last applied (or SERVICE_DELETED)
    conflict: str = ""  # a child's name is held by another owner
    duplicate: bool = False  # an earlier output of the namespace sends to the same destination
    settled: bool = True  # every output has claimed its destination since the start
    window: Position | None = None  # where `now` is in spec.schedule (None: no schedule)
    schedule_error: str = ""  # why spec.schedule is refused (InvalidSchedule)
    now: datetime | None = None
    settings: Settings = field(default_factory=Settings)


@dataclass(frozen=True)
class PodDelete:
    name: str
    uid: str | None
    grace: int


@dataclass(frozen=True)
class OutputDecision:
    deletes: tuple[PodDelete, ...] = ()
    create: dict[str, Any] | None = None
    extras: tuple[dict[str, Any], ...] = ()  # children to apply (the SRT listener's Service)
    extras_digest: str = ""  # what to remember once they are applied
    delete_service: bool = False
    status: dict[str, Any] | None = None
    events: tuple[Event, ...] = ()  # posted once the status is written
    failures: int | None = None  # the consecutive-failure count to remember
    reset_flow: bool = False
    wake: datetime | None = None  # the schedule's next boundary: look again then


def plan_output(seen: SeenOutput) -> OutputDecision:
    """What this output needs now, and when its schedule wants it looked at again."""
    decision = _plan(seen)
    timed = _timed(seen)
    fields = _schedule_status(seen.previous, timed)
    status = {**decision.status, **fields} if decision.status is not None else None
    return dataclasses.replace(decision, status=status, wake=timed.wake if timed else None)


def _plan(seen: SeenOutput) -> OutputDecision:
    out, dest = seen.output, seen.destination
    if out is None:
        return stop(seen, Blocked("Invalid", "InvalidSpec", seen.invalid))
    blocked = (
        seen.blocked or _unscheduled(seen) or _suspended(out) or _off_air(seen) or _duplicate(seen)
        or input_blocker(seen)
    )
    if blocked or dest is None:
        return stop(seen, blocked or Blocked("Failed", "InvalidURL", "no destination"))
    if seen.conflict:
        return stop(seen, Blocked("Failed", "NameConflict", f"{seen.conflict}; rename this StreamOutput"))
    docs = render.render_output(out, _render_plan(seen, dest), seen.settings)
    if _vanished(seen, docs[0]["metadata"]["name"]):
        # Deleted under us (by hand, an eviction): a new revision, so the count carries.
        return replace(seen, "PodDeleted", "the FFmpeg pod was deleted; a new one replaces it")
    return _ensure(seen, docs[0], docs[1:])


def _duplicate(seen: SeenOutput) -> Blocked | None:
    """Two outputs to one destination would kick each other off it: the older keeps it."""
    if not seen.duplicate:
        return None
    return Blocked("Failed", "DuplicateDestination",
                   "an earlier StreamOutput of this namespace sends to the same destination")  # fmt: skip


def _suspended(out: StreamOutput) -> Blocked | None:
    return Blocked("Suspended", "Suspended", "spec.suspend is true") if out.spec.suspend else None


def _unscheduled(seen: SeenOutput) -> Blocked | None:
    return Blocked("Invalid", "InvalidSchedule", seen.schedule_error) if seen.schedule_error else None


def _off_air(seen: SeenOutput) -> Blocked | None:
    """Outside every window of spec.schedule: no pod until the next one opens."""
    if seen.window is None or seen.window.inside:
        return None
    if seen.window.next_start is None:
        return Blocked("Scheduled", "NoWindowAhead", "outside every window of spec.schedule, and none is ahead")
    return Blocked("Scheduled", "OutsideWindow", "outside every window of spec.schedule: on air from status.nextStart")


def _timed(seen: SeenOutput) -> Position | None:
    """The schedule's position, when it decides anything (not suspended, not refused)."""
    if seen.output is None or seen.output.spec.suspend or seen.schedule_error:
        return None
    return seen.window


def _schedule_status(previous: dict[str, Any], window: Position | None) -> dict[str, Any]:
    """status.nextStart (off air) or status.nextStop (on air); cleared when neither applies."""
    start = window.next_start if window and not window.inside else None
    stop = window.next_stop if window and window.inside else None
    fields = {"nextStart": now_iso(start) if start else None, "nextStop": now_iso(stop) if stop else None}
    return {k: v for k, v in fields.items() if v is not None or previous.get(k) is not None}


def input_blocker(seen: SeenOutput) -> Blocked | None:
    """Why the output's input cannot feed it: missing, full, or its router not there yet."""
    assert seen.output is not None
    ns, name, input_name = seen.output.metadata.namespace, seen.output.metadata.name, seen.output.spec.input
    if seen.input_body is None:
        return Blocked("Failed", "InputNotFound", f"StreamInput {input_name!r} not found in namespace {ns!r}")
    limit = int((seen.input_body.get("spec") or {}).get("maxOutputs") or 20)
    ranked = [n for _, n in sorted(seen.siblings)]
    rank = ranked.index(name) if name in ranked else len(ranked)
    if rank >= limit:
        return Blocked(
            "Failed", "TooManyOutputs", f"StreamInput {input_name!r} feeds at most {limit} outputs (maxOutputs)"
        )
    if not seen.router_exists:
        # Its credentials Secret comes with the router: a pod started before it would
        # fail to start (CreateContainerConfigError). The router's event brings us back.
        return Blocked("Pending", "InputNotReady", "the input's router has not been created yet")
    return None


def _render_plan(seen: SeenOutput, dest: urls.Destination) -> render.OutputPlan:
    return render.OutputPlan(
        destination=dest,
        input_audio=audio_tracks(seen.input_status),
        replacement=forced_count(seen.previous),
        secret_version=seen.secret_version,
    )


def audio_tracks(input_status: dict[str, Any]) -> tuple[str, ...]:
    """The input's audio codecs (MediaMTX's names): decide copy vs AAC for FLV."""
    return tuple(t for t in input_status.get("tracks") or [] if t.lower() not in VIDEO_CODECS)


def forced_count(status: dict[str, Any]) -> int:
    """Forced replacements so far: part of the pod's name, so each makes a new pod."""
    return int(status.get("forcedReplacements", status.get("replacements")) or 0)


def _vanished(seen: SeenOutput, desired: str) -> bool:
    """The pod status.pod names is the desired one, and it is gone."""
    if seen.previous.get("pod") != desired:
        return False
    return all(p["metadata"]["name"] != desired for p in seen.pods)


def _ensure(seen: SeenOutput, pod: dict[str, Any], extras: list[dict[str, Any]]) -> OutputDecision:
    """Exactly one pod of the desired revision; an older revision goes first.

    The new pod is created only once the old one is gone from the API, that is once the
    kubelet has stopped its FFmpeg: never two FFmpegs on one destination (the kubelet
    may restart the old one while the new one starts), and on the real node a pod
    started while the other's sandbox was torn down could not reach its destination.
    The old pod's DELETED event brings the next reconcile.
    """
    name = pod["metadata"]["name"]
    current = next((p for p in seen.pods if p["metadata"]["name"] == name), None)
    others = [p for p in seen.pods if p["metadata"]["name"] != name]
    deletes = tuple(
        PodDelete(p["metadata"]["name"], p["metadata"].get("uid"), REPLACE_GRACE_SECONDS)
        for p in others
        if not p["metadata"].get("deletionTimestamp")
    )
    digest = render.digest(extras)
    apply = tuple(extras) if extras and digest != seen.extras else ()
    if current is None and not others:
        # Its watch event brings the status (out of Scheduled: with the WindowOpened Event);
        # nothing else here, so that when a thousand windows open at once the pods go
        # first. Until every output has said where it sends (after a start), no new pod:
        # it could be the newer of two duplicates.
        return OutputDecision(deletes, pod if seen.settled else None, apply, digest)
    view = PodView.from_pod(current) if current else None
    why = _replacement_due(seen, view) if view else None
    if why:
        return replace(seen, *why, deletes=deletes)
    status, transition, failures = _running(seen, view)
    planned, replaced = _planned(seen, deletes)
    return OutputDecision(
        deletes, None, apply, digest, status={**status, **planned}, events=(*replaced, *transition), failures=failures
    )


def _planned(seen: SeenOutput, deletes: tuple[PodDelete, ...]) -> tuple[dict[str, Any], tuple[Event, ...]]:
    """A pod going because the desired one changed (spec, Secret, the input's tracks):
    counted under replacements with its reason, once (status.lastReplacement names the
    pod it replaced), and no reconnect."""
    counted = (seen.previous.get("lastReplacement") or {}).get("pod")
    going = [d.name for d in deletes if d.name != counted]
    if not going:
        return {}, ()
    versions = [((p["metadata"].get("annotations") or {}).get(render.SECRET_VERSION_ANNOTATION))
                for p in seen.pods if p["metadata"]["name"] in going]  # fmt: skip
    rotated = any(v is not None and v != seen.secret_version for v in versions)
    reason = "SecretRotated" if rotated else "Updated"
    message = (
        "the destination's Secret changed: a new pod replaces the old one"
        if rotated
        else "the output's pod changed (its spec, its input's tracks or the operator): a new pod replaces it"
    )
    return _replacement_status(seen, reason, going[0]), (events.replaced(reason, message, planned=True),)


def _replacement_status(seen: SeenOutput, reason: str, pod: str, forced: bool = False) -> dict[str, Any]:
    count = forced_count(seen.previous)
    return {
        "replacements": int(seen.previous.get("replacements") or 0) + 1,
        "forcedReplacements": count + 1 if forced else count,
        "lastReplacement": {"reason": reason, "pod": pod, "time": now_iso(seen.now)},
    }


def _replacement_due(seen: SeenOutput, view: PodView) -> tuple[str, str] | None:
    """(reason, message) when the running pod must be replaced: overdue back-off or a stall."""
    assert seen.output is not None and seen.now is not None
    reconnect = seen.output.spec.reconnect
    failures = view.restart_count + seen.failures
    grace = seen.settings.backoff_grace_seconds
    if backoff_overdue(view, reconnect.delay_seconds, reconnect.max_delay_seconds, failures, seen.now, grace):
        allowed = backoff_allowed(reconnect.delay_seconds, reconnect.max_delay_seconds, failures)
        return "BackoffReplaced", (
            f"the kubelet held the pod in back-off longer than the {allowed:.0f}s the reconnect schedule allows "
            f"after {failures} failure(s): replaced"
        )
    stalled = seen.flow.stalled_seconds if seen.flow else 0.0
    live = seen.input_status.get("phase") == "Live"
    if view.running_since is not None and live and stalled >= STALL_SECONDS:
        return "Stalled", f"stalled: FFmpeg pulled no data for {stalled:.0f}s while the input was live; restarted"
    return None


def replace(seen: SeenOutput, reason: str, message: str, deletes: tuple[PodDelete, ...] = ()) -> OutputDecision:
    """A forced replacement: bump the count in status first, so a crash between this and
    the pod swap loses nothing (the next reconcile renders the new revision from it)."""
    previous = seen.previous
    status = {
        **_replacement_status(seen, reason, str(previous.get("pod") or ""), forced=True),
        # FFmpeg's own last words stay; only a stall (FFmpeg said nothing) is ours to tell.
        "lastError": message if reason == "Stalled" or not previous.get("lastError") else previous["lastError"],
        "phase": "Reconnecting",
    }
    return OutputDecision(
        deletes=deletes,
        status=status,
        events=(events.replaced(reason, message, planned=False),),
        failures=seen.failures + 1,
        reset_flow=True,
    )


def _running(seen: SeenOutput, view: PodView | None) -> tuple[dict[str, Any], tuple[Event, ...], int | None]:
    """Status, Events and the failures to remember of an output whose pod exists (or
    whose new pod waits for the old one to go)."""
    assert seen.output is not None and seen.destination is not None
    input_ready = input_ready_condition(seen.input_status)
    flowing = bool(seen.flow and seen.flow.bitrate_kbps) if seen.settings.health_poll else None
    receiving = input_ready.status == "True" if input_ready.status != "Unknown" else None
    state = output_phase(view, receiving, flowing, seen.now)
    pod = view.name if view else str(seen.previous.get("pod") or "")
    reconnects, carried = carry_reconnects(seen.previous, pod, view.restart_count if view else 0)
    rate = seen.flow.bitrate_kbps if seen.flow else None
    extra: dict[str, Any] = {}
    if rate is not None:
        extra["bitrateKbps"] = quantize_bitrate(seen.previous.get("bitrateKbps"), rate)
    if seen.destination.scheme == "rtmps":
        extra["tlsVerification"] = "Skipped" if seen.output.spec.tls.insecure_skip_verify else "Verified"
    fields, degraded = _telemetry(seen, state.phase)
    extra.update(fields)
    status = OutputStatus(
        generation=seen.output.metadata.generation,
        phase=state.phase,
        reason=state.reason,
        message=state.message,
        protocol=seen.destination.protocol,
        destination=seen.destination.masked,
        endpoint=listener_endpoint(seen.output, seen.destination),
        pod=pod,
        reconnects=reconnects,
        carried=carried,
        replacements=int(seen.previous.get("replacements") or 0),
        last_error=(last_error(view) if view else "") or seen.previous.get("lastError", ""),
        input_ready=input_ready,
        degraded=degraded,
        extra=extra,
    ).render(seen.previous, now_iso(seen.now))
    streaming = state.phase == "Streaming" and view is not None and view.restart_count == 0
    found = (events.transition(seen.previous, status, state.reason, state.message),
             events.degraded(seen.previous, status))  # fmt: skip
    return status, tuple(e for e in found if e), 0 if streaming else None


def _telemetry(seen: SeenOutput, phase: str) -> tuple[dict[str, Any], Cond | None]:
    """What the pod's own metrics add while it streams: the summary and Degraded."""
    if phase != "Streaming" or not seen.settings.telemetry:
        return {}, None
    return telemetry.status_fields(seen.previous, seen.telemetry), telemetry.degraded(seen.telemetry)


def listener_endpoint(out: StreamOutput, dest: urls.Destination) -> str:
    if not dest.listener:
        return ""
    meta = out.metadata
    return f"srt://{meta.name}.{meta.namespace}.svc:{dest.port}"


def input_ready_condition(input_status: dict[str, Any]) -> Cond:
    """InputReady mirrors the input's Receiving condition (Unknown while unmeasured)."""
    if input_status.get("activeSource") == "fallback":
        return Cond("InputReady", "True", "FallbackOnAir", "the input's fallback slate is on air (no source)")
    if input_status.get("activeSource") == "backup":
        return Cond("InputReady", "True", "BackupOnAir", "the input's backup source is on air (the primary is gone)")
    if input_status.get("phase") == "Failed":
        return Cond("InputReady", "False", "InputFailed", "the input's router is not running")
    for cond in input_status.get("conditions") or []:
        if cond.get("type") == "Receiving":
            return Cond("InputReady", cond.get("status", "Unknown"), cond.get("reason", ""), cond.get("message", ""))
    return Cond("InputReady", "Unknown", "InputPending", "the input has not reported yet")


def stop(seen: SeenOutput, why: Blocked) -> OutputDecision:
    """No pod for this output: delete what runs, then report why."""
    deletes = tuple(
        PodDelete(p["metadata"]["name"], p["metadata"].get("uid"), STOP_GRACE_SECONDS)
        for p in seen.pods
        if not p["metadata"].get("deletionTimestamp")
    )
    dest = seen.destination if why.reason not in ("InvalidSpec", "NameConflict") else None
    previous = seen.previous
    generation = seen.body["metadata"].get("generation", 0)
    reconnects = int(previous.get("reconnects") or 0)
    status = OutputStatus(
        generation=generation,
        phase=why.phase,
        reason=why.reason,
        message=why.message,
        protocol=dest.protocol if dest else "",
        destination=dest.masked if dest else "",
        pod="",
        reconnects=reconnects,
        carried=reconnects,
        replacements=int(previous.get("replacements") or 0),
        last_error=previous.get("lastError", ""),
        input_ready=Cond("InputReady", "False", why.reason, why.message) if why.reason in INPUT_REASONS else None,
    ).render(previous, now_iso(seen.now))
    event = events.transition(previous, status, why.reason, why.message)
    return OutputDecision(
        deletes=deletes,
        delete_service=bool(dest and dest.listener and seen.extras != SERVICE_DELETED),
        status=status,
        events=(event,) if event else (),
    )
