"""kind on this machine, for real: Debian's Docker daemon, kind built from the Go module
proxy (hack/build-bins.sh kind), and a node image built here (hack/build-images.sh
kind-node: kind's base recipe on Debian's packages, our Kubernetes binaries, and the
images kubeadm runs pre-imported). No registry anywhere.

``DockerDaemon`` runs ``dockerd`` for the tests only: its sockets, exec root and pid
file under a state dir, its data root in the cache (loaded images survive), no iptables
rules and no change of ip_forward (it must not touch the rules of the local node), no
default bridge, and runc through hack/node/runc-bounded.py (privileged containers get
the capabilities this machine can give). ``kind_cluster()`` creates a cluster through pytest-kind's
``KindCluster`` with the config the node image needs (``CLUSTER_CONFIG``).

    with DockerDaemon(tmp / "docker") as docker:
        with kind_cluster("streamdist", tmp / "kind", docker) as cluster:
            cluster.kubectl("get", "nodes")
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from streamdist_dev import kubectl, templates
from streamdist_dev.controlplane import ControlPlaneError, bin_dir, repo_root
from streamdist_dev.procs import reap, spawn, tail
from streamdist_dev.wait import wait_for

LOCK_FILE = Path("/run/lock/streamdist-docker.lock")
DATA_ROOT = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "streamdist" / "docker"


def _pins() -> dict[str, str]:
    text = (repo_root() / "hack" / "versions.env").read_text()
    return dict(ln.split("=", 1) for ln in text.splitlines() if ln[:1].isupper() and "=" in ln)


def cluster_config() -> str:
    """kind's cluster config for the node image built here: kubeadm pulls nothing, it
    runs the images pre-imported under localhost/streamdist/kind/; the node carries its
    own CNI config (ptp, one node), so kind's kindnetd is not installed."""
    pins = _pins()
    return templates.text("kind-cluster.yaml.j2", etcd_version=pins["ETCD_VERSION"], coredns_version=pins["COREDNS_VERSION"])


def kind_bin() -> Path:
    """The pinned kind (built once from the Go module proxy)."""
    return bin_dir(["kind"]) / "kind"


