"""kopf wiring: indexes, event handlers and the resync loop. No logic lives here.

Only event-watching handlers are used: they persist nothing on our objects (no kopf
annotations, no finalizers), and every reconcile is level-triggered, so a missed or
repeated event is healed by the next one or by the periodic resync.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import kopf
from prometheus_client import REGISTRY, start_http_server

from .. import render, thumbnails
from ..metrics import StatusCollector
from ..models import GROUP, VERSION
from . import inputs, loop, outputs
from .context import Context, Key
from .dispatch import guarded, listed, output_due, siblings

MANAGED = {"app.kubernetes.io/managed-by": "streamdist"}


def _plain(body: Any) -> dict[str, Any]:
    """A detached copy of a kopf body: indexes must not hold kopf's live views."""
    if hasattr(body, "items"):
        return {k: _plain(v) for k, v in body.items()}
    if isinstance(body, list):
        return [_plain(v) for v in body]  # type: ignore[return-value]
    return body  # type: ignore[no-any-return]


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _indexed(body: Any, keep: tuple[str, ...] = ()) -> dict[str, Any]:
    """A detached copy for an index, without what no reconcile reads.

    managedFields and kubectl's last-applied copy are most of a small object's bytes,
    and a pod's spec is what we rendered: held for 1,000 outputs they cost tens of MB.
    ``keep`` names the top-level fields to hold (all when empty).
    """
    out = {k: _plain(v) for k, v in body.items() if not keep or k in keep}  # copy only what is kept
    meta = out.get("metadata") or {}
    meta.pop("managedFields", None)
    if meta.get("annotations"):
        meta["annotations"].pop(LAST_APPLIED, None)
    return out


# --- indexes (filled by kopf before any handler runs) ---------------------------
# async: kopf runs them on its event loop; as sync functions each of the thousands of
# events at start-up took a trip through the thread pool.


@kopf.index(GROUP, VERSION, "streaminputs")
async def input_index(namespace: str, name: str, body: Any, **_: Any) -> dict[Key, Any]:
    return {(namespace, name): _indexed(body)}


@kopf.index(GROUP, VERSION, "streamoutputs")
async def output_index(namespace: str, name: str, body: Any, **_: Any) -> dict[Key, Any]:
    return {(namespace, name): _indexed(body)}


@kopf.index(GROUP, VERSION, "streamoutputs")
async def output_by_input_index(namespace: str, name: str, spec: Any, meta: Any, **_: Any) -> dict[Key, Any]:
    return {(namespace, spec.get("input", "")): {"name": name, "created": meta.get("creationTimestamp", "")}}


@kopf.index("v1", "pods", labels={**MANAGED, "streamdist.io/output": kopf.PRESENT})
async def pod_index(namespace: str, labels: Any, body: Any, **_: Any) -> dict[Key, Any]:
    return {(namespace, labels["streamdist.io/output"]): _indexed(body, keep=("metadata", "status"))}


@kopf.index("apps", "v1", "deployments", labels={**MANAGED, "streamdist.io/input": kopf.PRESENT})
async def router_index(namespace: str, labels: Any, annotations: Any, status: Any, **_: Any) -> dict[Key, Any]:
    return {
        (namespace, labels["streamdist.io/input"]): {
            "readyReplicas": (status or {}).get("readyReplicas"),
            "appliedDigest": (annotations or {}).get(render.APPLIED_DIGEST_ANNOTATION),
        }
    }


def _bind(memo: Any, kw: dict[str, Any]) -> Context:
    ctx: Context = memo.ctx
    ctx.bind(
        inputs=kw["input_index"],
        outputs=kw["output_index"],
        outputs_by_input=kw["output_by_input_index"],
        pods=kw["pod_index"],
        routers=kw["router_index"],
    )
    return ctx


# --- events ------------------------------------------------------------------------


@kopf.on.event(GROUP, VERSION, "streaminputs")
def input_event(event: Any, namespace: str, name: str, memo: Any, **kw: Any) -> None:
    ctx = _bind(memo, kw)
    guarded(inputs.reconcile, ctx, (namespace, name))
    if not listed(event):
        siblings(ctx, namespace, name)


@kopf.on.event(GROUP, VERSION, "streamoutputs")
def output_event(event: Any, namespace: str, name: str, spec: Any, memo: Any, **kw: Any) -> None:
    ctx = _bind(memo, kw)
    guarded(outputs.reconcile, ctx, (namespace, name))
    if event.get("type") == "DELETED":
        siblings(ctx, namespace, spec.get("input", ""))  # a freed slot may let a TooManyOutputs one run


@kopf.on.event("v1", "pods", labels={**MANAGED, "streamdist.io/output": kopf.PRESENT})
def pod_event(event: Any, namespace: str, name: str, labels: Any, memo: Any, **kw: Any) -> None:
    ctx = _bind(memo, kw)
    ctx.idx.stale.discard((namespace, name))
    key = (namespace, labels["streamdist.io/output"])
    if listed(event) and key in ctx.idx.outputs:
        return  # the output's own event reconciles it; an orphan's pod goes now
    guarded(outputs.reconcile, ctx, key)


@kopf.on.event("apps", "v1", "deployments", labels={**MANAGED, "streamdist.io/input": kopf.PRESENT})
def router_event(event: Any, namespace: str, labels: Any, memo: Any, **kw: Any) -> None:
    ctx = _bind(memo, kw)
    key = (namespace, labels["streamdist.io/input"])
    if listed(event) and key in ctx.idx.inputs:
        return  # the input's own event reconciles it
    guarded(inputs.reconcile, ctx, key)
    if event.get("type") == "ADDED":
        siblings(ctx, namespace, key[1])  # outputs wait for the router (its credentials)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    settings.posting.level = 100  # our own Events only: kopf's would repeat them
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.execution.max_workers = 16
    settings.networking.error_backoffs = [1, 2, 5, 10]
    key_ns, _, key_name = memo.ctx.settings.key_secret.partition("/")
    running = asyncio.get_running_loop()
    memo.ctx.key = await running.run_in_executor(None, memo.ctx.kube.installation_key, key_ns, key_name)
    memo.ctx.timers.start(running, functools.partial(output_due, memo.ctx))
    memo.resync_task = asyncio.create_task(loop.run(memo.ctx))
    if memo.ctx.settings.metrics_port:
        REGISTRY.register(StatusCollector(memo.ctx))
        start_http_server(memo.ctx.settings.metrics_port)
    if memo.ctx.settings.thumbnail_port:
        served = thumbnails.Thumbnails(memo.ctx.kube, lambda: memo.ctx.key, memo.ctx.settings.confidence_monitor)
        memo.thumbnails = await thumbnails.serve(served, memo.ctx.settings.thumbnail_port)


@kopf.on.cleanup()
async def cleanup(memo: Any, **_: Any) -> None:
    task = getattr(memo, "resync_task", None)
    if task:
        task.cancel()
    memo.ctx.timers.stop()
    runner = getattr(memo, "thumbnails", None)
    if runner:
        await runner.cleanup()
