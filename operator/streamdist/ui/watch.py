"""Kubernetes watches -> messages for one browser connection.

Per kind: list (a SYNC message that replaces what the page holds of that kind), then
watch from the list's resourceVersion and forward each change as its view. A watch the
server ends is resumed from the last version seen (bookmarks keep it fresh); 410 Gone
means that version is compacted away, so the kind is listed again. A refusal (401/403)
is told to the page once and that kind stops; a lost connection is retried with back-off.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from ..models import GROUP, VERSION
from .forms import refusal_message
from .kubeapi import ApiError, Caller
from .views import VIEWS

log = logging.getLogger("streamdist.ui")
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class Kind:
    name: str
    prefix: str
    plural: str
    field_selector: str = ""

    def path(self, namespace: str) -> str:
        where = f"/namespaces/{namespace}" if namespace else ""
        return f"{self.prefix}{where}/{self.plural}"

    def query(self) -> dict[str, str]:
        return {"fieldSelector": self.field_selector} if self.field_selector else {}


KINDS = (
    Kind("StreamInput", f"/apis/{GROUP}/{VERSION}", "streaminputs"),
    Kind("StreamOutput", f"/apis/{GROUP}/{VERSION}", "streamoutputs"),
    # Only Events about the two kinds, filtered by the API server.
    Kind("Event", "/api/v1", "events", f"involvedObject.apiVersion={GROUP}/{VERSION}"),
)
KIND = {k.name: k for k in KINDS}


class Expired(Exception):
    """The watch's resourceVersion is gone (410): list again."""


async def list_kind(caller: Caller, kind: Kind, namespace: str) -> tuple[list[dict[str, Any]], str]:
    """(views of every object, the list's resourceVersion)."""
    got = await caller.call("GET", kind.path(namespace), query=kind.query())
    view = VIEWS[kind.name]
    return [view(item) for item in got.get("items") or []], str((got.get("metadata") or {}).get("resourceVersion", ""))


async def follow(caller: Caller, kind: Kind, namespace: str, send: Send) -> None:
    """Forward one kind to `send` until cancelled or refused."""
    delay = 1.0
    while True:
        try:
            items, version = await list_kind(caller, kind, namespace)
            await send({"type": "SYNC", "kind": kind.name, "items": items})
            delay = 1.0
            while True:
                version = await _watch_once(caller, kind, namespace, version, send)
        except Expired:
            continue
        except ApiError as exc:
            if exc.status in (401, 403, 404):
                await send({"type": "ERROR", "kind": kind.name, "status": exc.status, "message": refusal_message(exc)})
                return
            await _lost(kind, send, f"the API server answered {exc.status}", delay)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            await _lost(kind, send, type(exc).__name__, delay)
        delay = min(delay * 2, 10.0)


async def _lost(kind: Kind, send: Send, why: str, delay: float) -> None:
    log.warning("watch lost kind=%s why=%s retry_in=%.0fs", kind.name, why, delay)
    await send({"type": "RETRY", "kind": kind.name, "message": f"lost the watch of {kind.name} ({why}); retrying"})
    await asyncio.sleep(delay)


async def _watch_once(caller: Caller, kind: Kind, namespace: str, version: str, send: Send) -> str:
    """One watch request; returns the resourceVersion to resume from."""
    view = VIEWS[kind.name]
    async for event in caller.watch(kind.path(namespace), {**kind.query(), "resourceVersion": version}):
        etype, obj = event.get("type"), event.get("object") or {}
        if etype == "ERROR":
            if obj.get("code") == 410:
                raise Expired()
            raise ApiError(int(obj.get("code") or 500), obj)
        version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
        if etype in ("ADDED", "MODIFIED", "DELETED"):
            await send({"type": etype, "kind": kind.name, "object": view(obj)})
    return version
