"""The input thumbnails, served by the operator to whoever Kubernetes says may see them.

``GET /v1/thumbnails/{namespace}/{name}.jpg`` with ``Authorization: Bearer <token>``:

1. the token is reviewed by the API server (TokenReview) for this endpoint's audience
   (``AUDIENCE``): a token minted for the API server, or for anything else, is refused,
   so a token that reaches this endpoint cannot be replayed against the cluster;
2. its user must be allowed ``get`` on ``streaminputs/thumbnail`` of that input
   (SubjectAccessReview): the right is granted with RBAC like any other, per namespace
   or per input, and is not implied by reading the StreamInput;
3. the operator fetches the JPEG from the input's confidence monitor (the router pod,
   port 9995) with that input's control-API credential, which only the operator holds.

Every operator replica can answer (nothing here needs the leader's memory): the input's
uid (its credential) and its router Service (which must be the input's own, never a
same-named Service of someone else) are read from the API server. Reviews and pictures
are kept for a few seconds, so a page refreshing every input every few seconds costs the
API server little.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from . import confidence, credentials, switch_render

log = logging.getLogger("streamdist.thumbnails")

AUDIENCE = "streamdist-operator"
ROUTE = "/v1/thumbnails/{namespace}/{name}.jpg"
REVIEW_SECONDS = 30.0  # how long an allowed or refused review is trusted
PICTURE_SECONDS = 2.0  # one fetch from a monitor serves every viewer for this long
FETCH_TIMEOUT = 3.0


@dataclass(frozen=True)
class Identity:
    """Who a token belongs to, as the TokenReview says."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


class Refused(Exception):
    """An answer other than a picture: its HTTP status and a message for the caller."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def bearer(header: str | None) -> str:
    """The token of an ``Authorization: Bearer`` header; Refused(401) without one."""
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Refused(401, "send a bearer token for the audience " + AUDIENCE)
    return token.strip()


def token_review(token: str) -> dict[str, Any]:
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "spec": {"token": token, "audiences": [AUDIENCE]}}  # fmt: skip


def identity(review: dict[str, Any]) -> Identity:
    """The reviewed user; Refused(401) unless authenticated for our audience."""
    status = review.get("status") or {}
    user = status.get("user") or {}
    if not status.get("authenticated") or AUDIENCE not in (status.get("audiences") or [AUDIENCE]):
        raise Refused(401, "the token is not valid for the audience " + AUDIENCE)
    extra = tuple(sorted((k, tuple(v)) for k, v in (user.get("extra") or {}).items()))
    return Identity(str(user.get("username") or ""), str(user.get("uid") or ""), tuple(user.get("groups") or ()), extra)


def attributes(namespace: str, name: str) -> dict[str, str]:
    """The right a thumbnail needs: ``get`` on ``streaminputs/thumbnail`` of that input."""
    return {"group": "streamdist.io", "resource": "streaminputs", "subresource": "thumbnail",
            "verb": "get", "namespace": namespace, "name": name}  # fmt: skip


def access_review(who: Identity, namespace: str, name: str) -> dict[str, Any]:
    """May `who` get this input's thumbnail?"""
    spec: dict[str, Any] = {"resourceAttributes": attributes(namespace, name), "user": who.username,
                            "groups": list(who.groups)}  # fmt: skip
    if who.uid:
        spec["uid"] = who.uid
    if who.extra:
        spec["extra"] = {k: list(v) for k, v in who.extra}
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}


def allowed(review: dict[str, Any]) -> bool:
    return bool((review.get("status") or {}).get("allowed"))


def router_host(input_obj: dict[str, Any] | None, service: dict[str, Any] | None) -> tuple[str, str]:
    """(the input's uid, its router Service's address); Refused(404) when either is
    missing or the Service is not the one the operator made for this input."""
    if not input_obj:
        raise Refused(404, "no such StreamInput")
    uid = str(input_obj["metadata"]["uid"])
    owners = ((service or {}).get("metadata") or {}).get("ownerReferences") or []
    if not any(o.get("controller") and o.get("uid") == uid for o in owners):
        raise Refused(404, "the input has no router yet")
    address = str(((service or {}).get("spec") or {}).get("clusterIP") or "")
    if address in ("", "None"):
        raise Refused(404, "the input has no router yet")
    return uid, address


