"""Running reconciles so that one object's failure touches no other, and only on the
replica that acts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubernetes.client.exceptions import ApiException

from . import outputs
from .context import Context, Key, log, logline
from .memory import OutputKey


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


def siblings(ctx: Context, namespace: str, input_name: str) -> None:
    """Reconcile every output of an input (its router or its status moved)."""
    for sibling in ctx.idx.all(ctx.idx.outputs_by_input, (namespace, input_name)):
        guarded(outputs.reconcile, ctx, (namespace, sibling["name"]))


def listed(event: Any) -> bool:
    """An object of a (re)list, not a change: every object there has its own event.

    At start-up (1,000 outputs: their pods, the outputs and 50 routers listed) reconciling
    an output on its own event, its pod's and, 20 at a time, its input's made 4x the work.
    """
    return event.get("type") is None


def output_due(ctx: Context, key: OutputKey) -> None:
    """A boundary of the output's schedule has come (handlers/timers.py)."""
    guarded(outputs.reconcile, ctx, (key.namespace, key.name))
