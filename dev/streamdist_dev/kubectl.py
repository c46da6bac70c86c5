"""The one kubectl wrapper of the dev tools.

``run`` runs a kubectl binary against a kubeconfig (what ControlPlane, NodeCluster and
KindKube call); ``Kubectl`` is what a user types, bound to one namespace of any of
them, with the waits and reads the tests need.
"""

from __future__ import annotations

import itertools
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
REPO_ROOT = Path(__file__).resolve().parents[2]


class KubectlError(subprocess.CalledProcessError):
    """A kubectl call failed; its str() carries the command's stderr."""

    def __str__(self) -> str:
        err = self.stderr if isinstance(self.stderr, str) else (self.stderr or b"").decode(errors="replace")
        return f"{' '.join(map(str, self.cmd))} exited {self.returncode}: {err.strip()}"


def run(
    kubectl: Path,
    kubeconfig: Path,
    *args: Any,
    input: str | bytes | None = None,
    check: bool = True,
    timeout: float = 120.0,
    cache_dir: Path | None = None,
) -> subprocess.CompletedProcess:
    """Runs kubectl; text in/out unless input is bytes. ``cache_dir``: the discovery
    cache (not ~/.kube/cache, where a new port every run piles up)."""
    cmd = [str(kubectl), f"--kubeconfig={kubeconfig}"]
    if cache_dir is not None:
        cmd.append(f"--cache-dir={cache_dir}")
    cmd += map(str, args)
    text = not isinstance(input, bytes)
    proc = subprocess.run(cmd, input=input, capture_output=True, text=text, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise KubectlError(proc.returncode, cmd, proc.stdout, proc.stderr)
    return proc


def manifest_text(manifest: dict | str) -> str:
    """What ``kubectl apply -f -`` reads: YAML/JSON text as given, a dict as JSON."""
    return manifest if isinstance(manifest, str) else json.dumps(manifest)


def install_crds(cluster: Any) -> None:
    """Applies crds/ to a cluster (anything with ``kubectl``) and waits until the API
    server serves both kinds."""
    cluster.kubectl("apply", "-f", str(REPO_ROOT / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "crd/streaminputs.streamdist.io",
                    "crd/streamoutputs.streamdist.io", "--timeout=60s")


_ns_counter = itertools.count()


def namespace_name(prefix: str, test_name: str) -> str:
    """A namespace name of its own for a test (unique in this process, valid DNS label)."""
    name = f"{prefix}{next(_ns_counter)}-{test_name.lower()}"
    return "".join(c if c.isalnum() else "-" for c in name)[:50].strip("-")


class Cluster(Protocol):
    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess: ...

    def wait_for(self, what: str, fn: Callable[[], T | None], timeout: float = ..., interval: float = ...) -> T: ...


class Kubectl:
    """What a user types, bound to one namespace, with waiting helpers."""

    def __init__(self, cluster: Cluster, namespace: str, wait_timeout: float = 30.0, wait_interval: float = 0.3) -> None:
        self.cp = cluster
        self.ns = namespace
        self.wait_timeout = wait_timeout
        self.wait_interval = wait_interval

    def __call__(self, *args: str, input: str | None = None, check: bool = True) -> Any:
        return self.cp.kubectl("-n", self.ns, *args, input=input, check=check)

    def apply(self, obj: dict[str, Any] | str) -> Any:
        return self("apply", "-f", "-", input=manifest_text(obj))

    def apply_file(self, *paths: Path | str, check: bool = True) -> Any:
        files = [a for p in paths for a in ("-f", str(REPO_ROOT / p))]
        return self("apply", *files, check=check)

    def get(self, *args: str) -> Any:
        return json.loads(self("get", *args, "-o", "json").stdout)

    def items(self, kind: str, selector: str = "") -> list[dict[str, Any]]:
        args = [kind] + (["-l", selector] if selector else [])
        return self.get(*args)["items"]  # type: ignore[no-any-return]

    def status(self, kind: str, name: str) -> dict[str, Any]:
        return self.get(kind, name).get("status") or {}

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.items("events") if e["involvedObject"]["name"] == name]

    def wait(self, what: str, fn: Callable[[], T | None], timeout: float | None = None,
             interval: float | None = None) -> T:
        return self.cp.wait_for(what, fn, timeout or self.wait_timeout, interval or self.wait_interval)

    def condition(self, kind: str, name: str, ctype: str) -> dict[str, Any] | None:
        for cond in self.status(kind, name).get("conditions") or []:
            if cond["type"] == ctype:
                return cond  # type: ignore[no-any-return]
        return None

    def service_ip(self, name: str) -> str:
        return self.get("service", name)["spec"]["clusterIP"]  # type: ignore[no-any-return]

    def describe(self) -> str:
        out = self("get", "streamdist,pods,svc", "-o", "wide", check=False)
        return (out.stdout or "") + (out.stderr or "")
