"""A real single-node Kubernetes cluster on this machine, built from real parts.

``NodeCluster`` starts the control plane of ``ControlPlane`` (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler on loopback; no KWOK) and one real node:

- containerd (Debian's 1.6) with runc, cgroup driver ``cgroupfs`` (no systemd is PID 1
  here), overlayfs, our own config, root, state and socket under the state dir;
- the kubelet (same pinned Kubernetes as the control plane), on cgroup v1;
- CNI: bridge + host-local + portmap (+ loopback, which containerd runs itself) with
  the pod CIDR 10.244.0.0/24 on the bridge ``sdbr0`` (10.244.0.1, the node's IP);
- kube-proxy in iptables mode, so ClusterIPs work from pods and from this host;
- CoreDNS as a host process on 10.244.0.1:53 (the pods' nameserver), answering for
  ``cluster.local`` only (no forwarding: pods cannot resolve or reach the outside);
- NetworkPolicy enforced by kube-router's network policy controller (only that part of
  kube-router: no routing, no service proxy), a host process programming iptables and
  ipsets; traffic from this host itself to pods is always let through (see
  ``_start_kube_router``); hack/NODE.md says why this enforcer and not another;
- the images of ``hack/build-images.sh`` (pause, MediaMTX, FFmpeg, operator) imported
  into containerd's ``k8s.io`` namespace: no registry anywhere.

containerd and the kubelet run in a mount + PID namespace of their own, whose PID 1 is
``hack/node/init.py``: every mount they make and every container process dies with it.
The host-side changes (bridge, iptables rules of kube-proxy, kubelet, portmap and
kube-router, kube-router's ipsets, our guard chain and routing rule, a few sysctls, the
cgroup tree ``/streamdist-node``) are undone by
``stop()``, and by ``cleanup_host()`` after a crash (``hack/node/down.sh``).

    with NodeCluster(tmp / "node") as nc:
        nc.kubectl("get", "nodes")
        env = nc.operator_env()      # STREAMDIST_* for `streamdist run` on this node
        nc.host_service("ns", "receiver", [("rtmp", 1935, "TCP")])   # -> 10.244.0.1

Needs root (and Linux with cgroup v1 or v2, iptables, bridges). One node per machine:
the bridge, the pod CIDR and the cgroup root are fixed names (a lock file enforces it).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from streamdist_dev.controlplane import (
    SERVICE_CLUSTER_IP_RANGE,
    Component,
    ControlPlane,
    ControlPlaneError,
    repo_root,
)
from streamdist_dev.controlplane import (
    bin_dir as _bin_dir,
)
from streamdist_dev.procs import StartStop, free_ports, run_timed, spawn, tail
from streamdist_dev.templates import render
from streamdist_dev.wait import http_ok, wait_for

__all__ = [
    "BRIDGE",
    "IMAGES",
    "NODE_IP",
    "NODE_NAME",
    "POD_CIDR",
    "NodeCluster",
    "build_images",
    "cleanup_host",
    "node_supported",
]

NODE_NAME = "streamdist-node"
BRIDGE = "sdbr0"
POD_CIDR = "10.244.0.0/24"
BRIDGE_MAC = "02:53:44:00:00:01"  # locally administered, fixed: see _setup_host
NODE_IP = "10.244.0.1"  # the bridge's address: gateway of the pods, the node's InternalIP
CLUSTER_DOMAIN = "cluster.local"
CGROUP_ROOT = "streamdist-node"
GUARD_CHAIN = "STREAMDIST-NODE"
LOCK_FILE = Path("/run/lock/streamdist-node.lock")
KUBELET_PORT = 10250
# Chains the node's parts make in the host's iptables: kube-proxy, the kubelet and
# kube-router (KUBE-*: KUBE-ROUTER-*, KUBE-POD-FW-*, KUBE-NWPLCY-*), the CNI
# portmap/bridge plugins (CNI-*), and ours.
CHAIN_PREFIXES = ("KUBE-", "CNI-", GUARD_CHAIN)
# kube-router's ipsets: KUBE-SRC-*/KUBE-DST-* per policy, and the TMP-<16 base32> sets
# of its atomic swaps (left behind if it dies mid-sync).
IPSET_NAMES = re.compile(r"^(KUBE-(SRC|DST)-[A-Z2-7]+|TMP-[A-Z2-7]{16})$")
# Pods reach Services through this host; a Service without ready endpoints is not
# DNATed by kube-proxy. kube-proxy REJECTs such traffic in filter FORWARD, but
# kube-router's chain comes first there and ACCEPTs pod traffic its policies allow, so
# a routing rule refuses it instead (ICMP "prohibited": the client fails at once, as
# with kube-proxy's REJECT, rather than waiting for a timeout).
SERVICE_RULE_PREF = "10244"
# sysctls the kubelet (with protectKernelDefaults false) or we set: restored on stop.
SYSCTLS = (
    "net.ipv4.ip_forward",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.ipv4.conf.all.route_localnet",
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
)
CNI_BIN_DIR = Path("/usr/lib/cni")
# what the node runs: the sandbox, the routers, the outputs and the operator itself
NODE_IMAGES = ("pause", "mediamtx", "ffmpeg", "operator")


def _image_names() -> dict[str, str]:
    """The names hack/build-images.sh gives its images: the operator and FFmpeg carry the
    project's version (the chart's appVersion), MediaMTX its pinned release."""
    import tomllib

    version = tomllib.loads((repo_root() / "pyproject.toml").read_text())["project"]["version"]
    pins = dict(
        line.split("=", 1) for line in (repo_root() / "hack" / "versions.env").read_text().splitlines()
        if re.match(r"^[A-Z_]+=", line)
    )  # fmt: skip
    return {
        "operator": f"localhost/streamdist/operator:{version}",
        "ffmpeg": f"localhost/streamdist/ffmpeg:{version}",
        "mediamtx": f"localhost/streamdist/mediamtx:{pins['MEDIAMTX_VERSION'].lstrip('v')}",
    }


# no registry: imported into containerd (or loaded into a cluster) under these names
IMAGES = _image_names()
NODE_DEBS_SCRIPT = "hack/install-node-debs.sh"


def node_supported() -> str:
    """'' when this machine can run the node, else why not (for pytest.skip)."""
    if os.geteuid() != 0:
        return "the local node needs root"
    for tool in ("containerd", "runc", "ctr", "iptables", "ipset", "ip", "unshare", "conntrack"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (run {NODE_DEBS_SCRIPT})"
    for plugin in ("bridge", "host-local", "portmap", "loopback"):
        if not (CNI_BIN_DIR / plugin).exists():
            return f"CNI plugin {plugin} missing in {CNI_BIN_DIR} (run {NODE_DEBS_SCRIPT})"
    return ""


def _run(*args: str, check: bool = True, input: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(args), capture_output=True, text=True, input=input, timeout=timeout)
    if check and proc.returncode != 0:
        raise ControlPlaneError(
            f"{' '.join(args)} exited {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}"
        )
    return proc


def build_images(names: Sequence[str] = ()) -> dict[str, Path]:
    """Runs hack/build-images.sh (cached) and returns {image name: OCI archive}."""
    script = repo_root() / "hack" / "build-images.sh"
    proc = subprocess.run(["bash", str(script), *names], stdout=subprocess.PIPE, stderr=None, text=True)
    if proc.returncode != 0:
        raise ControlPlaneError(f"{script} {' '.join(names)} failed with exit code {proc.returncode}")
    out: dict[str, Path] = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            out[parts[0]] = Path(parts[1])
    return out


def _node_bin(script_name: str) -> Path:
    """Runs hack/node/<script_name> (a cached build) and returns the path it prints last."""
    script = repo_root() / "hack" / "node" / script_name
    proc = subprocess.run(["bash", str(script)], stdout=subprocess.PIPE, stderr=None, text=True)
    if proc.returncode != 0:
        raise ControlPlaneError(f"{script} failed with exit code {proc.returncode}")
    return Path(proc.stdout.strip().splitlines()[-1])


def coredns_bin() -> Path:
    return _node_bin("build-coredns.sh")


def kube_router_bin() -> Path:
    return _node_bin("build-kube-router.sh")


# --------------------------------------------------------------- host cleanup


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def _read_sysctl(name: str) -> str | None:
    try:
        return _sysctl_path(name).read_text().strip()
    except OSError:
        return None


def _write_sysctl(name: str, value: str) -> None:
    with contextlib.suppress(OSError):
        _sysctl_path(name).write_text(value + "\n")


def _iptables_cleanup() -> None:
    """Deletes every rule jumping to, and every chain named, KUBE-*/CNI-*/ours."""
    for tool in ("iptables", "ip6tables"):
        if shutil.which(tool) is None:
            continue
        for table in ("filter", "nat", "mangle", "raw"):
            save = subprocess.run([f"{tool}-save", "-t", table], capture_output=True, text=True)
            if save.returncode != 0:
                continue
            ours: list[str] = []
            jumps: list[list[str]] = []
            for line in save.stdout.splitlines():
                if line.startswith(":"):
                    chain = line[1:].split()[0]
                    if chain.startswith(CHAIN_PREFIXES):
                        ours.append(chain)
                elif line.startswith("-A "):
                    words = line.split()
                    chain = words[1]
                    if chain.startswith(CHAIN_PREFIXES):
                        continue  # goes with its chain
                    target = words[words.index("-j") + 1] if "-j" in words else ""
                    if target.startswith(CHAIN_PREFIXES):
                        jumps.append(words)
            for words in jumps:
                # iptables-save quotes comments: re-split the original line with shlex
                import shlex

                line = " ".join(words)
                argv = shlex.split(line)
                subprocess.run([tool, "-t", table, "-D", *argv[1:]], capture_output=True)
            for chain in ours:
                subprocess.run([tool, "-t", table, "-F", chain], capture_output=True)
            for chain in ours:
                subprocess.run([tool, "-t", table, "-X", chain], capture_output=True)


def _ipset_cleanup() -> list[str]:
    """Destroys kube-router's ipsets (after the iptables rules that used them are gone)."""
    if shutil.which("ipset") is None:
        return []
    names = subprocess.run(["ipset", "list", "-n"], capture_output=True, text=True).stdout.split()
    left = []
    for name in filter(IPSET_NAMES.match, names):
        if subprocess.run(["ipset", "destroy", name], capture_output=True).returncode != 0:
            left.append(f"ipset left: {name}")
    return left


