"""The web server of `streamdist ui` (aiohttp): the page, its JSON API and its live stream.

Who calls Kubernetes: the viewer's bearer token, from an `Authorization: Bearer` header
(an authenticating proxy in front) or from the HttpOnly cookie set when they signed in
here. No token: reads use the page's own ServiceAccount if anonymous reading is on, and
nothing can be changed. Writes need a JSON body and the X-Streamdist header, which a
cross-site form cannot send; the cookie is SameSite=Strict as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from .. import thumbnails
from ..render import ui_page
from . import forms
from .kubeapi import Api, ApiError, Caller
from .views import VIEWS
from .watch import KIND, KINDS, follow, list_kind

log = logging.getLogger("streamdist.ui")
STATIC = Path(__file__).parent / "static"
COOKIE = "streamdist_token"
WRITE_HEADER = "X-Streamdist"
KEEPALIVE_SECONDS = 15.0
SECURITY_HEADERS = {
    # Bootstrap draws form controls with data: SVGs; nothing else comes from outside the page.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
API_KEY: web.AppKey[Api] = web.AppKey("api", Api)
OPTIONS_KEY: web.AppKey[Options] = web.AppKey("options")
OPERATOR_KEY: web.AppKey[OperatorClient] = web.AppKey("operator")
THUMBNAIL_TIMEOUT = aiohttp.ClientTimeout(total=10)


@dataclass(frozen=True)
class Options:
    anonymous_read: bool = False
    namespace: str = ""  # what the page shows first; "" = every namespace the viewer may list
    # The operator's thumbnail endpoint and the file of the page's token for it (a
    # ServiceAccount token projected for thumbnails.AUDIENCE); "" shows no thumbnails.
    operator_url: str = ""
    operator_token_file: str = ""


class OperatorClient:
    """The page's calls to the operator's thumbnail endpoint, with the page's own token
    for that audience (read at each call: a projected token is rotated in place)."""

    def __init__(self, url: str, token_file: str) -> None:
        self.url, self.token_file = url.rstrip("/"), Path(token_file)
        self.session: aiohttp.ClientSession | None = None

    async def thumbnail(self, namespace: str, name: str) -> tuple[int, bytes]:
        if self.session is None:
            self.session = aiohttp.ClientSession(timeout=THUMBNAIL_TIMEOUT)
        token = self.token_file.read_text().strip()
        url = f"{self.url}/v1/thumbnails/{quote(namespace, safe='')}/{quote(name, safe='')}.jpg"
        async with self.session.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
            return resp.status, await resp.read()

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


def token_of(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer ") and header[7:].strip():
        return header[7:].strip()
    return request.cookies.get(COOKIE) or None


def reader(request: web.Request) -> Caller:
    """Who reads: the viewer, else the page itself if allowed, else 401."""
    api, token = request.app[API_KEY], token_of(request)
    if token:
        return api.as_viewer(token)
    if request.app[OPTIONS_KEY].anonymous_read:
        return api.as_page()
    raise _error(401, "sign in with a Kubernetes token to see streams (anonymous reading is off)")


def from_the_page(request: web.Request) -> None:
    """A call that changes something (or who is signed in) comes from the page's own script:
    a cross-site form or link cannot set this header."""
    if request.headers.get(WRITE_HEADER) != "1":
        raise _error(403, f"changes need the {WRITE_HEADER} header the page sends")


def writer(request: web.Request) -> Caller:
    """Only the viewer writes, and only from the page's own script."""
    from_the_page(request)
    token = token_of(request)
    if not token:
        raise _error(401, "sign in with a Kubernetes token to make changes")
    return request.app[API_KEY].as_viewer(token)


def _error(status: int, message: str, errors: dict[str, str] | None = None) -> web.HTTPException:
    body = json.dumps({"message": message, "errors": errors or {}})
    cls = {400: web.HTTPBadRequest, 401: web.HTTPUnauthorized, 403: web.HTTPForbidden, 404: web.HTTPNotFound}
    return cls.get(status, web.HTTPUnprocessableEntity)(text=body, content_type="application/json")


def _refused(exc: ApiError) -> web.HTTPException:
    errors = forms.api_errors(exc)
    status = exc.status if exc.status in (401, 403, 404) else 422
    return _error(status, errors.get("") or "the API server found the object invalid", errors)


async def _form(request: web.Request) -> dict[str, Any]:
    try:
        got = await request.json()
    except ValueError:
        raise _error(400, "the request body must be JSON") from None
    if not isinstance(got, dict):
        raise _error(400, "the request body must be a JSON object")
    return got


def _path(kind: str, namespace: str, name: str = "") -> str:
    base = KIND[kind].path(namespace)
    return f"{base}/{name}" if name else base