def docker_supported() -> str:
    """'' when dockerd can run here for the tests, else why not."""
    if os.geteuid() != 0:
        return "the tests' Docker daemon needs root"
    for tool in ("dockerd", "docker", "containerd", "runc"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (hack/install-node-debs.sh installs Debian's docker.io)"
    return ""


class Docker:
    """The docker CLI against one daemon (``host``: a DOCKER_HOST value)."""

    def __init__(self, host: str) -> None:
        self.host = host

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host}

    def docker(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        proc = subprocess.run(["docker", *args], capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()[-1500:]}")
        return proc


def running_docker() -> Docker | None:
    """The user's own Docker daemon (DOCKER_HOST or the default socket) when it answers."""
    if shutil.which("docker") is None:
        return None
    d = Docker(os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"))
    try:
        return d if d.docker("version", check=False, timeout=10).returncode == 0 else None
    except subprocess.TimeoutExpired:
        return None


class DockerDaemon(Docker):
    """dockerd for the tests (see the module doc); one per machine (a lock says so)."""

    def __init__(self, state_dir: Path, data_root: Path = DATA_ROOT) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.data_root = data_root
        self.socket = self.state_dir / "docker.sock"
        super().__init__(f"unix://{self.socket}")
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock: int | None = None

    def __enter__(self) -> DockerDaemon:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.data_root.mkdir(parents=True, exist_ok=True)
        LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
        self._lock = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock)
            self._lock = None
            raise RuntimeError(f"another test Docker daemon runs (lock {LOCK_FILE})") from None
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start(self) -> None:
        log = self.state_dir / "dockerd.log"
        self.proc = spawn(
            [
                "dockerd", f"--host={self.host}", f"--data-root={self.data_root}",
                f"--exec-root={self.state_dir / 'exec'}", f"--pidfile={self.state_dir / 'dockerd.pid'}",
                # the local node owns the host's iptables rules and sysctls: leave them alone
                "--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false",
                "--bridge=none", "--storage-driver=overlay2",
                # no CAP_SYS_RESOURCE here: kind's privileged nodes get the capabilities
                # this machine can give (hack/node/runc-bounded.py says why)
                f"--add-runtime=streamdist-runc={repo_root() / 'hack' / 'node' / 'runc-bounded.py'}",
                "--default-runtime=streamdist-runc",
            ],
            log, death_signal=None,
        )  # fmt: skip
        try:
            wait_for("dockerd", lambda: self.docker("version", check=False, timeout=10).returncode == 0, 60, 0.5,
                     check=self._running, error=RuntimeError)
        except RuntimeError as e:
            raise RuntimeError(f"dockerd did not start ({e}):\n{tail(log, 30)}") from None

    def _running(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"dockerd exited {self.proc.returncode}")

    def __exit__(self, *exc: object) -> None:
        reap(self.proc, grace=60)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


def load_node_image(docker: Docker, name: str, archive: Path) -> float:
    """docker load of the node image unless the daemon has it already; seconds spent."""
    if docker.docker("image", "inspect", name, check=False).returncode == 0:
        return 0.0
    t0 = time.monotonic()
    with archive.open("rb") as f:
        proc = subprocess.run(["docker", "load"], stdin=f, capture_output=True, text=True, env=docker.env, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"docker load {archive} failed: {proc.stderr.strip()[-1500:]}")
    return time.monotonic() - t0


@contextlib.contextmanager
def kind_cluster(name: str, workdir: Path, docker: Docker, image: str) -> Iterator:
    """A kind cluster (pytest-kind's KindCluster) on ``docker``; deleted on exit."""
    from pytest_kind import KindCluster

    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "kind-config.yaml"
    config.write_text(cluster_config())
    old = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = docker.host  # pytest-kind runs kind with our environment
    cluster = KindCluster(
        name, kubeconfig=workdir / "kubeconfig", image=image, kind_path=kind_bin(), kubectl_path=bin_dir() / "kubectl"
    )
    try:
        cluster.create(config)
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            cluster.delete()
        docker.docker("network", "rm", "kind", check=False)
        if old is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = old


class KindKube:
    """kubectl on a kind cluster, and how this host and the cluster reach each other:
    pods reach this host at the kind network's gateway (``host_ip``, where receivers
    listen), this host reaches a Service through its NodePort on the node's IP.

    The interface of ``NodeCluster`` that ``start_demo_receivers``/``start_demo_source``,
    ``demo_settled`` and ``OperatorPods`` use."""

    def __init__(self, cluster, docker: Docker) -> None:
        self.cluster = cluster
        self.kubeconfig = Path(cluster.kubeconfig_path)
        nets = json.loads(docker.docker("network", "inspect", "kind").stdout)
        self.host_ip = next(c["Gateway"] for c in nets[0]["IPAM"]["Config"] if ":" not in c.get("Gateway", ":"))
        node = self.kubectl_json("get", "nodes")["items"][0]
        self.node_ip = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")

    def kubectl(self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120):
        return kubectl.run(self.cluster.kubectl_path, self.kubeconfig, *args, input=input, check=check, timeout=timeout)

    def kubectl_json(self, *args: str, **kw) -> dict:
        return json.loads(self.kubectl(*args, "-o", "json", **kw).stdout)

    def apply(self, manifest: dict | str):
        return self.kubectl("apply", "-f", "-", input=kubectl.manifest_text(manifest))

    def wait_for(self, what: str, fn, timeout: float = 60.0, interval: float = 0.5):
        return wait_for(what, fn, timeout, interval, error=ControlPlaneError)

    def host_service(self, namespace: str, name: str, ports) -> None:
        """A selector-less Service whose endpoint is this host (the kind network's gateway)."""
        ports = list(ports)
        self.apply({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
             "spec": {"ports": [{"name": n, "port": p, "targetPort": p, "protocol": pr} for n, p, pr in ports]}},
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
             "metadata": {"name": f"{name}-host", "namespace": namespace,
                          "labels": {"kubernetes.io/service-name": name}},
             "endpoints": [{"addresses": [self.host_ip], "conditions": {"ready": True}}],
             "ports": [{"name": n, "port": p, "protocol": pr} for n, p, pr in ports]},
        ]})  # fmt: skip

    def reach(self, namespace: str, service: str, port: int) -> tuple[str, int] | None:
        """(node IP, NodePort) of ``port`` of a NodePort Service (None until it has one)."""
        spec = self.kubectl_json("get", "svc", service, "-n", namespace)["spec"]
        node_port = next((p.get("nodePort") for p in spec.get("ports", []) if p.get("port") == port), None)
        return (self.node_ip, int(node_port)) if node_port else None


def expose_demo(k: KindKube, namespace: str) -> None:
    """The demo set's input and SRT listener output as NodePort Services: this host is
    outside the kind node, where ClusterIPs are not routed."""
    k.kubectl("patch", "si", "demo", "-n", namespace, "--type=merge", "-p", '{"spec":{"service":{"type":"NodePort"}}}')
    k.kubectl("patch", "so", "demo-srt", "-n", namespace, "--type=merge", "-p", '{"spec":{"service":{"type":"NodePort"}}}')