def _service_rule_cleanup() -> None:
    while subprocess.run(["ip", "rule", "del", "pref", SERVICE_RULE_PREF], capture_output=True).returncode == 0:
        pass


def _cgroup_dirs() -> list[Path]:
    base = Path("/sys/fs/cgroup")
    found = []
    if (base / CGROUP_ROOT).is_dir():
        found.append(base / CGROUP_ROOT)  # cgroup v2
    for hier in base.iterdir() if base.is_dir() else ():
        d = hier / CGROUP_ROOT
        if d.is_dir():
            found.append(d)
    return found


def _cgroup_cleanup(timeout: float = 20.0) -> list[str]:
    """rmdir the /streamdist-node cgroup trees, deepest first; returns what stayed."""
    deadline = time.monotonic() + timeout
    left: list[str] = []
    while True:
        left = []
        for top in _cgroup_dirs():
            dirs = sorted((p for p in [top, *top.rglob("*")] if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
            for d in dirs:
                try:
                    d.rmdir()
                except FileNotFoundError:
                    pass
                except OSError:
                    left.append(str(d))
        if not left or time.monotonic() > deadline:
            return left
        # processes still exiting: kill what is left in them, then retry
        for d in left:
            with contextlib.suppress(OSError):
                for pid in Path(d, "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(pid), signal.SIGKILL)
        time.sleep(0.3)


def _pid_matches(pid: int, needle: str) -> bool:
    try:
        return needle in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def cleanup_host(state_dir: Path | str, quiet: bool = False) -> list[str]:
    """Undoes everything a node (running or crashed) left on this host; idempotent.

    Kills the processes recorded in ``state_dir/pids`` (only if their command line
    still names the state dir), then removes the bridge, the iptables rules and
    chains, the cgroup tree, and restores the sysctls saved at start. Returns the
    problems found (empty when clean).
    """
    state_dir = Path(state_dir).resolve()
    problems: list[str] = []
    pids_file = state_dir / "pids"
    if pids_file.exists():
        for line in pids_file.read_text().splitlines():
            name, _, pid_s = line.partition(" ")
            with contextlib.suppress(ValueError):
                pid = int(pid_s)
                if _pid_matches(pid, str(state_dir)):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        pids_file.unlink()
    kp = state_dir / "bin" / "kube-proxy"
    if kp.exists():
        subprocess.run([str(kp), "--cleanup", "--v=0"], capture_output=True, timeout=60)
    _iptables_cleanup()
    problems += _ipset_cleanup()
    _service_rule_cleanup()
    if subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True).returncode == 0:
        subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True)
    # veths left behind (their pod netns died with the node's mount namespace)
    links = subprocess.run(["ip", "-o", "link", "show", "master", BRIDGE], capture_output=True, text=True).stdout
    for m in re.finditer(r"^\d+: ([^:@]+)", links, re.M):
        subprocess.run(["ip", "link", "delete", m.group(1)], capture_output=True)
    problems += [f"cgroup left: {d}" for d in _cgroup_cleanup()]
    saved = state_dir / "sysctl.json"
    if saved.exists():
        for name, value in json.loads(saved.read_text()).items():
            if value is not None:
                _write_sysctl(name, value)
        saved.unlink()
    with contextlib.suppress(OSError):
        Path("/run/containerd").rmdir()  # the mount point of the node's private tmpfs
    if not quiet:
        for p in problems:
            print(f"node cleanup: {p}", file=sys.stderr)
    return problems


# --------------------------------------------------------------- the cluster


class _ControlPlaneForNode(ControlPlane):
    """ControlPlane without KWOK, with the certificates a real node needs."""

    def __init__(self, *args, **kw) -> None:
        pki = Path(args[0]).resolve() / "pki"
        kw["nodes"] = ()
        # On the bridge, not loopback: the "kubernetes" Service then leads pods (the
        # operator's) to it through kube-proxy, and this host reaches it all the same.
        kw["api_host"] = NODE_IP
        kw["apiserver_args"] = [
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            # The node's name does not resolve here: reach the kubelet at its InternalIP.
            "--kubelet-preferred-address-types=InternalIP",
            *kw.get("apiserver_args", ()),
        ]
        super().__init__(*args, **kw)

    def _start_kwok(self) -> None:  # a real kubelet plays the node
        return None

    def _create_nodes(self) -> None:  # the kubelet registers its own Node
        return None

    def _make_pki(self) -> None:
        super()._make_pki()
        if (self.pki_dir / "node-done").exists():
            return
        ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
        client = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n"
        for name, subj in (
            ("apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client"),
            ("kubelet", f"/O=system:nodes/CN=system:node:{NODE_NAME}"),
            ("kube-proxy", "/CN=system:kube-proxy"),
            ("coredns", "/CN=system:coredns"),
            ("kube-router", "/CN=system:kube-router"),
        ):
            (self.pki_dir / f"{name}.ext").write_text(client)
            self._openssl("req", "-new", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subj)
            self._openssl(
                "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.crt", "-days", "3650", "-extfile", f"{name}.ext",
            )  # fmt: skip
        (self.pki_dir / "node-done").write_text("")


def _cluster_reader(user: str, rules: list[dict]) -> dict:
    """A ClusterRole named like ``user`` with these rules, bound to that user."""
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": user},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": user},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": user}}
    return {"apiVersion": "v1", "kind": "List", "items": [{**role, "rules": rules}, binding]}