# --- pages and session ----------------------------------------------------------------


@functools.cache
def page() -> str:
    return ui_page()


async def index(request: web.Request) -> web.Response:
    return web.Response(text=page(), content_type="text/html", headers=SECURITY_HEADERS)


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def no_icon(request: web.Request) -> web.Response:
    return web.Response(status=204)  # browsers ask; the page has no icon to fetch


async def whoami(caller: Caller) -> str:
    """The user name the API server sees for this caller (SelfSubjectReview, allowed to everyone)."""
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    got = await caller.call("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", body)
    return str(((got.get("status") or {}).get("userInfo") or {}).get("username") or "")


async def session_get(request: web.Request) -> web.Response:
    options, token = request.app[OPTIONS_KEY], token_of(request)
    user = None
    if token:
        try:
            user = await whoami(request.app[API_KEY].as_viewer(token))
        except ApiError as exc:
            if exc.status != 401:
                raise _refused(exc) from None
    info = {"user": user, "anonymousRead": options.anonymous_read, "namespace": options.namespace,
            "thumbnails": bool(options.operator_url)}  # fmt: skip
    return web.json_response({**info, "viaHeader": bool(token and not request.cookies.get(COOKIE))})


async def session_post(request: web.Request) -> web.Response:
    """Sign in: the API server must accept the token before the page keeps it (HttpOnly cookie)."""
    from_the_page(request)
    form = await _form(request)
    token = str(form.get("token") or "").strip()
    if not token or any(c.isspace() for c in token):
        raise _error(400, "paste a Kubernetes bearer token (one line)", {"token": "a token is one line of text"})
    try:
        user = await whoami(request.app[API_KEY].as_viewer(token))
    except ApiError as exc:
        msg = "the API server did not accept this token" if exc.status == 401 else forms.refusal_message(exc)
        raise _error(401, msg, {"token": msg}) from None
    resp = web.json_response({"user": user})
    secure = request.secure or request.headers.get("X-Forwarded-Proto") == "https"
    resp.set_cookie(COOKIE, token, httponly=True, samesite="Strict", secure=secure, path="/")
    log.info("signed in user=%s", user)
    return resp


async def session_delete(request: web.Request) -> web.Response:
    from_the_page(request)
    resp = web.json_response({"user": None})
    resp.del_cookie(COOKIE, path="/")
    return resp


# --- reads ----------------------------------------------------------------------------


async def state(request: web.Request) -> web.Response:
    """Everything the page shows, once (the stream sends the same, then every change)."""
    caller, namespace = reader(request), request.query.get("namespace", "")
    out: dict[str, Any] = {}
    for kind in KINDS:
        try:
            out[kind.name], _ = await list_kind(caller, kind, namespace)
        except ApiError as exc:
            raise _refused(exc) from None
    return web.json_response(out)


def _sse(message: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(message, separators=(',', ':'))}\n\n".encode()


async def stream(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: a SYNC per kind, then each change as the API server's watch reports it."""
    caller, namespace = reader(request), request.query.get("namespace", "")
    headers = {"Content-Type": "text/event-stream", "X-Accel-Buffering": "no", **SECURITY_HEADERS}
    resp = web.StreamResponse(headers=headers)
    await resp.prepare(request)
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)
    tasks = [asyncio.create_task(follow(caller, kind, namespace, queue.put)) for kind in KINDS]
    try:
        await resp.write(_sse({"type": "HELLO", "namespace": namespace}))
        await _pump(queue, resp)
    except (ConnectionResetError, asyncio.CancelledError):
        pass  # the browser went away
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return resp


async def _pump(queue: asyncio.Queue[dict[str, Any]], resp: web.StreamResponse) -> None:
    while True:
        try:
            message = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
        except TimeoutError:
            await resp.write(b": keep-alive\n\n")  # proxies keep the line open; a gone browser shows here
            continue
        await resp.write(_sse(message))


