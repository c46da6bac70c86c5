"""StreamOutput reconcile: observe (the object, its pods, its input's view, the memory),
decide (output_plan.plan_output, pure), act (executor.act_output)."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from .. import destinations, schedule, urls
from ..kube import NameConflict
from ..metrics import RECONCILE_SECONDS
from ..models import StreamOutput, explain, parse_output
from ..output_plan import Blocked, Flowing, SeenOutput, plan_output
from ..schedule import Position
from ..secret_policy import Refusal
from . import executor, status_writes
from .context import Context, Key
from .health import stalled_for
from .memory import InputKey, OutputKey

KIND = "StreamOutput"


def reconcile(ctx: Context, key: Key) -> None:
    """Level-triggered: safe to run on every event and on every resync tick."""
    okey = OutputKey(*key)
    body = ctx.idx.one(ctx.idx.outputs, key)
    if body is None:
        ctx.memory.forget(okey)
        ctx.timers.arm(okey, None)
        return
    with ctx.lock(okey), RECONCILE_SECONDS.labels(KIND).time():
        seen = observe(ctx, okey, body)
        try:
            executor.act_output(ctx, okey, body, plan_output(seen))
        except NameConflict as exc:
            executor.act_output(ctx, okey, body, plan_output(dataclasses.replace(seen, conflict=str(exc))))


def observe(ctx: Context, key: OutputKey, body: dict[str, Any]) -> SeenOutput:
    """Everything the decision needs, read once: spec, destination, input, pods, memory."""
    try:
        out = parse_output(body)
    except ValidationError as exc:
        return SeenOutput(body=body, output=None, invalid=explain(exc), previous=_previous(ctx, key, body))
    resolved = _destination(ctx, out)
    dest, version, where = resolved if isinstance(resolved, tuple) else (None, "", "")
    created = body["metadata"].get("creationTimestamp", "")
    now = datetime.now(UTC)
    window, schedule_error = _window(ctx, key, out, now)
    memory = ctx.memory.output(key)
    input_key = (key.namespace, out.spec.input)
    input_body = ctx.idx.one(ctx.idx.inputs, input_key)
    return SeenOutput(
        body=body,
        output=out,
        destination=dest,
        secret_version=version,
        blocked=resolved if isinstance(resolved, Blocked) else None,
        duplicate=_duplicate(ctx, key, out, (dest, where), window, schedule_error, (created, now)),
        settled=_settled(ctx),
        input_body=input_body,
        input_status=status_writes.previous_status(ctx, InputKey(*input_key), input_body) if input_body else {},
        siblings=tuple((s["created"], s["name"]) for s in ctx.idx.all(ctx.idx.outputs_by_input, input_key)),
        router_exists=ctx.idx.one(ctx.idx.routers, input_key) is not None,
        pods=tuple(ctx.idx.all(ctx.idx.pods, (key.namespace, key.name))),
        previous=_previous(ctx, key, body),
        flow=_flowing(ctx, key),
        telemetry=memory.telemetry.summary if memory.telemetry else None,
        failures=memory.failures,
        extras=memory.extras,
        window=window,
        schedule_error=schedule_error,
        now=now,
        settings=ctx.settings,
    )


def _duplicate(
    ctx: Context,
    key: OutputKey,
    out: StreamOutput,
    destination: tuple[urls.Destination | None, str],
    window: Position | None,
    schedule_error: str,
    created_now: tuple[str, datetime],
) -> bool:
    """Claims the destination (``where`` it really sends) while the output sends to it;
    True when an older output holds it.

    Off air by its schedule an output sends nowhere: two outputs may share a destination
    at different times. On air, its claim lapses at its window's end (the next window's
    output may run before this one's timer has released it)."""
    (dest, where), (created, now) = destination, created_now
    on_air = not schedule_error and (window is None or window.inside)
    running = dest is not None and not dest.listener and not out.spec.suspend and on_air
    peers = ctx.memory.claim(key, where if running else None, created, window.next_stop if window else None)
    return any((p.created, p.name) < (created, key.name) and (p.until is None or now < p.until) for p in peers)


def _settled(ctx: Context) -> bool:
    """Every output has claimed its destination once since the start (then it stays so)."""
    if not ctx.memory.settled:
        ctx.memory.settled = ctx.memory.claimed([OutputKey(*k) for k in ctx.idx.keys(ctx.idx.outputs)])
    return ctx.memory.settled


def _window(ctx: Context, key: OutputKey, out: StreamOutput, now: datetime) -> tuple[Position | None, str]:
    """Where `now` is in spec.schedule (kept in memory until its next boundary), or why
    the schedule is refused."""
    memory = ctx.memory.output(key)
    if out.spec.schedule is None:
        memory.placed = None
        return None, ""
    try:
        memory.placed = schedule.locate(out.spec.schedule, now, memory.placed)
    except schedule.ScheduleError as exc:
        memory.placed = None
        return None, str(exc)
    return memory.placed.position, ""


def _previous(ctx: Context, key: OutputKey, body: dict[str, Any]) -> dict[str, Any]:
    return status_writes.previous_status(ctx, key, body)


def _flowing(ctx: Context, key: OutputKey) -> Flowing | None:
    flow = ctx.memory.output(key).flow
    if flow is None:
        return None
    return Flowing(flow.bitrate_kbps, stalled_for(flow, time.monotonic()))


def _destination(ctx: Context, out: StreamOutput) -> tuple[urls.Destination, str, str] | Blocked:
    """The parsed destination, the version of the Secret it came from, and a digest of
    where it really sends (two outputs with the same one would fight)."""
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
    refused = None if dest.listener else ctx.settings.destination_policy.refusal(dest.host, dest.port)
    if refused:
        return Blocked("Failed", "ForbiddenDestination", refused)
    return dest, version, urls.destination_digest(url)


def _is_router(ctx: Context, namespace: str, dest: urls.Destination) -> bool:
    """A destination that names a streamdist router or ingest, of any namespace."""
    router_ips = {ip for _, record in ctx.memory.inputs() if record.applied for ip in record.applied.service_ips}
    inputs = set(ctx.idx.keys(ctx.idx.inputs))
    return destinations.is_router(dest.host, namespace, inputs, router_ips, ctx.settings.cluster_domain)