_WATCH = ["get", "list", "watch"]
COREDNS_RBAC = _cluster_reader(
    "system:coredns",
    [
        {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"], "verbs": ["list", "watch"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
    ],
)
# kube-router starts informers for all of these (even with only its policy controller
# on) and waits for them to sync; it writes nothing.
KUBE_ROUTER_RBAC = _cluster_reader(
    "system:kube-router",
    [
        {"apiGroups": [""], "resources": ["namespaces", "pods", "services", "endpoints", "nodes"], "verbs": _WATCH},
        {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": _WATCH},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": _WATCH},
    ],
)


class NodeCluster(StartStop):
    """The control plane plus one real node (see the module doc).

    Args:
        state_dir: everything is written here (created if missing).
        bin_dir: the kube binaries; ``bin_dir()`` when None.
        images: {image name: OCI archive} to import; ``build_images()`` when None.
        start_timeout: seconds each readiness wait may take.
    """

    def __init__(
        self,
        state_dir: Path | str,
        bin_dir: Path | str | None = None,
        *,
        images: dict[str, Path] | None = None,
        start_timeout: float = 120.0,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.bin_dir = Path(bin_dir) if bin_dir is not None else _bin_dir()
        for b in ("kubelet", "kube-proxy"):
            if not os.access(self.bin_dir / b, os.X_OK):
                raise ControlPlaneError(f"{self.bin_dir / b} missing (run hack/build-bins.sh)")
        self._images = images
        self.images: dict[str, Path] = {}
        self.start_timeout = start_timeout
        self.cp = _ControlPlaneForNode(self.state_dir / "cp", self.bin_dir, start_timeout=start_timeout)
        self.logs_dir = self.state_dir / "logs"
        self.socket = self.state_dir / "containerd" / "containerd.sock"
        self.components: dict[str, Component] = {}
        self.timings: dict[str, float] = {}
        self.ports: dict[str, int] = {}
        self._lock_fd: int | None = None

    # ------------------------------------------------------------ delegation

    @property
    def kubeconfig(self) -> Path:
        return self.cp.kubeconfig

    @property
    def env(self) -> dict[str, str]:
        return self.cp.env

    def kubectl(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.cp.kubectl(*args, **kw)

    def kubectl_json(self, *args: str, **kw) -> dict:
        return self.cp.kubectl_json(*args, **kw)

    def apply(self, manifest: dict | str) -> subprocess.CompletedProcess:
        return self.cp.apply(manifest)

    def wait_for(self, what, fn, timeout: float = 60.0, interval: float = 0.25):
        return wait_for(what, fn, timeout, interval, check=self._check_alive_all, error=ControlPlaneError)

    def _check_alive_all(self) -> None:
        self._check_alive()
        self.cp._check_alive()

    def log_path(self, component: str) -> Path:
        return self.logs_dir / f"{component}.log"

    def operator_env(self) -> dict[str, str]:
        """STREAMDIST_* settings for `streamdist run` against this node."""
        return {
            "STREAMDIST_FFMPEG_IMAGE": IMAGES["ffmpeg"],
            "STREAMDIST_MEDIAMTX_IMAGE": IMAGES["mediamtx"],
            "STREAMDIST_IMAGE_PULL_POLICY": "IfNotPresent",
            # Routers are real and ClusterIPs are routed here by kube-proxy.
            "STREAMDIST_HEALTH_POLL": "true",
        }

    # Where receivers on this host listen for pods (start_demo_receivers): the node's IP.
    host_ip = NODE_IP

    def reach(self, namespace: str, service: str, port: int) -> tuple[str, int] | None:
        """(address, port) at which this host reaches ``port`` of a Service: its
        ClusterIP, which kube-proxy routes here (None until it has one)."""
        ip = self.kubectl_json("get", "svc", service, "-n", namespace)["spec"].get("clusterIP")
        return (ip, port) if ip and ip != "None" else None

    def ctr(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        return _run("ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args, check=check, timeout=timeout)

    def host_service(self, namespace: str, name: str, ports: Iterable[tuple[str, int, str]]) -> None:
        """A Service (no selector) whose one endpoint is this host at NODE_IP.

        For receivers running as host processes (bound to NODE_IP or 0.0.0.0): pods
        reach them as ``<name>.<namespace>.svc:<port>``. ports: (name, port, protocol).
        """
        ports = list(ports)
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "List",
                "items": [
                    {
                        "apiVersion": "v1",
                        "kind": "Service",
                        "metadata": {"name": name, "namespace": namespace},
                        "spec": {
                            "ports": [{"name": n, "port": p, "targetPort": p, "protocol": pr} for n, p, pr in ports]
                        },
                    },
                    {
                        "apiVersion": "discovery.k8s.io/v1",
                        "kind": "EndpointSlice",
                        "metadata": {
                            "name": f"{name}-host",
                            "namespace": namespace,
                            "labels": {"kubernetes.io/service-name": name},
                        },
                        "addressType": "IPv4",
                        "endpoints": [{"addresses": [NODE_IP], "conditions": {"ready": True}}],
                        "ports": [{"name": n, "port": p, "protocol": pr} for n, p, pr in ports],
                    },
                ],
            }
        )

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        why = node_supported()
        if why:
            raise ControlPlaneError(f"cannot run the local node: {why}")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(exist_ok=True)
        LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = Path(LOCK_FILE).read_text().strip()
            os.close(self._lock_fd)
            self._lock_fd = None
            raise ControlPlaneError(f"another local node is running (lock {LOCK_FILE} held by: {holder})") from None
        os.ftruncate(self._lock_fd, 0)
        os.write(self._lock_fd, f"pid {os.getpid()} state {self.state_dir}\n".encode())
        # A node that crashed before may have left its bridge, rules or cgroups.
        cleanup_host(self.state_dir, quiet=True)

        steps = [
            ("images", self._prepare_images),
            ("coredns-build", self._prepare_coredns),
            ("kube-router-build", self._prepare_kube_router),
            # the bridge first: the API server binds the node's IP on it
            ("host-network", self._setup_host),
            ("control-plane", self.cp.start),
            ("configs", self._write_configs),
            ("containerd+kubelet", self._start_node),
            ("import-images", self._import_images),
            ("node-ready", self._wait_node_ready),
            ("kube-proxy", self._start_kube_proxy),
            ("coredns", self._start_coredns),
            ("kube-router", self._start_kube_router),
        ]
        t_all = time.monotonic()
        run_timed(dict(steps), self.timings, announce="node")
        self.timings["total"] = round(time.monotonic() - t_all, 2)
        (self.state_dir / "timings.json").write_text(json.dumps(self.timings, indent=1) + "\n")
        print(f"node: up in {self.timings['total']}s {self.timings}", file=sys.stderr, flush=True)

    def stop(self) -> None:
        """Stops everything and undoes every host change; safe to call twice."""
        for name in ("kube-router", "coredns", "kube-proxy", "node"):
            comp = self.components.get(name)
            if comp is None or comp.proc is None or comp.proc.poll() is not None:
                continue
            # `unshare --fork` ignores SIGTERM itself: ask its child, init.py (PID 1 of
            # the node's namespace), which stops the kubelet, then containerd.
            target = _child_pid(comp.proc.pid) if name == "node" else comp.proc.pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(target or comp.proc.pid, signal.SIGTERM if target else signal.SIGKILL)
            try:
                comp.proc.wait(timeout=25)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    comp.proc.kill()
                comp.proc.wait(timeout=10)
        self.cp.stop()
        if self._lock_fd is not None:
            cleanup_host(self.state_dir)
            os.close(self._lock_fd)
            self._lock_fd = None

    # ------------------------------------------------------------ steps

    def _prepare_images(self) -> None:
        self.images = self._images if self._images is not None else build_images(NODE_IMAGES)

    def _prepare_coredns(self) -> None:
        self._coredns = coredns_bin()

    def _prepare_kube_router(self) -> None:
        self._kube_router = kube_router_bin()

    def _setup_host(self) -> None:
        saved = self.state_dir / "sysctl.json"
        if not saved.exists():
            saved.write_text(json.dumps({n: _read_sysctl(n) for n in SYSCTLS}, indent=1) + "\n")
        _write_sysctl("net.ipv4.ip_forward", "1")
        _write_sysctl("net.bridge.bridge-nf-call-iptables", "1")
        _write_sysctl("net.bridge.bridge-nf-call-ip6tables", "1")
        if subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True).returncode != 0:
            _run("ip", "link", "add", BRIDGE, "type", "bridge")
        # A bridge whose address nobody set takes the lowest MAC of its ports, so it changes
        # whenever a pod's veth comes or goes: the gateway's MAC in every pod's ARP cache is
        # then wrong, and a pod's traffic to Services and to this host vanishes for 30-60 s.
        # An address set once (addr_assign_type "set") stays.
        _run("ip", "link", "set", BRIDGE, "address", BRIDGE_MAC)
        _run("ip", "addr", "replace", f"{NODE_IP}/24", "dev", BRIDGE)
        _run("ip", "link", "set", BRIDGE, "up")
        # Guard: forwarding is on (pods <-> services), but nothing from or to the pod
        # network may cross any interface but the bridge: pods reach this host only.
        # In the mangle table, which filter's FORWARD follows: kube-router puts its own
        # chain first in filter FORWARD (at every sync) and ACCEPTs there what its
        # policies allow, so a guard in filter would come too late.
        mangle = ("iptables", "-t", "mangle")
        _run(*mangle, "-N", GUARD_CHAIN, check=False)
        _run(*mangle, "-F", GUARD_CHAIN)
        _run(*mangle, "-A", GUARD_CHAIN, "-s", POD_CIDR, "!", "-o", BRIDGE, "-j", "DROP")
        _run(*mangle, "-A", GUARD_CHAIN, "-d", POD_CIDR, "!", "-i", BRIDGE, "-j", "DROP")
        if _run(*mangle, "-C", "FORWARD", "-j", GUARD_CHAIN, check=False).returncode != 0:
            _run(*mangle, "-I", "FORWARD", "1", "-j", GUARD_CHAIN)
        # A Service without endpoints: refused at routing (see SERVICE_RULE_PREF).
        _service_rule_cleanup()
        _run("ip", "rule", "add", "pref", SERVICE_RULE_PREF, "iif", BRIDGE, "to", SERVICE_CLUSTER_IP_RANGE, "prohibit")
        # The cgroup root of every pod (kubelet's cgroupRoot), in each v1 hierarchy.
        base = Path("/sys/fs/cgroup")
        for hier in sorted(base.iterdir()):
            if not hier.is_dir() or hier.name == "unified" or not (hier / "cgroup.procs").exists():
                continue
            d = hier / CGROUP_ROOT
            d.mkdir(exist_ok=True)
            if hier.name.startswith("cpuset") or (hier / "cpuset.cpus").exists():
                for f in ("cpuset.cpus", "cpuset.mems"):
                    with contextlib.suppress(OSError):
                        (d / f).write_text((hier / f).read_text())
        # kube-proxy --cleanup at down runs this copy (the cache may change meanwhile)
        (self.state_dir / "bin").mkdir(exist_ok=True)
        shutil.copy2(self.bin_dir / "kube-proxy", self.state_dir / "bin" / "kube-proxy")

    def _kubeconfig(self, user: str) -> Path:
        pki = self.cp.pki_dir
        path = self.state_dir / f"{user}.kubeconfig"
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "local", "cluster": {"server": self.cp.server, "certificate-authority": str(pki / "ca.crt")}}
            ],
            "users": [
                {
                    "name": user,
                    "user": {"client-certificate": str(pki / f"{user}.crt"), "client-key": str(pki / f"{user}.key")},
                }
            ],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
            "current-context": "local",
        }
        path.write_text(json.dumps(cfg, indent=1) + "\n")
        path.chmod(0o600)
        return path

    def _write_configs(self) -> None:
        s = self.state_dir
        cd = s / "containerd"
        for d in (cd, s / "cni" / "net.d", s / "cni" / "ipam", s / "kubelet", s / "pod-logs"):
            d.mkdir(parents=True, exist_ok=True)
        pause = next((n for n in self.images if "/pause:" in n), "localhost/streamdist/pause:3.10.1")
        render(cd / "config.toml", "containerd-config.toml.j2", state=cd, socket=self.socket, pause_image=pause,
               cni_bin_dir=CNI_BIN_DIR, cni_conf_dir=s / "cni" / "net.d")
        render(s / "cni" / "net.d" / "10-streamdist.conflist", "cni.conflist.j2", bridge=BRIDGE, ipam_dir=s / "cni" / "ipam",
               pod_cidr=POD_CIDR, node_ip=NODE_IP, service_range=SERVICE_CLUSTER_IP_RANGE)
        # Pods get CoreDNS only: no search domain or nameserver of this host.
        (s / "resolv.conf").write_text("# streamdist local node: pods resolve cluster names only\n")
        self.ports["kubelet-healthz"], self.ports["kube-proxy-healthz"], self.ports["kube-proxy-metrics"] = free_ports(
            3
        )
        self.ports["coredns-health"], self.ports["coredns-ready"] = free_ports(2)
        render(s / "kubelet-config.yaml", "kubelet-config.yaml.j2", node_ip=NODE_IP, kubelet_port=KUBELET_PORT,
               healthz_port=self.ports["kubelet-healthz"], client_ca=self.cp.pki_dir / "ca.crt", socket=self.socket,
               cgroup_root=CGROUP_ROOT, cluster_domain=CLUSTER_DOMAIN, resolv_conf=s / "resolv.conf",
               pod_logs=s / "pod-logs")
        for user in ("kubelet", "kube-proxy", "coredns", "kube-router"):
            self._kubeconfig(user)
        render(s / "kube-proxy-config.yaml", "kube-proxy-config.yaml.j2", kubeconfig=s / "kube-proxy.kubeconfig",
               pod_cidr=POD_CIDR, node_name=NODE_NAME, node_ip=NODE_IP,
               healthz_port=self.ports["kube-proxy-healthz"], metrics_port=self.ports["kube-proxy-metrics"])
        render(s / "Corefile", "Corefile.j2", node_ip=NODE_IP, health_port=self.ports["coredns-health"],
               ready_port=self.ports["coredns-ready"], cluster_domain=CLUSTER_DOMAIN, kubeconfig=s / "coredns.kubeconfig")

    def _spawn(
        self, name: str, args: list[str], env: dict[str, str] | None = None, death_signal: int = signal.SIGTERM
    ) -> Component:
        log = self.log_path(name)
        comp = Component(name=name, args=args, log=log, env=env)
        (self.state_dir / f"{name}.cmdline").write_text(" ".join(args) + "\n")
        comp.proc = spawn(args, log, cwd=self.state_dir, env=env, death_signal=death_signal)
        self.components[name] = comp
        with open(self.state_dir / "pids", "a") as f:
            f.write(f"{name} {comp.proc.pid}\n")
        return comp

    def _fail(self, comp: Component, why: str, log: Path | None = None) -> ControlPlaneError:
        code = comp.proc.poll() if comp.proc else None
        state = f"exited with code {code}" if code is not None else "still running"
        log = log or comp.log
        return ControlPlaneError(f"{comp.name} {why} ({state}); last lines of {log}:\n{tail(log)}")

    def _check_alive(self) -> None:
        for comp in self.components.values():
            if not comp.alive():
                log = comp.log
                if comp.name == "node":
                    st = (
                        (self.state_dir / "node-status").read_text()
                        if (self.state_dir / "node-status").exists()
                        else ""
                    )
                    which = "kubelet" if "exit kubelet" in st else "containerd"
                    log = self.log_path(which)
                raise self._fail(comp, "stopped unexpectedly", log)

    def _start_node(self) -> None:
        s = self.state_dir
        kubelet = [
            str(self.bin_dir / "kubelet"),
            f"--config={s / 'kubelet-config.yaml'}",
            f"--kubeconfig={s / 'kubelet.kubeconfig'}",
            f"--root-dir={s / 'kubelet'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={NODE_IP}",
            "--node-labels=streamdist.io/local-node=true",
            f"--cert-dir={s / 'kubelet' / 'pki'}",
            "--v=1",
        ]
        containerd = ["containerd", f"--config={s / 'containerd' / 'config.toml'}", "--log-level=warn"]
        spec = {
            "containerd": containerd,
            "kubelet": kubelet,
            "socket": str(self.socket),
            "logs": str(self.logs_dir),
            "status": str(s / "node-status"),
            "mkdirs": [],
        }
        (s / "node-spec.json").write_text(json.dumps(spec, indent=1) + "\n")
        with contextlib.suppress(FileNotFoundError):
            (s / "node-status").unlink()
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        comp = self._spawn(
            "node",
            [
                "unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--mount-proc",
                "--kill-child=SIGKILL", "--", sys.executable, str(repo_root() / "hack" / "node" / "init.py"),
                str(s / "node-spec.json"),
            ],
            # unshare ignores SIGTERM: if this process dies, SIGKILL it, and with it
            # (--kill-child) the whole namespace
            death_signal=signal.SIGKILL,
        )  # fmt: skip
        try:
            wait_for(
                "containerd's socket", lambda: self.socket.exists() and "containerd socket up" in _read(s / "node-status"),
                self.start_timeout, 0.1, check=self._check_alive,
            )  # fmt: skip
        except TimeoutError:
            raise self._fail(comp, "containerd socket did not appear", self.log_path("containerd")) from None

    def _import_images(self) -> None:
        have = set(self.ctr("images", "ls", "-q").stdout.split())
        for name, archive in self.images.items():
            if name in have:
                continue
            self.ctr("images", "import", str(archive))
        got = set(self.ctr("images", "ls", "-q").stdout.split())
        missing = set(self.images) - got
        if missing:
            raise ControlPlaneError(f"images not in containerd after import: {sorted(missing)}")

    def _node_ready(self) -> bool:
        node = self.kubectl_json("get", "node", NODE_NAME, check=False) if self._node_exists() else {}
        return any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in node.get("status", {}).get("conditions", [])
        )

    def _node_exists(self) -> bool:
        return self.kubectl("get", "node", NODE_NAME, check=False).returncode == 0

    def _wait_node_ready(self) -> None:
        self.apply(COREDNS_RBAC)
        self.wait_for(f"node {NODE_NAME} Ready", self._node_ready, self.start_timeout, 0.5)

    def _start_kube_proxy(self) -> None:
        comp = self._spawn(
            "kube-proxy",
            [str(self.bin_dir / "kube-proxy"), f"--config={self.state_dir / 'kube-proxy-config.yaml'}", "--v=1"],
        )
        url = f"http://127.0.0.1:{self.ports['kube-proxy-healthz']}/healthz"
        self._wait_http(comp, url)

    def _start_coredns(self) -> None:
        comp = self._spawn("coredns", [str(self._coredns), "-conf", str(self.state_dir / "Corefile")])
        self._wait_http(comp, f"http://127.0.0.1:{self.ports['coredns-ready']}/ready")

    def _start_kube_router(self) -> None:
        """kube-router's NetworkPolicy controller only, IPv4, no listening port.

        How it treats traffic (v2.1.0, pkg/controllers/netpol): every local pod gets a
        chain, reached first from filter INPUT/FORWARD/OUTPUT; a packet to or from a pod
        that no policy allows is REJECTed (ICMP port unreachable: a TCP connect is
        refused at once). Traffic whose source is an address of this host (``addrtype
        --src-type LOCAL``: the operator and receivers running here, the kubelet's
        probes) is always accepted: NetworkPolicy cannot keep this host from a pod.
        A pod is enforced only once a sync has seen it Running with its IP (a sync
        follows each pod and policy event; see the e2e tests for how long it takes).
        """
        self.apply(KUBE_ROUTER_RBAC)
        args = [
            str(self._kube_router),
            f"--kubeconfig={self.state_dir / 'kube-router.kubeconfig'}",
            f"--hostname-override={NODE_NAME}",
            "--run-firewall=true", "--run-router=false", "--run-service-proxy=false",
            "--enable-ipv4=true", "--enable-ipv6=false",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            # no health or metrics listener: they would bind every address of this host
            "--health-port=0", "--metrics-port=0",
            "--v=1",  # logs "sync iptables took ..." after each full sync
        ]  # fmt: skip
        comp = self._spawn("kube-router", args)

        def synced() -> bool:
            if "sync iptables took" not in _read(comp.log):
                return False
            return _run("iptables", "-t", "filter", "-S", "KUBE-ROUTER-FORWARD", check=False).returncode == 0

        self.wait_for("kube-router's first NetworkPolicy sync", synced, self.start_timeout, 0.2)

    def _wait_http(self, comp: Component, url: str) -> None:
        try:
            wait_for(url, lambda: http_ok(url, timeout=3), self.start_timeout, 0.2, check=self._check_alive)
        except TimeoutError as e:
            raise self._fail(comp, f"not healthy: {e}") from None


