"""StreamOutput: parse, resolve destination and input, render the pod, apply, report."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from .. import destinations, render, urls
from ..kube import NameConflict
from ..metrics import RECONCILE_SECONDS
from ..models import StreamOutput, explain, parse_output
from ..secret_policy import Refusal
from ..status import (
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
from .context import Context, Key, logline
from .health import stalled_for
from .reporting import previous_status, report, write_status

KIND = "StreamOutput"
SERVICE_DELETED = "deleted"
# An FFmpeg that pulls nothing this long while its input is live is stuck: replace it.
STALL_SECONDS = 12.0
# A replaced pod's FFmpeg gets this long to stop (it exits at once on SIGTERM).
REPLACE_GRACE_SECONDS = 1
INPUT_REASONS = frozenset({"InputNotFound", "InputNotReady"})


@dataclass(frozen=True)
class Blocked:
    """Why an output cannot run right now; phase Failed/Invalid, no pod."""

    phase: str
    reason: str
    message: str


def reconcile(ctx: Context, key: Key) -> None:
    """Level-triggered: safe to run on every event and on every resync tick."""
    body = ctx.idx.one(ctx.idx.outputs, key)
    if body is None:
        ctx.forget(KIND, key)
        return
    with ctx.lock("so", key), RECONCILE_SECONDS.labels(KIND).time():
        _reconcile(ctx, key, body)


def _reconcile(ctx: Context, key: Key, body: dict[str, Any]) -> None:
    try:
        out = parse_output(body)
    except ValidationError as exc:
        _stop(ctx, key, body, Blocked("Invalid", "InvalidSpec", explain(exc)), None)
        return
    resolved = _destination(ctx, out)
    if isinstance(resolved, Blocked):
        _stop(ctx, key, body, resolved, None)
        return
    dest, secret_version = resolved
    if out.spec.suspend:
        _stop(ctx, key, body, Blocked("Suspended", "Suspended", "spec.suspend is true"), dest)
        return
    input_body = ctx.idx.one(ctx.idx.inputs, (key[0], out.spec.input))
    blocked = _input_blocker(ctx, out, input_body)
    if blocked:
        _stop(ctx, key, body, blocked, dest)
        return
    assert input_body is not None
    previous = previous_status(ctx, KIND, body)
    plan = render.OutputPlan(
        destination=dest,
        input_audio=_audio_tracks(input_body),
        replacement=int(previous.get("replacements") or 0),
        secret_version=secret_version,
    )
    docs = render.render_output(out, plan, ctx.settings)
    if _vanished(ctx, key, previous, docs[0]["metadata"]["name"]):
        # Deleted under us (by hand, an eviction): a new revision, so the count carries.
        _replace(ctx, key, body, "PodDeleted", "the FFmpeg pod was deleted; a new one replaces it")
        return
    try:
        _apply_extras(ctx, key, docs[1:])
    except NameConflict as exc:
        _stop(ctx, key, body, Blocked("Failed", "NameConflict", f"{exc}; rename this StreamOutput"), None)
        return
    pod, created = _ensure_pod(ctx, key, docs[0])
    if created:
        return  # the new pod's watch event brings the next reconcile and its status
    view = PodView.from_pod(pod) if pod else None
    why = _replacement_due(ctx, key, out, view, input_body)
    if why:
        _replace(ctx, key, body, *why)
        return
    _report_running(ctx, body, out, dest, view, input_body)


def _vanished(ctx: Context, key: Key, previous: dict[str, Any], desired: str) -> bool:
    """The pod status.pod names is the desired one, and it is gone."""
    if previous.get("pod") != desired:
        return False
    return all(p["metadata"]["name"] != desired for p in ctx.idx.all(ctx.idx.pods, key))


def _replacement_due(
    ctx: Context, key: Key, out: StreamOutput, view: PodView | None, input_body: dict[str, Any]
) -> tuple[str, str] | None:
    """(reason, message) when the running pod must be replaced: overdue back-off or a stall."""
    if view is None:
        return None
    reconnect = out.spec.reconnect
    failures = view.restart_count + ctx.failures.get(key, 0)
    now = datetime.now(UTC)
    if backoff_overdue(
        view, reconnect.delay_seconds, reconnect.max_delay_seconds, failures, now, ctx.settings.backoff_grace_seconds
    ):
        allowed = backoff_allowed(reconnect.delay_seconds, reconnect.max_delay_seconds, failures)
        return "BackoffReplaced", (
            f"the kubelet held the pod in back-off longer than the {allowed:.0f}s the reconnect schedule allows "
            f"after {failures} failure(s): replaced"
        )
    stalled = stalled_for(ctx.flow.get(key), time.monotonic())
    live = (input_body.get("status") or {}).get("phase") == "Live"
    if view.running_since is not None and live and stalled >= STALL_SECONDS:
        return "Stalled", f"stalled: FFmpeg pulled no data for {stalled:.0f}s while the input was live; restarted"
    return None


def _replace(ctx: Context, key: Key, body: dict[str, Any], reason: str, message: str) -> None:
    """Bump the replacement counter; the next reconcile renders a new pod revision.

    Written to status first, so a crash between this and the pod swap loses nothing:
    the new revision follows from the stored counter.
    """
    previous = previous_status(ctx, KIND, body)
    ctx.failures[key] = ctx.failures.get(key, 0) + 1
    ctx.flow.pop(key, None)
    status = {
        "replacements": int(previous.get("replacements") or 0) + 1,
        # FFmpeg's own last words stay; only a stall (FFmpeg said nothing) is ours to tell.
        "lastError": message if reason == "Stalled" or not previous.get("lastError") else previous["lastError"],
        "phase": "Reconnecting",
    }
    write_status(ctx, KIND, body, status)
    ctx.kube.event({**body, "kind": KIND}, "Warning", reason, message)
    logline("pod-replace", namespace=key[0], output=key[1], reason=reason)


def _destination(ctx: Context, out: StreamOutput) -> tuple[urls.Destination, str] | Blocked:
    """The parsed destination and the version of the Secret it came from."""
    if out.spec.url is not None:
        url, version = out.spec.url, ""
    else:
        assert out.spec.url_from is not None
        found = ctx.read_secret(out.metadata.namespace, out.spec.url_from.secret_key_ref, "destination")
        if isinstance(found, Refusal):
            return Blocked("Failed", found.reason, found.message)
        url, version = found
    try:
        dest = urls.parse(url)
    except urls.URLError as exc:
        return Blocked("Invalid", "InvalidURL", str(exc))
    if _is_router(ctx, out.metadata.namespace, dest):
        return Blocked("Failed", "ForbiddenDestination", destinations.MESSAGE)
    return dest, version


def _is_router(ctx: Context, namespace: str, dest: urls.Destination) -> bool:
    """A destination that names a streamdist router or ingest, of any namespace."""
    router_ips = {ip for applied in list(ctx.applied.values()) for ip in applied.service_ips}
    inputs = set(ctx.idx.inputs)
    return destinations.is_router(dest.host, namespace, inputs, router_ips, ctx.settings.cluster_domain)


def _input_blocker(ctx: Context, out: StreamOutput, input_body: dict[str, Any] | None) -> Blocked | None:
    ns, name = out.metadata.namespace, out.metadata.name
    if input_body is None:
        return Blocked("Failed", "InputNotFound", f"StreamInput {out.spec.input!r} not found in namespace {ns!r}")
    limit = int((input_body.get("spec") or {}).get("maxOutputs") or 20)
    siblings = sorted(
        ctx.idx.all(ctx.idx.outputs_by_input, (ns, out.spec.input)), key=lambda s: (s["created"], s["name"])
    )
    rank = next((i for i, s in enumerate(siblings) if s["name"] == name), len(siblings))
    if rank >= limit:
        return Blocked(
            "Failed", "TooManyOutputs", f"StreamInput {out.spec.input!r} feeds at most {limit} outputs (maxOutputs)"
        )
    if ctx.idx.one(ctx.idx.routers, (ns, out.spec.input)) is None:
        # Its credentials Secret comes with the router: a pod started before it would
        # fail to start (CreateContainerConfigError). The router's event brings us back.
        return Blocked("Pending", "InputNotReady", "the input's router has not been created yet")
    return None


def _audio_tracks(input_body: dict[str, Any]) -> tuple[str, ...]:
    tracks = (input_body.get("status") or {}).get("tracks") or []
    return tuple(t for t in tracks if t.lower() not in ("h264", "h265", "av1", "vp9", "mpeg-4 video", "mpeg-2 video"))


def _apply_extras(ctx: Context, key: Key, extras: list[dict[str, Any]]) -> None:
    """The SRT listener's Service, applied when it changed (and only if it is ours)."""
    digest = render.digest(extras)
    if extras and ctx.applied_extras.get(key) != digest:
        for extra in extras:
            ctx.kube.apply_owned(extra)
        ctx.applied_extras[key] = digest


