"""Polling each router's control API: input health, per-output flow and stalls.

Runs from the resync loop, not from watch events: health changes without any
Kubernetes object changing. The results go to each object's memory; the reconcilers
turn them into status, writing only what really moved.
"""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .. import confidence, ingest, render, switch_render, switch_state
from ..confidence import ConfidenceError, ConfidenceState
from ..mediamtx import MediaMTXAPIError, MediaMTXClient, PathSample, Session
from ..switch_state import SwitchState, SwitchStateError
from .context import Context, logline
from .memory import Applied, Flow, InputKey, InputObservation, OutputKey

POLL_TIMEOUT = 2.0


def poll_all(ctx: Context) -> list[InputKey]:
    """Poll every running router; returns the inputs whose observation changed."""
    if not ctx.settings.health_poll:
        return []
    routers = [
        (key, record.applied)
        for key, record in ctx.memory.inputs()
        if record.applied and record.applied.api_host and (key.namespace, key.name) in ctx.idx.inputs
    ]
    if not routers:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(routers))) as pool:
        changed = pool.map(lambda r: poll(ctx, *r), routers)
        return [key for (key, _), moved in zip(routers, changed, strict=True) if moved]


def poll(ctx: Context, key: InputKey, applied: Applied) -> bool:
    """One poll of one router; True when what the status shows may have changed."""
    user, password = applied.api_auth
    client = MediaMTXClient(
        f"http://{applied.api_host}:{render.API_PORT}", timeout=POLL_TIMEOUT, username=user, password=password
    )
    memory = ctx.memory.input(key)
    before = memory.observation
    try:
        health, sample = client.health(key.name, before.sample if before else None)
        readers = client.readers_of(sample) if sample and sample.readers else []
        reading = _ingest(ctx, key, client, sample, readers, before)
    except MediaMTXAPIError as exc:
        memory.observation = InputObservation(None, None, error=str(exc)[:200])
        if before is None or before.health is not None:
            logline("router-unreachable", namespace=key.namespace, input=key.name, error=str(exc)[:200])
            return True
        return False
    switch = _switch_state(ctx, key, applied, before)
    monitor = _confidence_state(ctx, key, applied, before)
    memory.observation = InputObservation(health, sample, switch=switch, confidence=monitor, ingest=reading)
    _measure_outputs(ctx, key, readers)
    return (before is None or before.health != health or before.switch != switch or before.confidence != monitor
            or before.ingest != reading)  # fmt: skip


def _ingest(
    ctx: Context, key: InputKey, client: MediaMTXClient, sample: PathSample | None, readers: list[Session],
    before: InputObservation | None,
) -> ingest.Reading | None:  # fmt: skip
    """What the router counts for the ingest: frames in error and tracks of the primary's
    path (the readers' own path unless there is a backup: then one more GET), what it
    discarded toward the readers, and for an SRT publisher its link (one more GET)."""
    if not ctx.settings.telemetry:
        return None
    body = ctx.idx.one(ctx.idx.inputs, (key.namespace, key.name)) or {}
    primary = render.primary_path(key.name, bool((body.get("spec") or {}).get("backup")))
    path = sample if primary == key.name else client.path(primary)
    if path is None or not path.online:
        return None
    link = client.srt_conn(path.source_id) if path.source_type == "srtConn" and path.source_id else None
    return ingest.read(before.ingest if before else None, ingest.sample(path, readers, link))


def _confidence_state(
    ctx: Context, key: InputKey, applied: Applied, before: InputObservation | None
) -> ConfidenceState | None:
    """With the confidence monitor: black, frozen, silent as it says, from its endpoint
    on the router pod (the thumbnail's age dropped); None (logged once) while it cannot
    be read."""
    if not ctx.settings.confidence_monitor:
        return None
    try:
        state = confidence.fetch(applied.api_host, switch_render.MONITOR_PORT, *applied.api_auth, timeout=POLL_TIMEOUT)
    except ConfidenceError as exc:
        if before is None or before.confidence is not None:
            logline("monitor-unreachable", namespace=key.namespace, input=key.name, error=str(exc)[:200])
        return None
    return dataclasses.replace(state, thumbnail_age=None)


def _switch_state(ctx: Context, key: InputKey, applied: Applied, before: InputObservation | None) -> SwitchState | None:
    """With a backup: the switch's own state (what is on air, each switch's gap), from
    its endpoint on the router pod; None (logged once) while it cannot be read."""
    body = ctx.idx.one(ctx.idx.inputs, (key.namespace, key.name))
    if not ((body or {}).get("spec") or {}).get("backup"):
        return None
    try:
        return switch_state.fetch(applied.api_host, switch_render.STATE_PORT, *applied.api_auth, timeout=POLL_TIMEOUT)
    except SwitchStateError as exc:
        if before is None or before.switch is not None:
            logline("switch-unreachable", namespace=key.namespace, input=key.name, error=str(exc)[:200])
        return None


def _measure_outputs(ctx: Context, input_key: InputKey, readers: list[Session]) -> None:
    """Match MediaMTX reader sessions to output pods by pod IP; record bytes sent."""
    by_ip = {s.remote_addr.rsplit(":", 1)[0].strip("[]"): s for s in readers}
    now = time.monotonic()
    for sibling in ctx.idx.all(ctx.idx.outputs_by_input, (input_key.namespace, input_key.name)):
        key = OutputKey(input_key.namespace, sibling["name"])
        ip = _pod_ip(ctx, key)
        session = by_ip.get(ip) if ip else None
        memory = ctx.memory.output(key)
        memory.flow = next_flow(memory.flow, session.bytes_sent, now) if session else None


def next_flow(previous: Flow | None, bytes_sent: int, now: float) -> Flow:
    """Bitrate from two samples; `grew_at` stays put while the counter stands still."""
    if previous is None or bytes_sent < previous.bytes_sent:
        return Flow(bytes_sent, now, now)
    elapsed = max(now - previous.at, 1e-3)
    rate = round((bytes_sent - previous.bytes_sent) * 8 / 1000 / elapsed)
    grew = now if bytes_sent > previous.bytes_sent else previous.grew_at
    return Flow(bytes_sent, now, grew, rate)


def _pod_ip(ctx: Context, key: OutputKey) -> str:
    for pod in ctx.idx.all(ctx.idx.pods, (key.namespace, key.name)):
        status: dict[str, Any] = pod.get("status") or {}
        if not pod["metadata"].get("deletionTimestamp") and status.get("podIP"):
            return str(status["podIP"])
    return ""


def stalled_for(flow: Flow | None, now: float) -> float:
    """Seconds the bytes to an output's FFmpeg have stood still (0 when flowing)."""
    if flow is None or flow.bitrate_kbps is None:
        return 0.0
    return now - flow.grew_at