def _child_pid(pid: int) -> int | None:
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(kids[0]) if kids else None


def _read(p: Path) -> str:
    try:
        return p.read_text()
    except OSError:
        return ""


# --------------------------------------------------------------- make demo


class DemoPieces:
    """What ``start_demo_receivers`` started: stop() ends them; ``urls`` are where each
    output can be read from this host, ``watch`` the ffplay command for each."""

    def __init__(self, group, urls: dict[str, str], receiver=None, paths: dict[str, str] | None = None) -> None:
        self.group = group
        self.urls = urls
        self.receiver = receiver  # the receivers' MediaMTX, when an output pushes to this host
        self.paths = paths or {}  # output name -> the receiver's path it arrives on
        self.watch = {
            name: f"ffplay -rtsp_transport tcp {url}" if url.startswith("rtsp:") else f"ffplay '{url}'"
            for name, url in urls.items()
        }

    def wait_received(self, timeout: float = 60.0) -> None:
        """Wait until the receiver has a ready stream from every output that pushes to this
        host. An output is Streaming once the router serves it, but a UDP receiver path only
        comes up when its source's next read finds packets (MediaMTX retries it after a 10 s
        read timeout): a viewer that comes earlier gets 404."""
        for path in self.paths.values():
            self.receiver.wait_path_ready(path, timeout)

    def stop(self) -> None:
        self.group.stop_all()


