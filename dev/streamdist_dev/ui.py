"""`streamdist ui` as a real process, identities to use it with, and its event stream.

``UiProcess`` runs the page's server against a cluster with a kubeconfig of its own (the
page's ServiceAccount, as the chart runs it). ``service_account`` makes a ServiceAccount
with exactly the rules given and returns a token for it (``kubectl create token``), the
way a person gets a token to sign in with. ``EventStream`` reads /api/stream as a
browser's EventSource would, on a thread of its own, one message at a time.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from streamdist_dev.chart import find, rendered
from streamdist_dev.procs import free_ports, reap, spawn, tail
from streamdist_dev.wait import http_ok, wait_for

READ_RULES = [
    {"apiGroups": ["streamdist.io"], "resources": ["streaminputs", "streamoutputs"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list", "watch"]},
]
THUMBNAIL_RULES = [{"apiGroups": ["streamdist.io"], "resources": ["streaminputs/thumbnail"], "verbs": ["get"]}]
WRITE_RULES = [
    *READ_RULES,
    {"apiGroups": ["streamdist.io"], "resources": ["streaminputs", "streamoutputs"], "verbs": ["create", "patch", "delete"]},
]


API = "streamdist.io/v1alpha1"


def stream_input(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "StreamInput", "metadata": {"name": name}, "spec": {"protocol": "udp", **spec}}


def stream_output(name: str, input_name: str = "cam", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "StreamOutput", "metadata": {"name": name}, "spec": {"input": input_name, **spec}}


def apply_all(kubectl: Any, *objs: dict[str, Any]) -> None:
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objs)}))


def chart_page_rules() -> list[dict[str, Any]]:
    """The rules the chart gives the page's ServiceAccount (anonymous reading, thumbnails)."""
    (role,) = find(rendered("--set", "ui.enabled=true", "--set", "ui.anonymousRead=true"), "ClusterRole", "streamdist-ui")
    return role["rules"]  # type: ignore[no-any-return]


def page_kubeconfig(cp: Any, directory: Path, namespace: str = "streamdist-ui") -> Path:
    """A kubeconfig of the page's own ServiceAccount (the chart's rules), token only;
    the ServiceAccount is `page` in `namespace` (cluster-wide rules)."""
    cp.kubectl("create", "namespace", namespace, check=False)
    token = service_account(cp.kubectl, namespace, "page", chart_page_rules(), cluster_wide=True)
    return token_kubeconfig(directory / "kubeconfig", cp.server, cp.pki_dir / "ca.crt", token)


def service_account(kubectl: Any, namespace: str, name: str, rules: list[dict[str, Any]], cluster_wide: bool = False) -> str:
    """A ServiceAccount bound to `rules` (in `namespace`, or everywhere); returns a token of it."""
    role_kind, binding_kind = ("ClusterRole", "ClusterRoleBinding") if cluster_wide else ("Role", "RoleBinding")
    meta = {"name": f"{namespace}-{name}"} if cluster_wide else {"name": name, "namespace": namespace}
    docs = [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}}]
    if rules:
        docs += [
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": role_kind, "metadata": meta, "rules": rules},
            {
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": binding_kind, "metadata": meta,
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": meta["name"]},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
            },
        ]  # fmt: skip
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
    return str(kubectl("create", "token", name, "-n", namespace, "--duration=2h").stdout.strip())


def audience_token(kubectl: Any, namespace: str, name: str, path: Path, audience: str = "streamdist-operator") -> Path:
    """A token of ServiceAccount `name` for `audience` only, written to `path` (as the
    chart's projected token reaches the page)."""
    token = kubectl("create", "token", name, "-n", namespace, "--duration=2h", f"--audience={audience}").stdout.strip()
    path.write_text(token)
    path.chmod(0o600)
    return path


def operator_args(kubectl: Any, operators: Any, page_namespace: str, directory: Path) -> tuple[str, ...]:
    """`streamdist ui` arguments to show thumbnails from the chart's operator pods
    (``OperatorPods``): its thumbnails Service's ClusterIP (this host routes to it, as on
    the local node) and the page ServiceAccount's token for the operator's audience."""
    svc = json.loads(kubectl("get", "service", "-n", operators.namespace, f"{operators.fullname}-thumbnails",
                             "-o", "json").stdout)  # fmt: skip
    port = svc["spec"]["ports"][0]["port"]
    token = audience_token(kubectl, page_namespace, "page", directory / "operator.token")
    return "--operator-url", f"http://{svc['spec']['clusterIP']}:{port}", "--operator-token-file", str(token)