def picture(code: int, body: bytes) -> bytes:
    """The monitor's answer as a picture, or why there is none."""
    if code == 200 and body.startswith(b"\xff\xd8"):
        return body
    if code == 404:
        raise Refused(404, "no keyframe decoded yet (is the input receiving?)")
    raise Refused(502, f"the confidence monitor answered HTTP {code}")


@dataclass
class Expiring:
    """A small map whose entries are forgotten after `seconds` (and beyond `limit`)."""

    seconds: float
    limit: int = 4096
    clock: Callable[[], float] = time.monotonic
    items: dict[Any, tuple[float, Any]] = field(default_factory=dict)

    def get(self, key: Any) -> Any:
        hit = self.items.get(key)
        if hit is None or self.clock() - hit[0] > self.seconds:
            self.items.pop(key, None)
            return None
        return hit[1]

    def put(self, key: Any, value: Any) -> Any:
        if len(self.items) >= self.limit:
            self.items.clear()  # bounded: a burst of distinct tokens cannot grow it
        self.items[key] = (self.clock(), value)
        return value


class Thumbnails:
    """The endpoint's logic; `kube` is the operator's Kube (blocking calls, run in threads)."""

    def __init__(self, kube: Any, key: Callable[[], str], monitor_on: bool) -> None:
        self.kube, self.key, self.monitor_on = kube, key, monitor_on
        self.reviews = Expiring(REVIEW_SECONDS)
        self.pictures = Expiring(PICTURE_SECONDS)

    def authorize(self, token: str, namespace: str, name: str) -> Identity:
        digest = hashlib.sha256(token.encode()).hexdigest()
        cached = self.reviews.get((digest, namespace, name))
        if cached is None:
            cached = self.reviews.put((digest, namespace, name), self._review(token, namespace, name))
        if isinstance(cached, Refused):
            raise cached
        return cached  # type: ignore[no-any-return]

    def _review(self, token: str, namespace: str, name: str) -> Identity | Refused:
        try:
            who = identity(self.kube.review(token_review(token)))
        except Refused as exc:
            return exc
        if not allowed(self.kube.review(access_review(who, namespace, name))):
            return Refused(403, "not allowed to get streaminputs/thumbnail of this input")
        return who

    def fetch(self, namespace: str, name: str) -> bytes:
        if not self.monitor_on:
            raise Refused(404, "the confidence monitor is off (STREAMDIST_CONFIDENCE_MONITOR)")
        cached = self.pictures.get((namespace, name))
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        uid, host = router_host(self.kube.get_input(namespace, name), self.kube.get_service(namespace, name))
        creds = credentials.for_input(self.key(), namespace, name, uid)
        try:
            code, body = confidence.get(host, switch_render.MONITOR_PORT, "/v1/thumbnail.jpg",
                                        creds.api_user, creds.api_password, timeout=FETCH_TIMEOUT)  # fmt: skip
        except confidence.ConfidenceError:
            raise Refused(503, "the input's confidence monitor cannot be reached") from None
        return self.pictures.put((namespace, name), picture(code, body))  # type: ignore[no-any-return]

    def answer(self, header: str | None, namespace: str, name: str) -> bytes:
        """The picture for this caller, or Refused with why not."""
        who = self.authorize(bearer(header), namespace, name)
        body = self.fetch(namespace, name)
        log.info("thumbnail-served namespace=%s input=%s user=%s", namespace, name, who.username)
        return body


def app(thumbnails: Thumbnails) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        ns, name = request.match_info["namespace"], request.match_info["name"]
        header, running = request.headers.get("Authorization"), asyncio.get_running_loop()
        try:
            body = await running.run_in_executor(None, thumbnails.answer, header, ns, name)
        except Refused as exc:
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
            return web.Response(status=exc.status, text=str(exc) + "\n", headers=headers)
        return web.Response(body=body, content_type="image/jpeg", headers={"Cache-Control": "no-store"})

    application = web.Application(client_max_size=4096)
    application.add_routes([web.get(ROUTE, handle)])
    return application


async def serve(thumbnails: Thumbnails, port: int) -> web.AppRunner:
    """Listen on every address at `port` until the runner is cleaned up."""
    runner = web.AppRunner(app(thumbnails), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, port=port).start()
    log.info("thumbnails-listening port=%s", port)
    return runner