def start_demo_receivers(nc, namespace: str, outputs_file: Path | str, workdir: Path | str) -> DemoPieces:
    """Receivers on this host for every demo output that pushes to ``receiver.<ns>.svc``.

    Reads the StreamOutputs of ``outputs_file`` (examples/demo/outputs.yaml): each URL
    ``rtmp://receiver.<ns>.svc:P/...`` or ``udp://receiver.<ns>.svc:P`` gets a listener
    on the node's IP (one MediaMTX: RTMP ingest, and a UDP MPEG-TS path), and the Service
    ``receiver`` (no selector, endpoint ``nc.host_ip``) is created in ``namespace``. SRT
    listener outputs need no receiver: viewers call them at their Service's ClusterIP.
    Everything received is re-served over RTSP on 127.0.0.1 for viewers (``watch``:
    output name -> command). Call ``start_demo_source`` for the test pattern.
    """
    import urllib.parse

    import yaml

    from streamdist_dev import media

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    docs = [d for d in yaml.safe_load_all(Path(outputs_file).read_text()) if d and d.get("kind") == "StreamOutput"]
    rtsp = media.free_tcp_port()
    api = media.free_tcp_port()
    cfg: dict = media.mediamtx_config(rtsp_port=rtsp, api_port=api)
    cfg["paths"] = {}
    ports: list[tuple[str, int, str]] = []
    urls: dict[str, str] = {}
    paths: dict[str, str] = {}
    for d in docs:
        name, url = d["metadata"]["name"], d["spec"].get("url", "")
        u = urllib.parse.urlsplit(url)
        if u.hostname == f"receiver.{namespace}.svc" and u.scheme == "rtmp":
            cfg.update(rtmp=True, rtmpAddress=f"{nc.host_ip}:{u.port or 1935}", rtmpEncryption="no")
            ports.append((f"rtmp-{u.port}", u.port or 1935, "TCP"))
            path = u.path.strip("/")
            cfg["paths"][path] = {}
            urls[name] = f"rtsp://127.0.0.1:{rtsp}/{path}"
            paths[name] = path
        elif u.hostname == f"receiver.{namespace}.svc" and u.scheme == "udp":
            path = f"{name}"
            cfg["paths"][path] = {"source": f"udp+mpegts://{nc.host_ip}:{u.port}"}
            ports.append((f"udp-{u.port}", u.port, "UDP"))
            urls[name] = f"rtsp://127.0.0.1:{rtsp}/{path}"
            paths[name] = path
        elif u.scheme == "srt" and "mode=listener" in (u.query or ""):
            ip, port = nc.wait_for(f"Service {name}", lambda n=name, p=u.port: nc.reach(namespace, n, p), 120)
            urls[name] = f"srt://{ip}:{port}?mode=caller"
    group = media.ProcessGroup(workdir / "logs")
    receiver = media.start_mediamtx(cfg, workdir, group=group, name="demo-receiver") if cfg["paths"] else None
    if ports:
        nc.host_service(namespace, "receiver", ports)
    return DemoPieces(group, urls, receiver, paths)