def bearer_get(url: str, token: str | None = None) -> tuple[int, str]:
    """(status, body as text) of one GET with a bearer token, whatever the status."""
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def token_kubeconfig(path: Path, server: str, ca_file: Path, token: str) -> Path:
    """A kubeconfig that signs in with a bearer token only (no client certificate)."""
    cfg = {
        "apiVersion": "v1", "kind": "Config", "current-context": "page",
        "clusters": [{"name": "c", "cluster": {"server": server, "certificate-authority": str(ca_file)}}],
        "users": [{"name": "page", "user": {"token": token}}],
        "contexts": [{"name": "page", "context": {"cluster": "c", "user": "page"}}],
    }  # fmt: skip
    path.write_text(json.dumps(cfg))
    path.chmod(0o600)
    return path


class UiProcess:
    """Starts and stops `python -m streamdist.cli ui` on a free loopback port."""

    def __init__(self, kubeconfig: Path, state_dir: Path, *args: str, port: int = 0) -> None:
        self.kubeconfig, self.state_dir, self.args = kubeconfig, state_dir, args
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = state_dir / "ui.log"
        self.port = port  # 0: a free one

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> UiProcess:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            (self.port,) = free_ports(1)
        cmd = [sys.executable, "-m", "streamdist.cli", "ui", "--host", "127.0.0.1", "--port", str(self.port),
               "--kubeconfig", str(self.kubeconfig), *self.args]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        self.proc = spawn(cmd, self.log, env=env)
        try:
            wait_for("streamdist ui", lambda: http_ok(self.url + "/healthz", timeout=2), 30, 0.2,
                     check=self._running, error=RuntimeError)
        except RuntimeError as e:
            self.__exit__()
            raise RuntimeError(f"{e}:\n{tail(self.log)}") from None
        return self

    def _running(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"streamdist ui exited {self.proc.returncode}")

    def __exit__(self, *exc: object) -> None:
        reap(self.proc, grace=15)

    def request(self, method: str, path: str, body: Any = None, token: str | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
        """(status, decoded JSON or None, raw body) of one call, as the page's script makes it."""
        hdrs = {"X-Streamdist": "1", **(headers or {})}
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        data = None if body is None else json.dumps(body).encode()
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw, status = resp.read(), resp.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        try:
            return status, json.loads(raw), raw
        except ValueError:
            return status, None, raw


class EventStream:
    """/api/stream read as an EventSource would: each `data:` line, decoded, on a queue."""

    def __init__(self, ui: UiProcess, namespace: str, token: str | None = None) -> None:
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self.raw = bytearray()  # everything received, for the canary check
        self.conn = http.client.HTTPConnection("127.0.0.1", ui.port, timeout=60)
        headers = {"Accept": "text/event-stream", **({"Authorization": f"Bearer {token}"} if token else {})}
        self.conn.request("GET", f"/api/stream?namespace={namespace}", headers=headers)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        # A hang-up from close() ends the read with any of these.
        with contextlib.suppress(OSError, ValueError, AttributeError, http.client.HTTPException):
            while True:
                line = self.resp.readline()
                if not line:
                    return
                self.raw += line
                if line.startswith(b"data: "):
                    self.messages.put(json.loads(line[6:]))

    def next(self, timeout: float = 10.0) -> dict[str, Any]:
        return self.messages.get(timeout=timeout)

    def until(self, what: str, fn: Any, timeout: float = 30.0) -> dict[str, Any]:
        """The first message for which fn(message) is true."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no stream message {what} within {timeout:.0f}s")
            try:
                msg = self.next(timeout=left)
            except queue.Empty:
                continue
            if fn(msg):
                return msg

    def close(self) -> None:
        """Hang up (the server sees the browser go), let the reader end, then close."""
        sock = self.conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)
        self.conn.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


CHROMIUM = Path(os.environ.get("STREAMDIST_CHROMIUM", "/usr/bin/chromium"))


def results_dir(name: str) -> Path:
    """Where a test run leaves what a person should look at (screenshots): .state/results/<name>."""
    root = Path(os.environ.get("STREAMDIST_RESULTS_DIR") or Path(__file__).resolve().parents[2] / ".state" / "results")
    out = root / name
    out.mkdir(parents=True, exist_ok=True)
    return out


def launch_chromium(playwright: Any) -> Any:
    """Debian's chromium, headless, driven by Playwright (no browser download).

    A missing browser fails the test: hack/install-debs.sh installs it (`make deps`).
    """
    import pytest

    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} missing: run hack/install-debs.sh (installs Debian's chromium)")
    # As root Chromium refuses to start its sandbox; elsewhere it keeps it.
    args = ["--no-sandbox"] if os.getuid() == 0 else []
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)
