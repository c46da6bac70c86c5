"""The periodic loop: whether this replica acts (kopf peering), the health poll and
resync, and the quick look at outputs held in back-off.

Whole-index reads are snapshots taken on kopf's event loop, the thread that changes
the indexes; the work itself runs in the executor.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .. import peering
from . import health, inputs, outputs, telemetry
from .context import Context, Key, log, logline
from .dispatch import guarded

BACKOFF_CHECK_SECONDS = 1.0


def resync(ctx: Context, input_keys: list[Key], output_keys: list[Key]) -> None:
    """Poll the routers, then look at everything again.

    Heals what no event announced (a Secret created later, a health change).
    """
    health.poll_all(ctx)
    for key in input_keys:
        guarded(inputs.reconcile, ctx, key)
    for key in output_keys:
        guarded(outputs.reconcile, ctx, key)


def check_backoff(ctx: Context, crashing: list[Key]) -> None:
    """Outputs whose pod sits in CrashLoopBackOff (the spec's delays are short)."""
    for key in crashing:
        guarded(outputs.reconcile, ctx, key)


def crashlooping(ctx: Context) -> list[Key]:
    return [key for key, pods in ctx.idx.items(ctx.idx.pods) if any(_crashlooping(pod) for pod in pods)]


def _crashlooping(pod: dict[str, Any]) -> bool:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if ((cs.get("state") or {}).get("waiting") or {}).get("reason") == "CrashLoopBackOff":
            return True
    return False


def active(ctx: Context) -> bool:
    """Whether this replica acts; on resuming, forget pods deleted while paused."""
    settings = ctx.settings
    if not settings.peering:
        return True
    namespace = settings.namespaces[0] if settings.namespaces else None
    now_paused = peering.paused(
        ctx.kube.peering_status(settings.peering, namespace), settings.identity, settings.priority
    )
    if ctx.paused and not now_paused:
        listed = {(ns, p["metadata"]["name"]) for (ns, _), pods in ctx.idx.items(ctx.idx.pods) for p in pods}
        ctx.idx.stale = listed - ctx.kube.live_pod_names(settings.namespaces)
        logline("resumed", stale_pods=len(ctx.idx.stale))
    elif now_paused and not ctx.paused:
        logline("paused", peering=settings.peering)
    ctx.paused = now_paused
    return not now_paused


async def run(ctx: Context) -> None:
    """Three loops side by side: every second whether this replica acts and the back-off
    check; every resync period the health poll and resync; every telemetry period the
    output pods' metrics. A slow router delays only the second, a slow pod the third."""
    await asyncio.gather(_every(BACKOFF_CHECK_SECONDS, _backoff_tick, ctx),
                         _every(ctx.settings.resync_seconds, _resync_tick, ctx),
                         _every(ctx.settings.telemetry_seconds, _telemetry_tick, ctx))  # fmt: skip


async def _every(seconds: float, tick: Any, ctx: Context) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await tick(ctx)
        except Exception:  # keep the loop alive; the next tick retries
            log.exception("resync failed")


async def _backoff_tick(ctx: Context) -> None:
    loop = asyncio.get_running_loop()
    resumed = ctx.paused  # a replica taking over looks at everything at once (windows closed meanwhile too)
    if await loop.run_in_executor(None, active, ctx):
        if resumed:
            await _resync_tick(ctx)
        await loop.run_in_executor(None, check_backoff, ctx, crashlooping(ctx))


async def _telemetry_tick(ctx: Context) -> None:
    if not ctx.paused and ctx.settings.telemetry:
        await asyncio.get_running_loop().run_in_executor(None, telemetry.poll_all, ctx)


async def _resync_tick(ctx: Context) -> None:
    if not ctx.paused:
        keys = ctx.idx.keys(ctx.idx.inputs), ctx.idx.keys(ctx.idx.outputs)
        await asyncio.get_running_loop().run_in_executor(None, resync, ctx, *keys)