def demo_settled(cluster, namespace: str, live: bool = True) -> bool:
    """Every StreamOutput of ``namespace`` Streaming and every input with an endpoint and
    Live (``live``) or at least Waiting (KWOK: no source ever reaches a fake pod)."""
    outputs = cluster.kubectl_json("get", "streamoutputs", "-n", namespace)["items"]
    inputs = cluster.kubectl_json("get", "streaminputs", "-n", namespace)["items"]
    wanted = ("Live",) if live else ("Live", "Waiting")
    return (
        bool(outputs)
        and all((o.get("status") or {}).get("phase") == "Streaming" for o in outputs)
        and all((i.get("status") or {}).get("endpoint") and (i.get("status") or {}).get("phase") in wanted for i in inputs)
    )


def start_demo_source(nc, namespace: str, input_name: str, pieces: DemoPieces, timeout: float = 120):
    """The lavfi test pattern (H.264 + AAC, MPEG-TS over UDP) sent to the UDP input's
    ingest Service (where ``nc.reach`` says this host reaches it: on the local node its
    ClusterIP, routed by kube-proxy). Stopped by ``pieces.stop()``."""

    def where():
        st = nc.kubectl_json("get", "streaminput", input_name, "-n", namespace).get("status") or {}
        return nc.reach(namespace, f"{input_name}-ingest", st["port"]) if st.get("port") else None

    ip, port = nc.wait_for(f"the ingest of {input_name}", where, timeout)
    return start_encoder(f"udp://{ip}:{port}", pieces.group, name=f"source-{input_name}")