def _ensure_pod(ctx: Context, key: Key, desired: dict[str, Any]) -> tuple[dict[str, Any] | None, bool]:
    """Exactly one pod of the desired revision; an older revision goes first.

    The new pod is created only once the old one is gone from the API, that is once
    the kubelet has stopped its FFmpeg: otherwise the kubelet may restart the old
    FFmpeg (its back-off ending) while the new one starts, two publishers on one
    destination, and on the real node a pod started while the other's sandbox was torn
    down could not reach its destination for its whole life. The old pod's DELETED
    event brings the next reconcile.

    Returns the current pod (None until its watch event arrives) and whether it was
    created just now.
    """
    name = desired["metadata"]["name"]
    existing = {p["metadata"]["name"]: p for p in ctx.idx.all(ctx.idx.pods, key)}
    current = existing.get(name)
    others = {n: p for n, p in existing.items() if n != name}
    for other, pod in others.items():
        if not pod["metadata"].get("deletionTimestamp"):
            ctx.kube.delete_pod(key[0], other, pod["metadata"].get("uid"), grace_seconds=REPLACE_GRACE_SECONDS)
            logline("pod-replaced", namespace=key[0], output=key[1], pod=other)
    created = current is None and not others and ctx.kube.create(desired)
    if created:
        logline("pod-created", namespace=key[0], output=key[1], pod=name)
    return current, created


