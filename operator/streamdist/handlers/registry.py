"""kopf wiring: indexes, event handlers and the resync loop. No logic lives here.

Only event-watching handlers are used: they persist nothing on our objects (no kopf
annotations, no finalizers), and every reconcile is level-triggered, so a missed or
repeated event is healed by the next one or by the periodic resync.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException
from prometheus_client import REGISTRY, start_http_server

from .. import peering, render
from ..metrics import StatusCollector
from ..models import GROUP, VERSION
from . import health, inputs, outputs
from .context import Context, Key, log, logline

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


def guarded(fn: Callable[[Context, Key], None], ctx: Context, key: Key) -> None:
    """Run one reconcile so that its failure touches no other object.

    API errors here are transient (a namespace being deleted, a conflict, the API
    server restarting): one log line, and the next event or resync tick retries.
    A paused replica (a peer outranks it) runs nothing, not even the events kopf had
    already queued when it paused: the resync after resuming catches up.
    """
    if ctx.paused:
        return
    try:
        fn(ctx, key)
    except ApiException as exc:
        logline("api-error", namespace=key[0], name=key[1], status=exc.status, reason=exc.reason)
    except Exception as exc:  # a bug must not stop the other objects' reconciles
        log.exception("reconcile failed namespace=%s name=%s error=%s", key[0], key[1], type(exc).__name__)


def _siblings(ctx: Context, namespace: str, input_name: str) -> None:
    for sibling in ctx.idx.all(ctx.idx.outputs_by_input, (namespace, input_name)):
        guarded(outputs.reconcile, ctx, (namespace, sibling["name"]))


def _listed(event: Any) -> bool:
    """An object of a (re)list, not a change: every object there has its own event.

    At start-up (1,000 outputs: their pods, the outputs and 50 routers listed) reconciling
    an output on its own event, its pod's and, 20 at a time, its input's made 4x the work.
    """
    return event.get("type") is None


@kopf.on.event(GROUP, VERSION, "streaminputs")
def input_event(event: Any, namespace: str, name: str, memo: Any, **kw: Any) -> None:
    ctx = _bind(memo, kw)
    guarded(inputs.reconcile, ctx, (namespace, name))
    if not _listed(event):
        _siblings(ctx, namespace, name)


@kopf.on.event(GROUP, VERSION, "streamoutputs")
def output_event(event: Any, namespace: str, name: str, spec: Any, memo: Any, **kw: Any) -> None:
    ctx = _bind(memo, kw)
    guarded(outputs.reconcile, ctx, (namespace, name))
    if event.get("type") == "DELETED":
        _siblings(ctx, namespace, spec.get("input", ""))  # a freed slot may let a TooManyOutputs one run


@kopf.on.event("v1", "pods", labels={**MANAGED, "streamdist.io/output": kopf.PRESENT})
def pod_event(event: Any, namespace: str, name: str, labels: Any, memo: Any, **kw: Any) -> None:
    ctx = _bind(memo, kw)
    ctx.idx.stale.discard((namespace, name))
    key = (namespace, labels["streamdist.io/output"])
    if _listed(event) and key in ctx.idx.outputs:
        return  # the output's own event reconciles it; an orphan's pod goes now
    guarded(outputs.reconcile, ctx, key)


@kopf.on.event("apps", "v1", "deployments", labels={**MANAGED, "streamdist.io/input": kopf.PRESENT})
def router_event(event: Any, namespace: str, labels: Any, memo: Any, **kw: Any) -> None:
    ctx = _bind(memo, kw)
    key = (namespace, labels["streamdist.io/input"])
    if _listed(event) and key in ctx.idx.inputs:
        return  # the input's own event reconciles it
    guarded(inputs.reconcile, ctx, key)
    if event.get("type") == "ADDED":
        _siblings(ctx, namespace, key[1])  # outputs wait for the router (its credentials)


# --- periodic resync ---------------------------------------------------------------


def resync(ctx: Context) -> None:
    """Poll the routers, then look at everything again.

    Heals what no event announced (a Secret created later, a health change).
    """
    health.poll_all(ctx)
    for key in list(ctx.idx.inputs):
        guarded(inputs.reconcile, ctx, key)
    for key in list(ctx.idx.outputs):
        guarded(outputs.reconcile, ctx, key)


def check_backoff(ctx: Context) -> None:
    """Every second: outputs whose pod sits in CrashLoopBackOff (the spec's delays are short)."""
    for key, store in list(ctx.idx.pods.items()):
        if any(_crashlooping(pod) for pod in store):
            guarded(outputs.reconcile, ctx, key)


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
        listed = {(ns, p["metadata"]["name"]) for (ns, _), store in ctx.idx.pods.items() for p in store}
        ctx.idx.stale = listed - ctx.kube.live_pod_names(settings.namespaces)
        logline("resumed", stale_pods=len(ctx.idx.stale))
    elif now_paused and not ctx.paused:
        logline("paused", peering=settings.peering)
    ctx.paused = now_paused
    return not now_paused


async def _resync_loop(ctx: Context) -> None:
    loop = asyncio.get_running_loop()
    last = loop.time()
    while True:
        await asyncio.sleep(1.0)
        try:
            if not await loop.run_in_executor(None, active, ctx):
                continue
            if loop.time() - last >= ctx.settings.resync_seconds:
                last = loop.time()
                await loop.run_in_executor(None, resync, ctx)
            else:
                await loop.run_in_executor(None, check_backoff, ctx)
        except Exception:  # keep the loop alive; the next tick retries
            log.exception("resync failed")


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    settings.posting.level = 100  # our own Events only: kopf's would repeat them
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.execution.max_workers = 16
    settings.networking.error_backoffs = [1, 2, 5, 10]
    key_ns, _, key_name = memo.ctx.settings.key_secret.partition("/")
    loop = asyncio.get_running_loop()
    memo.ctx.key = await loop.run_in_executor(None, memo.ctx.kube.installation_key, key_ns, key_name)
    memo.resync_task = asyncio.create_task(_resync_loop(memo.ctx))
    if memo.ctx.settings.metrics_port:
        REGISTRY.register(StatusCollector(memo.ctx))
        start_http_server(memo.ctx.settings.metrics_port)


@kopf.on.cleanup()
async def cleanup(memo: Any, **_: Any) -> None:
    task = getattr(memo, "resync_task", None)
    if task:
        task.cancel()
