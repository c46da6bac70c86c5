"""The one way status is written: only what changed, remembered so that the next
reconcile (and the outputs reading an input) see it before the watch does."""

from __future__ import annotations

from typing import Any

from ..events import Event
from ..status import status_changed
from .context import Context, logline
from .memory import InputKey, ObjectKey, Written


def kind_of(key: ObjectKey) -> str:
    return "StreamInput" if isinstance(key, InputKey) else "StreamOutput"


def _record(ctx: Context, key: ObjectKey) -> Any:
    return ctx.memory.input(key) if isinstance(key, InputKey) else ctx.memory.output(key)


def previous_status(ctx: Context, key: ObjectKey, body: dict[str, Any]) -> dict[str, Any]:
    """The status as last written by us, else as last seen in the watch.

    The index lags our own patches by one watch event; reading it alone would write
    the same status twice and post the same Event twice.
    """
    written: Written | None = _record(ctx, key).written
    if written and written.uid == body["metadata"].get("uid"):
        return written.status
    return body.get("status") or {}


def write(ctx: Context, key: ObjectKey, body: dict[str, Any], status: dict[str, Any]) -> bool:
    """Patch the fields of `status` that differ from what is there; True when written."""
    previous = previous_status(ctx, key, body)
    if not status_changed(previous, status):
        return False
    ctx.kube.patch_status(kind_of(key), key.namespace, key.name, status)
    _record(ctx, key).written = Written(body["metadata"].get("uid", ""), {**previous, **status})
    return True


def post(ctx: Context, key: ObjectKey, body: dict[str, Any], event: Event) -> None:
    """An Event on this object alone, and one log line for it."""
    kind = kind_of(key)
    ctx.kube.event({**body, "kind": kind}, event.type, event.reason, event.message)
    logline("event", kind=kind, namespace=key.namespace, name=key.name, reason=event.reason)