async def thumbnail(request: web.Request) -> web.Response:
    """An input's latest keyframe: the viewer (or the page, reading anonymously) must be
    allowed get on streaminputs/thumbnail of it; the page then fetches it from the
    operator, which checks the page's own right the same way."""
    caller, ns, name = reader(request), request.match_info["namespace"], request.match_info["name"]
    client = request.app.get(OPERATOR_KEY)
    if client is None:
        raise _error(404, "this page shows no thumbnails (no operator address)")
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
              "spec": {"resourceAttributes": thumbnails.attributes(ns, name)}}  # fmt: skip
    try:
        got = await caller.call("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review)
    except ApiError as exc:
        raise _refused(exc) from None
    if not (got.get("status") or {}).get("allowed"):
        raise _error(403, "not allowed to get streaminputs/thumbnail of this input")
    try:
        status, body = await client.thumbnail(ns, name)
    except (aiohttp.ClientError, TimeoutError, OSError):
        raise _error(503, "the operator's thumbnail endpoint does not answer") from None
    if status != 200:
        raise _error(404 if status == 404 else 503, body.decode(errors="replace").strip()[:200])
    return web.Response(body=body, content_type="image/jpeg", headers={"Cache-Control": "no-store"})


# --- writes (as the viewer only) -------------------------------------------------------


async def _create(request: web.Request, outcome: forms.Outcome, kind: str) -> web.Response:
    if outcome.manifest is None:
        raise _error(422, "the form has errors", outcome.errors)
    caller, namespace = writer(request), request.match_info["namespace"]
    query = {"fieldManager": "streamdist-ui", "fieldValidation": "Strict"}
    try:
        got = await caller.call("POST", _path(kind, namespace), outcome.manifest, query=query)
    except ApiError as exc:
        raise _refused(exc) from None
    log.info("created kind=%s namespace=%s name=%s", kind, namespace, got["metadata"]["name"])
    return web.json_response(VIEWS[kind](got), status=201)


async def create_output(request: web.Request) -> web.Response:
    outcome = forms.output_form(await _form(request), request.match_info["namespace"])
    return await _create(request, outcome, "StreamOutput")


async def create_input(request: web.Request) -> web.Response:
    outcome = forms.input_form(await _form(request), request.match_info["namespace"])
    return await _create(request, outcome, "StreamInput")


async def patch_output(request: web.Request) -> web.Response:
    """Suspend or resume: the one spec field the page changes in place."""
    form = await _form(request)
    if not isinstance(form.get("suspend"), bool):
        raise _error(400, "give suspend: true or false", {"spec.suspend": "must be true or false"})
    caller, ns, name = writer(request), request.match_info["namespace"], request.match_info["name"]
    body = {"spec": {"suspend": form["suspend"]}}
    try:
        query = {"fieldManager": "streamdist-ui"}
        got = await caller.call("PATCH", _path("StreamOutput", ns, name), body, query, "application/merge-patch+json")
    except ApiError as exc:
        raise _refused(exc) from None
    log.info("patched kind=StreamOutput namespace=%s name=%s suspend=%s", ns, name, form["suspend"])
    return web.json_response(VIEWS["StreamOutput"](got))


async def delete_output(request: web.Request) -> web.Response:
    caller, ns, name = writer(request), request.match_info["namespace"], request.match_info["name"]
    try:
        await caller.call("DELETE", _path("StreamOutput", ns, name))
    except ApiError as exc:
        raise _refused(exc) from None
    log.info("deleted kind=StreamOutput namespace=%s name=%s", ns, name)
    return web.json_response({"deleted": name})


# --- the application --------------------------------------------------------------------


def make_app(api: Api, options: Options) -> web.Application:
    app = web.Application(client_max_size=64 * 1024)
    app[API_KEY], app[OPTIONS_KEY] = api, options
    if options.operator_url:
        app[OPERATOR_KEY] = OperatorClient(options.operator_url, options.operator_token_file)
    ns, out = "/api/namespaces/{namespace}", "/api/namespaces/{namespace}/streamoutputs"
    app.add_routes([
        web.get("/", index),
        web.get("/healthz", healthz),
        web.get("/favicon.ico", no_icon),
        web.get("/api/session", session_get),
        web.post("/api/session", session_post),
        web.delete("/api/session", session_delete),
        web.get("/api/state", state),
        web.get("/api/stream", stream),
        web.post(out, create_output),
        web.patch(out + "/{name}", patch_output),
        web.delete(out + "/{name}", delete_output),
        web.post(ns + "/streaminputs", create_input),
        web.get(ns + "/streaminputs/{name}/thumbnail.jpg", thumbnail),
        web.static("/static", STATIC, append_version=False),
    ])  # fmt: skip

    async def start(_app: web.Application) -> None:
        await api.start()

    async def stop(_app: web.Application) -> None:
        await api.close()
        if OPERATOR_KEY in app:
            await app[OPERATOR_KEY].close()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.on_response_prepare.append(_headers)
    return app


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    for key, value in SECURITY_HEADERS.items():
        response.headers.setdefault(key, value)


def serve(api: Api, options: Options, host: str, port: int) -> None:
    """Run until SIGTERM/SIGINT; prints the address once it listens."""
    app = make_app(api, options)

    def listening(_banner: str) -> None:  # aiohttp calls this once the socket is bound
        print(f"streamdist ui: listening on http://{host}:{port}/", flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        web.run_app(app, host=host, port=port, print=listening, access_log=None, handle_signals=True)
