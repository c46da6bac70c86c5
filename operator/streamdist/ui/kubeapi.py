"""The page's Kubernetes client: one identity per call, the viewer's or the page's own.

Two HTTP sessions on purpose. The page's own session may present a client certificate
(a kubeconfig's); the viewer's session never does, because the API server authenticates
a client certificate before a bearer token: a viewer's call sent with the page's
certificate would run with the page's rights instead of the viewer's.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import kubernetes

API_TIMEOUT = aiohttp.ClientTimeout(total=30)
# A watch ends by itself after WATCH_SECONDS; a silent connection is dead after that plus slack.
WATCH_SECONDS = 290
WATCH_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=WATCH_SECONDS + 30)
READ_BUFSIZE = 1 << 20  # one watch event is one line; objects with long status fit


@dataclass(frozen=True)
class Cluster:
    """Where the API server is and how the page itself signs in to it."""

    server: str
    ca_file: str | None
    verify: bool
    client_cert: tuple[str, str] | None
    own_token: Callable[[], str | None]


class ApiError(Exception):
    """A refused call: the API server's status code and its Status object."""

    def __init__(self, status: int, body: dict[str, Any] | None) -> None:
        self.status = status
        self.body = body or {}
        super().__init__(f"{status} {self.body.get('reason', '')}")

    @property
    def message(self) -> str:
        return str(self.body.get("message") or "")

    @property
    def causes(self) -> list[dict[str, Any]]:
        return list((self.body.get("details") or {}).get("causes") or [])


def load_cluster(kubeconfig: str | None = None) -> Cluster:
    """The in-cluster ServiceAccount, else the kubeconfig (`kubeconfig` or $KUBECONFIG)."""
    cfg = kubernetes.client.Configuration()
    if kubeconfig:
        kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)  # type: ignore[no-untyped-call]
    else:
        try:
            kubernetes.config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        except kubernetes.config.ConfigException:
            kubernetes.config.load_kube_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    cert = (cfg.cert_file, cfg.key_file) if cfg.cert_file and cfg.key_file else None

    def own_token() -> str | None:
        # auth_settings() runs the refresh hook: a projected token is re-read when it rotates.
        settings: dict[str, Any] = dict(cfg.auth_settings())
        value = (settings.get("BearerToken") or {}).get("value")
        return str(value).split(" ", 1)[-1] if value else None

    return Cluster(cfg.host, cfg.ssl_ca_cert, bool(cfg.verify_ssl), cert, own_token)


def _ssl_context(cluster: Cluster, with_client_cert: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=cluster.ca_file)
    if not cluster.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if with_client_cert and cluster.client_cert:
        ctx.load_cert_chain(*cluster.client_cert)
    return ctx


class Api:
    """Holds the two sessions; hands out a Caller per identity."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._own: aiohttp.ClientSession | None = None
        self._viewer: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        for attr, own in (("_own", True), ("_viewer", False)):
            conn = aiohttp.TCPConnector(ssl=_ssl_context(self.cluster, own), limit=200)
            setattr(self, attr, aiohttp.ClientSession(connector=conn, read_bufsize=READ_BUFSIZE))

    async def close(self) -> None:
        for session in (self._own, self._viewer):
            if session is not None:
                await session.close()

    def as_viewer(self, token: str) -> Caller:
        assert self._viewer is not None, "Api.start() first"
        return Caller(self._viewer, self.cluster.server, lambda: token, viewer=True)

    def as_page(self) -> Caller:
        assert self._own is not None, "Api.start() first"
        return Caller(self._own, self.cluster.server, self.cluster.own_token, viewer=False)


class Caller:
    """Calls to the API server as one identity."""

    def __init__(
        self, session: aiohttp.ClientSession, server: str, token: Callable[[], str | None], viewer: bool
    ) -> None:
        self.session, self.server, self.token, self.viewer = session, server.rstrip("/"), token, viewer

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        token = self.token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """One request; the decoded JSON answer, or ApiError with the Status the server sent."""
        data = None if body is None else json.dumps(body)
        async with self.session.request(
            method, self.server + path, params=query or {}, data=data,
            headers=self._headers(content_type if data is not None else None), timeout=API_TIMEOUT,
        ) as resp:  # fmt: skip
            raw = await resp.read()
            got = _json(raw)
            if not 200 <= resp.status <= 299:
                raise ApiError(resp.status, got)
            return got

    async def watch(self, path: str, query: dict[str, str]) -> AsyncIterator[dict[str, Any]]:
        """The events of one watch request, as the API server sends them, until it ends it."""
        params = {**query, "watch": "1", "allowWatchBookmarks": "true", "timeoutSeconds": str(WATCH_SECONDS)}
        async with self.session.get(
            self.server + path, params=params, headers=self._headers(None), timeout=WATCH_TIMEOUT
        ) as resp:
            if resp.status != 200:
                raise ApiError(resp.status, _json(await resp.read()))
            async for line in resp.content:
                if line.strip():
                    yield json.loads(line)


def _json(raw: bytes) -> dict[str, Any]:
    try:
        got = json.loads(raw) if raw else {}
    except ValueError:
        return {"message": "the API server sent an answer that is not JSON"}
    return got if isinstance(got, dict) else {}