def start_encoder(url: str, group, name: str = "encoder"):
    """The test pattern (H.264 + AAC) as MPEG-TS over UDP to ``url``, as a live encoder
    sends it: it keeps sending, whatever happens (a ``media.ManagedProcess``).

    FFmpeg alone exits on the first refused datagram: while a Service has no ready
    endpoint (its router pod restarting) kube-proxy REJECTs it, and a datagram sent from
    this host then fails with EPERM. A hardware encoder just goes on: so does this loop.
    """
    import shlex

    from streamdist_dev import media

    argv = [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "warning", "-nostats",
        *media.pattern_args(), *media.source_output_args("udp", url),
    ]  # fmt: skip
    return group.start(name, ["sh", "-c", f"while :; do {shlex.join(argv)}; sleep 0.5; done"])


# --------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """python -m streamdist_dev.node serve|cleanup STATE_DIR (used by hack/node/*.sh)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m streamdist_dev.node")
    ap.add_argument("command", choices=["serve", "cleanup"])
    ap.add_argument("state_dir", type=Path)
    a = ap.parse_args(argv)
    if a.command == "cleanup":
        return 1 if cleanup_host(a.state_dir) else 0

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    ready = a.state_dir / "ready"
    with contextlib.suppress(FileNotFoundError):
        ready.unlink()
    try:
        nc = NodeCluster(a.state_dir).__enter__()
    except KeyboardInterrupt:
        return 130
    try:
        ready.write_text(json.dumps({"kubeconfig": str(nc.kubeconfig), "timings": nc.timings}) + "\n")
        print(f"node: ready; export KUBECONFIG={nc.kubeconfig}", file=sys.stderr, flush=True)
        while True:
            nc._check_alive()
            time.sleep(1)
    except ControlPlaneError as e:
        print(f"node: {e}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        print("node: stopping", file=sys.stderr, flush=True)
        nc.stop()
        print("node: stopped", file=sys.stderr, flush=True)
    with contextlib.suppress(FileNotFoundError):
        ready.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
