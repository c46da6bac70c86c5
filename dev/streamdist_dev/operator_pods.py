"""The operator as a cluster runs it: the Helm chart, its image, two peering replicas.

``OperatorPods`` installs ``charts/streamdist`` with the pinned helm into a cluster
(the local real node of dev/streamdist_dev/node.py, or any kubeconfig), with the images
given (on the local node: the ones hack/build-images.sh built and the node imported),
and reads what the replicas say about themselves:

- ``metrics(pod)``: a replica's /metrics, through the API server's pod proxy;
- ``service_metrics()``: /metrics through the chart's metrics Service (the API server's
  service proxy picks one of its endpoints, as a scraper resolving it would);
- ``active()``: the replica whose ``streamdist_operator_active`` gauge is 1 (kopf
  peering lets one act; the other stands by);
- ``logs()``: every replica's log, previous containers included.

    pods = OperatorPods(nc.kubectl, nc.kubeconfig, images=IMAGES, values={"resyncSeconds": 2})
    pods.install()               # helm upgrade --install --wait; both replicas Ready
    pods.active()                # "streamdist-1"
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from streamdist_dev.controlplane import bin_dir, repo_root

CHART = repo_root() / "charts" / "streamdist"
ACTIVE_METRIC = re.compile(r"^streamdist_operator_active(?:\{[^}]*\})? (\S+)$", re.M)


def chart_values(images: Mapping[str, str], pull_policy: str = "IfNotPresent") -> dict[str, Any]:
    """Chart values naming the given images ({"operator"|"ffmpeg"|"mediamtx": ref})."""

    def split(ref: str) -> dict[str, str]:
        repo, _, tag = ref.rpartition(":")
        if not repo or "/" in tag:
            raise ValueError(f"image reference without a tag: {ref}")
        return {"repository": repo, "tag": tag}

    values: dict[str, Any] = {"imagePullPolicy": pull_policy, "images": {}}
    if "operator" in images:
        values["image"] = split(images["operator"])
    for name in ("ffmpeg", "mediamtx"):
        if name in images:
            values["images"][name] = split(images[name])
    return values


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


class OperatorPods:
    """The chart's StatefulSet of operator replicas in one cluster (see the module doc).

    Args:
        kubectl: runs kubectl against the cluster (``NodeCluster.kubectl``).
        kubeconfig: for helm (None: helm's own default, the current context).
        images: {"operator", "ffmpeg", "mediamtx": reference} the chart is told to run.
        values: more chart values (merged over those of ``images``).
    """

    def __init__(
        self,
        kubectl: Callable[..., subprocess.CompletedProcess],
        kubeconfig: Path | None,
        images: Mapping[str, str],
        values: Mapping[str, Any] | None = None,
        *,
        release: str = "streamdist",
        namespace: str = "streamdist",
        workdir: Path | None = None,
    ) -> None:
        self.kubectl = kubectl
        self.kubeconfig = kubeconfig
        self.release, self.namespace = release, namespace
        self.values = _merge(chart_values(images), values or {})
        self.workdir = workdir or (Path(kubeconfig).parent if kubeconfig else Path.cwd())
        self.install_seconds = 0.0

    # ------------------------------------------------------------ install

    def helm(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        where = ["--kubeconfig", str(self.kubeconfig)] if self.kubeconfig else []
        cmd = [str(bin_dir() / "helm"), *where, *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
        return proc

    def install(self, timeout: float = 300) -> OperatorPods:
        """helm upgrade --install --wait: returns once every replica is Ready."""
        values = self.workdir / f"{self.release}-values.json"
        values.write_text(json.dumps(self.values, indent=1) + "\n")
        t0 = time.monotonic()
        self.helm(
            "upgrade", "--install", self.release, str(CHART), "-n", self.namespace, "--create-namespace",
            "-f", str(values), "--wait", "--timeout", f"{int(timeout)}s", timeout=timeout + 30,
        )  # fmt: skip
        self.install_seconds = time.monotonic() - t0
        return self

    def uninstall(self) -> None:
        self.helm("uninstall", self.release, "-n", self.namespace, "--wait", "--timeout", "120s", timeout=150)

    # ------------------------------------------------------------ looking at them

    def pods(self) -> list[dict[str, Any]]:
        got = self.kubectl(
            "get", "pods", "-n", self.namespace, "-o", "json",
            "-l", f"app.kubernetes.io/instance={self.release},app.kubernetes.io/component=operator",
        )  # fmt: skip
        return json.loads(got.stdout)["items"]

    def ready_pods(self) -> list[str]:
        return sorted(
            p["metadata"]["name"]
            for p in self.pods()
            if not p["metadata"].get("deletionTimestamp")
            and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
        )

    def running_pods(self) -> list[str]:
        """Replicas whose container runs (Ready or not yet) and that are not being deleted."""
        return sorted(
            p["metadata"]["name"]
            for p in self.pods()
            if not p["metadata"].get("deletionTimestamp")
            and any("running" in (cs.get("state") or {}) for cs in p["status"].get("containerStatuses", []))
        )

    def metrics(self, pod: str) -> str:
        port = self.values.get("metrics", {}).get("port", 9090)
        path = f"/api/v1/namespaces/{self.namespace}/pods/http:{pod}:{port}/proxy/metrics"
        return self.kubectl("get", "--raw", path, timeout=15).stdout

    def service_metrics(self) -> str:
        service = f"{self.fullname}-metrics"
        path = f"/api/v1/namespaces/{self.namespace}/services/http:{service}:metrics/proxy/metrics"
        return self.kubectl("get", "--raw", path, timeout=15).stdout

    @property
    def fullname(self) -> str:
        return self.release if "streamdist" in self.release else f"{self.release}-streamdist"

    def activity(self) -> dict[str, bool]:
        """{running pod: whether it says it acts}; a pod whose /metrics fails is left out
        (not Ready pods too: the readiness probe's period would only delay the answer)."""
        out: dict[str, bool] = {}
        for pod in self.running_pods():
            try:
                m = ACTIVE_METRIC.search(self.metrics(pod))
            except subprocess.SubprocessError:
                continue
            if m:
                out[pod] = float(m.group(1)) == 1.0
        return out

    def active(self) -> str | None:
        """The one replica that acts, or None while none or several say they do."""
        acting = [pod for pod, yes in self.activity().items() if yes]
        return acting[0] if len(acting) == 1 else None

    def logs(self, tail: int = 200) -> str:
        out = []
        for pod in self.pods():
            name = pod["metadata"]["name"]
            for previous in ("false", "true"):
                got = self.kubectl(
                    "logs", "-n", self.namespace, name, f"--previous={previous}", f"--tail={tail}", check=False
                )
                if got.returncode == 0:
                    out.append(f"----- {name} (previous={previous})\n{got.stdout}")
        return "\n".join(out)