def _report_running(
    ctx: Context,
    body: dict[str, Any],
    out: StreamOutput,
    dest: urls.Destination,
    view: PodView | None,
    input_body: dict[str, Any],
) -> None:
    key = (out.metadata.namespace, out.metadata.name)
    previous = previous_status(ctx, KIND, body)
    input_ready = _input_ready(input_body)
    flow = ctx.flow.get(key)
    flowing = bool(flow and flow.bitrate_kbps) if ctx.settings.health_poll else None
    state = output_phase(view, input_ready.status == "True" if input_ready.status != "Unknown" else None, flowing)
    pod_name = view.name if view else previous.get("pod", "")
    reconnects, carried = carry_reconnects(previous, pod_name, view.restart_count if view else 0)
    error = last_error(view) if view else ""
    if state.phase == "Streaming" and view and view.restart_count == 0:
        ctx.failures.pop(key, None)
    status = OutputStatus(
        generation=out.metadata.generation,
        phase=state.phase,
        reason=state.reason,
        message=state.message,
        protocol=dest.protocol,
        destination=dest.masked,
        endpoint=_listener_endpoint(out, dest),
        pod=pod_name,
        reconnects=reconnects,
        carried=carried,
        replacements=int(previous.get("replacements") or 0),
        last_error=error or previous.get("lastError", ""),
        input_ready=input_ready,
        extra={"bitrateKbps": quantize_bitrate(previous.get("bitrateKbps"), flow.bitrate_kbps)}
        if flow and flow.bitrate_kbps is not None
        else {},
    ).render(previous, now_iso())
    report(ctx, KIND, body, status, state.reason, state.message)


def _listener_endpoint(out: StreamOutput, dest: urls.Destination) -> str:
    if not dest.listener:
        return ""
    meta = out.metadata
    return f"srt://{meta.name}.{meta.namespace}.svc:{dest.port}"


def _input_ready(input_body: dict[str, Any]) -> Cond:
    """InputReady mirrors the input's Receiving condition (Unknown while unmeasured)."""
    status = input_body.get("status") or {}
    if status.get("activeSource") == "fallback":
        return Cond("InputReady", "True", "FallbackOnAir", "the input's fallback slate is on air (no source)")
    if status.get("activeSource") == "backup":
        return Cond("InputReady", "True", "BackupOnAir", "the input's backup source is on air (the primary is gone)")
    if status.get("phase") == "Failed":
        return Cond("InputReady", "False", "InputFailed", "the input's router is not running")
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Receiving":
            return Cond("InputReady", cond.get("status", "Unknown"), cond.get("reason", ""), cond.get("message", ""))
    return Cond("InputReady", "Unknown", "InputPending", "the input has not reported yet")


def _stop(ctx: Context, key: Key, body: dict[str, Any], why: Blocked, dest: urls.Destination | None) -> None:
    """No pod for this output: delete what runs, then report why."""
    for pod in ctx.idx.all(ctx.idx.pods, key):
        if not pod["metadata"].get("deletionTimestamp"):
            ctx.kube.delete_pod(key[0], pod["metadata"]["name"], pod["metadata"].get("uid"))
    if dest is not None and dest.listener and ctx.applied_extras.get(key) != SERVICE_DELETED:
        ctx.kube.delete_service(key[0], key[1], body["metadata"].get("uid", ""))
        ctx.applied_extras[key] = SERVICE_DELETED
    previous = previous_status(ctx, KIND, body)
    generation = body["metadata"].get("generation", 0)
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
    ).render(previous, now_iso())
    report(ctx, KIND, body, status, why.reason, why.message)
