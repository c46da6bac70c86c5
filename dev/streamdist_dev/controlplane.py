"""A real, throw-away Kubernetes control plane for integration tests.

``ControlPlane`` starts, on loopback and on free ports: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and KWOK (which plays the kubelet of fake
nodes), then creates fake Nodes for KWOK to manage. It runs the binaries that
``hack/build-bins.sh`` builds at the versions pinned in ``hack/versions.env``;
``bin_dir()`` runs that script (which skips what is already built) and returns
where they are.

    with ControlPlane(tmp_path / "cp", bin_dir()) as cp:
        cp.kubectl("create", "namespace", "demo")
        cp.kubeconfig        # admin kubeconfig (O=system:masters)

Everything it writes is under ``state_dir``: certificates (made with the openssl
CLI), kubeconfigs, etcd's data and one log per component in ``state_dir/logs``.
On exit it stops every process it started (SIGTERM, then SIGKILL) and deletes
nothing.

KWOK Stages: by default KWOK runs its built-in stages (nodes become Ready, pods
become Running as soon as they are scheduled). ``kwok_stages`` adds Stage YAML
files (``kind: Stage``, ``apiVersion: kwok.x-k8s.io/v1alpha1``). KWOK drops its
built-in stages for a resource kind (Node, Pod) as soon as a config file holds any
stage for that kind, so with ``kwok_default_stages=True`` (the default) the harness
passes the built-in stages' files too, from ``<bin dir>/kwok-stages/`` (copied
from the pinned kwok module by build-bins.sh); give ``kwok_default_stages=False``
to replace them instead.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from streamdist_dev import kubectl
from streamdist_dev.audit import AuditLog
from streamdist_dev.kubectl import KubectlError
from streamdist_dev.procs import LOG_TAIL_LINES, StartStop, free_ports, reap, run_timed, spawn, tail
from streamdist_dev.wait import http_ok, wait_for

__all__ = [
    "DEFAULT_NODES",
    "KWOK_NODE_ANNOTATION",
    "ControlPlane",
    "ControlPlaneError",
    "KubectlError",
    "bin_dir",
    "repo_root",
]

T = TypeVar("T")

DEFAULT_NODES = ("kwok-node-0", "kwok-node-1")
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
POD_CIDR = "10.244.0.1/16"  # kwok hands out pod IPs from the address given

# KWOK's own defaults (what kwok v0.7 runs when no config holds a stage of that
# kind), as paths under <bin dir>/kwok-stages/. Its default node lease duration is
# 40s, for which it uses node/heartbeat (not heartbeat-with-lease).
KWOK_DEFAULT_STAGE_FILES = (
    "node/fast/node-initialize.yaml",
    "node/heartbeat/node-heartbeat.yaml",
    "pod/fast/pod-ready.yaml",
    "pod/fast/pod-complete.yaml",
    "pod/fast/pod-delete.yaml",
)


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


class ControlPlaneError(RuntimeError):
    """A component failed to start, or exited, or a readiness wait timed out."""


def bin_dir(components: Sequence[str] = ()) -> Path:
    """Returns the dir holding etcd, kube-*, kubectl, kwok, helm (and kwok-stages/).

    ``$STREAMDIST_BIN_DIR`` wins when set. Otherwise runs ``hack/build-bins.sh``
    (building only what is missing: a no-op once built, minutes on a cold cache),
    whose progress goes to this process's stderr, and returns the dir it prints.
    """
    env_dir = os.environ.get("STREAMDIST_BIN_DIR")
    if env_dir:
        return Path(env_dir)
    script = repo_root() / "hack" / "build-bins.sh"
    proc = subprocess.run(
        ["bash", str(script), *components],
        stdout=subprocess.PIPE,
        stderr=None,  # progress and build errors straight to the terminal/log
        text=True,
        cwd=repo_root(),
    )
    if proc.returncode != 0:
        raise ControlPlaneError(f"{script} {' '.join(components)} failed with exit code {proc.returncode}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if not lines:
        raise ControlPlaneError(f"{script} printed no bin dir")
    return Path(lines[-1].strip())


_default_bin_dir = bin_dir  # ControlPlane's bin_dir parameter shadows the function


@dataclass
class Component:
    name: str
    args: list[str]
    log: Path
    env: dict[str, str] | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class ControlPlane(StartStop):
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler + KWOK.

    Args:
        state_dir: where everything is written (created if missing).
        bin_dir: dir with the binaries; ``bin_dir()`` when None.
        nodes: fake Nodes to create, annotated for KWOK.
        kwok_stages: extra KWOK Stage YAML files (see the module doc).
        kwok_default_stages: keep KWOK's built-in stages beside ``kwok_stages``.
        start_timeout: seconds each readiness wait may take.
        api_host: the one address kube-apiserver binds and advertises (loopback by
            default). Another address (a real node's bridge) gives the ``kubernetes``
            Service that address as its endpoint, so pods reach the API server.
        apiserver_args / controller_manager_args / scheduler_args / kwok_args:
            extra flags appended to that component's command line.
        audit_policy: an audit Policy (YAML): the API server logs by it, and
            ``audit`` reads that log.
        crds: install streamdist's CRDs (crds/) once it runs.
    """

    def __init__(
        self,
        state_dir: Path | str,
        bin_dir: Path | str | None = None,
        *,
        nodes: Sequence[str] = DEFAULT_NODES,
        kwok_stages: Iterable[Path | str] = (),
        kwok_default_stages: bool = True,
        start_timeout: float = 90.0,
        api_host: str = "127.0.0.1",
        apiserver_args: Sequence[str] = (),
        controller_manager_args: Sequence[str] = (),
        scheduler_args: Sequence[str] = (),
        kwok_args: Sequence[str] = (),
        audit_policy: str | None = None,
        crds: bool = False,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.bin_dir = Path(bin_dir) if bin_dir is not None else _default_bin_dir()
        self.nodes = tuple(nodes)
        self.kwok_stages = [Path(p).resolve() for p in kwok_stages]
        self.kwok_default_stages = kwok_default_stages
        self.start_timeout = start_timeout
        self.api_host = api_host
        self._extra = {
            "kube-apiserver": list(apiserver_args),
            "kube-controller-manager": list(controller_manager_args),
            "kube-scheduler": list(scheduler_args),
            "kwok": list(kwok_args),
        }
        self.crds = crds
        self.audit: AuditLog | None = None
        if audit_policy is not None:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            policy = self.state_dir / "audit-policy.yaml"
            policy.write_text(audit_policy)
            self.audit = AuditLog(self.state_dir / "audit.log")
            self._extra["kube-apiserver"] += [
                f"--audit-policy-file={policy}", f"--audit-log-path={self.audit.path}",
                "--audit-log-format=json", "--audit-log-maxsize=0",
            ]
        self.pki_dir = self.state_dir / "pki"
        self.logs_dir = self.state_dir / "logs"
        self.kubeconfig = self.state_dir / "kubeconfig"
        self.components: dict[str, Component] = {}
        self.ports: dict[str, int] = {}
        self.server = ""
        self.timings: dict[str, float] = {}  # seconds each startup step took
        for b in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok"):
            if not os.access(self.bin_dir / b, os.X_OK):
                raise ControlPlaneError(f"{self.bin_dir / b} missing or not executable (run hack/build-bins.sh)")

    # ---------------------------------------------------------------- public API

    @property
    def kubectl_path(self) -> Path:
        return self.bin_dir / "kubectl"

    @property
    def env(self) -> dict[str, str]:
        """os.environ plus KUBECONFIG pointing at the admin kubeconfig."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def log_path(self, component: str) -> Path:
        return self.logs_dir / f"{component}.log"

    def kubectl(
        self,
        *args: str,
        input: str | bytes | None = None,
        check: bool = True,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess:
        """Runs the pinned kubectl as cluster admin; text in/out unless input is bytes."""
        return kubectl.run(
            self.kubectl_path, self.kubeconfig, *args, input=input, check=check, timeout=timeout,
            cache_dir=self.state_dir / "kubectl-cache",
        )

    def kubectl_json(self, *args: str, **kw) -> dict:
        """``kubectl ... -o json`` parsed."""
        return json.loads(self.kubectl(*args, "-o", "json", **kw).stdout)

    def apply(self, manifest: dict | str) -> subprocess.CompletedProcess:
        """``kubectl apply -f -`` of a dict (sent as JSON) or YAML/JSON text."""
        return self.kubectl("apply", "-f", "-", input=kubectl.manifest_text(manifest))

    def wait_for(self, what: str, fn: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.25) -> T:
        """Polls fn until it returns something truthy; raises with ``what`` on timeout.

        While waiting it also checks that every component is still running.
        """
        return wait_for(what, fn, timeout, interval, check=self._check_alive, error=ControlPlaneError)

    def start(self) -> None:
        """Starts everything; retries (new ports) when a port was taken meanwhile."""
        attempts = 3
        for attempt in range(1, attempts + 1):
            try:
                self._start_once()
                return
            except ControlPlaneError as e:
                # Free ports are picked, then released, then bound by the components:
                # another test process may bind one in between.
                if attempt == attempts or "address already in use" not in str(e):
                    raise
                self.stop()
                self.components.clear()
                shutil.rmtree(self.state_dir / "etcd", ignore_errors=True)

    def _start_once(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(exist_ok=True)
        t0 = time.monotonic()
        self._make_pki()
        self.timings["pki"] = round(time.monotonic() - t0, 2)
        (
            self.ports["etcd"],
            self.ports["etcd-peer"],
            self.ports["kube-apiserver"],
            self.ports["kube-controller-manager"],
            self.ports["kube-scheduler"],
        ) = free_ports(5)
        self.server = f"https://{self.api_host}:{self.ports['kube-apiserver']}"
        self._write_kubeconfigs()

        run_timed(
            {
                "etcd": self._start_etcd,
                "kube-apiserver": self._start_apiserver,
                "kube-controller-manager": self._start_controller_manager,
                "kube-scheduler": self._start_scheduler,
                "kwok": self._start_kwok,
                "nodes": self._create_nodes,
                "nodes-ready": lambda: self.wait_for("nodes Ready", self._nodes_ready, self.start_timeout),
                # The serviceaccount controller has made default/default: pods can be created.
                "default-serviceaccount": lambda: self.wait_for(
                    "ServiceAccount default/default", self._default_sa_exists, self.start_timeout
                ),
            },
            self.timings,
        )
        if self.crds:
            kubectl.install_crds(self)

    def stop(self) -> None:
        """Stops every started component, newest first: SIGTERM, then SIGKILL."""
        for comp in reversed(list(self.components.values())):
            reap(comp.proc)

    def restart(self, component: str, down_seconds: float = 0.0) -> None:
        """Stops one component (SIGTERM, then SIGKILL), waits ``down_seconds``, and starts
        it again with the same command line, ports and data; returns once it is healthy.
        """
        comp = self.components[component]
        reap(comp.proc, grace=20)
        time.sleep(down_seconds)
        new = self._spawn(comp.name, comp.args, comp.env)
        health = {
            "etcd": (f"http://127.0.0.1:{self.ports['etcd']}/health", None),
            "kube-apiserver": (f"{self.server}/readyz", self._admin_ssl_context()),
            "kube-controller-manager": (f"https://127.0.0.1:{self.ports['kube-controller-manager']}/healthz", _insecure()),
            "kube-scheduler": (f"https://127.0.0.1:{self.ports['kube-scheduler']}/healthz", _insecure()),
        }
        if component in health:
            self._wait_healthy(new, *health[component])

    # ------------------------------------------------------------------- startup

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Component:
        log = self.log_path(name)
        comp = Component(name=name, args=args, log=log, env=env)
        (self.state_dir / f"{name}.cmdline").write_text(" ".join(args) + "\n")
        comp.proc = spawn(args, log, cwd=self.state_dir, env=env)
        self.components[name] = comp
        return comp

    def _fail(self, comp: Component, why: str) -> ControlPlaneError:
        code = comp.proc.poll() if comp.proc else None
        state = f"exited with code {code}" if code is not None else "still running"
        return ControlPlaneError(
            f"{comp.name} {why} ({state}); last {LOG_TAIL_LINES} lines of {comp.log}:\n{tail(comp.log)}"
        )

    def _check_alive(self) -> None:
        for comp in self.components.values():
            if not comp.alive():
                raise self._fail(comp, "stopped unexpectedly")

    def _wait_healthy(self, comp: Component, url: str, ctx: ssl.SSLContext | None = None) -> None:
        def started() -> None:
            if not comp.alive():
                raise self._fail(comp, "failed to start")

        try:
            wait_for(url, lambda: http_ok(url, ctx), self.start_timeout, 0.2, check=started)
        except TimeoutError as e:
            raise self._fail(comp, f"not healthy: {e}") from None

    def _start_etcd(self) -> None:
        c, p = self.ports["etcd"], self.ports["etcd-peer"]
        client, peer = f"http://127.0.0.1:{c}", f"http://127.0.0.1:{p}"
        comp = self._spawn(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                "--name=streamdist-test",
                f"--data-dir={self.state_dir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=streamdist-test={peer}",
                "--initial-cluster-state=new",
                "--unsafe-no-fsync",  # a throw-away test store: skip fsync, much faster
                "--log-level=warn",
            ],
        )
        self._wait_healthy(comp, f"{client}/health")

    def _start_apiserver(self) -> None:
        pki = self.pki_dir
        comp = self._spawn(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
                f"--bind-address={self.api_host}",
                f"--advertise-address={self.api_host}",
                f"--secure-port={self.ports['kube-apiserver']}",
                f"--cert-dir={self.state_dir / 'apiserver-certs'}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--authorization-mode=Node,RBAC",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--allow-privileged=true",
                # On loopback, the "kubernetes" Service would get 127.0.0.1 as endpoint,
                # which endpoint validation rejects; nothing reaches it then anyway.
                f"--endpoint-reconciler-type={'none' if self.api_host == '127.0.0.1' else 'lease'}",
                "--profiling=false",
                # Front-proxy (aggregation) client CA, as kubeadm sets it: without it
                # every component logs "missing content for CA bundle" errors.
                f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
                f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
                *self._extra["kube-apiserver"],
            ],
        )
        self._wait_healthy(comp, f"{self.server}/readyz", self._admin_ssl_context())

    def _start_controller_manager(self) -> None:
        pki = self.pki_dir
        comp = self._spawn(
            "kube-controller-manager",
            [
                *self._secure_component_args("kube-controller-manager", "controller-manager"),
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
                "--use-service-account-credentials=true",
                "--controllers=*",
                "--leader-elect=false",
                # KWOK's node heartbeat comes every 20 s plus up to 25 s of jitter; on two
                # busy cores it misses the default 50 s grace, and the node lifecycle
                # controller then marks every pod NotReady for good (KWOK never makes them
                # Ready again). Fake nodes do not fail; callers may still pass their own.
                "--node-monitor-grace-period=30m",
                *self._extra["kube-controller-manager"],
            ],
        )
        # /healthz is in --authorization-always-allow-paths by default.
        self._wait_healthy(comp, f"https://127.0.0.1:{self.ports['kube-controller-manager']}/healthz", _insecure())

    def _start_scheduler(self) -> None:
        comp = self._spawn(
            "kube-scheduler",
            [
                *self._secure_component_args("kube-scheduler", "scheduler"),
                "--leader-elect=false",
                *self._extra["kube-scheduler"],
            ],
        )
        self._wait_healthy(comp, f"https://127.0.0.1:{self.ports['kube-scheduler']}/healthz", _insecure())

    def _secure_component_args(self, binary: str, short: str) -> list[str]:
        """The controller-manager's and the scheduler's shared flags: their own
        kubeconfig for everything, an HTTPS port on loopback, self-signed serving certs."""
        kc = self.state_dir / f"{short}.kubeconfig"
        return [
            str(self.bin_dir / binary),
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.ports[binary]}",
            f"--cert-dir={self.state_dir / f'{short}-certs'}",
        ]

    def kwok_stage_files(self) -> list[Path]:
        """The Stage files kwok gets with --config (empty: kwok's built-in stages)."""
        if not self.kwok_stages:
            return []
        files: list[Path] = []
        if self.kwok_default_stages:
            stages_dir = self.bin_dir / "kwok-stages"
            for rel in KWOK_DEFAULT_STAGE_FILES:
                f = stages_dir / rel
                if not f.is_file():
                    raise ControlPlaneError(f"{f} missing: run hack/build-bins.sh kwok to copy kwok's stages")
                files.append(f)
        for f in self.kwok_stages:
            if not f.is_file():
                raise ControlPlaneError(f"KWOK stage file {f} does not exist")
            files.append(f)
        return files

    def _start_kwok(self) -> None:
        key, value = KWOK_NODE_ANNOTATION
        home = self.state_dir / "kwok-home"  # kwok also reads ~/.kwok/kwok.yaml: keep it ours
        home.mkdir(exist_ok=True)
        args = [
            str(self.bin_dir / "kwok"),
            f"--kubeconfig={self.kubeconfig}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={key}={value}",
            f"--cidr={POD_CIDR}",
            "--node-ip=127.0.0.1",
        ]
        for f in self.kwok_stage_files():
            args.append(f"--config={f}")
        args += self._extra["kwok"]
        self._spawn("kwok", args, env={**os.environ, "HOME": str(home)})

    def _create_nodes(self) -> None:
        key, value = KWOK_NODE_ANNOTATION
        items = []
        for name in self.nodes:
            items.append(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "annotations": {key: value, "node.alpha.kubernetes.io/ttl": "0"},
                        "labels": {
                            "kubernetes.io/arch": "amd64",
                            "kubernetes.io/os": "linux",
                            "kubernetes.io/hostname": name,
                            "type": "kwok",
                        },
                    },
                    "status": {
                        "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                        "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                    },
                }
            )
        self.apply({"apiVersion": "v1", "kind": "List", "items": items})

    def _default_sa_exists(self) -> bool:
        return self.kubectl("get", "serviceaccount", "default", "-n", "default", check=False).returncode == 0

    def _nodes_ready(self) -> bool:
        got = self.kubectl_json("get", "nodes")
        ready = {
            n["metadata"]["name"]
            for n in got.get("items", [])
            for c in n.get("status", {}).get("conditions", [])
            if c.get("type") == "Ready" and c.get("status") == "True"
        }
        return set(self.nodes) <= ready

    # ----------------------------------------------------------------- PKI, kubeconfigs

    def _openssl(self, *args: str) -> None:
        proc = subprocess.run(["openssl", *args], cwd=self.pki_dir, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ControlPlaneError(f"openssl {' '.join(args)} failed: {proc.stderr.strip()}")

    def _make_pki(self) -> None:
        """CA, apiserver serving cert, service-account key pair, client certs."""
        self.pki_dir.mkdir(exist_ok=True)
        if (self.pki_dir / "done").exists():
            return
        ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
        self._openssl(
            "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "3650",
            "-subj", "/CN=streamdist-test-ca",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        )  # fmt: skip
        # RSA for service-account tokens (RS256, what every client expects).
        self._openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "sa.key")
        self._openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub")

        self._openssl(
            "req", "-x509", *ec, "-keyout", "front-proxy-ca.key", "-out", "front-proxy-ca.crt", "-days", "3650",
            "-subj", "/CN=streamdist-test-front-proxy-ca",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        )  # fmt: skip

        def sign(name: str, subj: str, ext: str, ca: str = "ca") -> None:
            (self.pki_dir / f"{name}.ext").write_text(ext)
            self._openssl("req", "-new", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subj)
            self._openssl(
                "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "3650", "-extfile", f"{name}.ext",
            )  # fmt: skip

        sans = [
            "IP:127.0.0.1",
            *([f"IP:{self.api_host}"] if self.api_host != "127.0.0.1" else []),
            "DNS:localhost",
            "IP:10.96.0.1",  # first address of the service range: the "kubernetes" Service
            "DNS:kubernetes",
            "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc",
            "DNS:kubernetes.default.svc.cluster.local",
        ]
        sign(
            "apiserver",
            "/CN=kube-apiserver",
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            f"extendedKeyUsage=serverAuth\nsubjectAltName={','.join(sans)}\n",
        )
        client_ext = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n"
        sign("admin", "/O=system:masters/CN=kubernetes-admin", client_ext)
        sign("controller-manager", "/CN=system:kube-controller-manager", client_ext)
        sign("scheduler", "/CN=system:kube-scheduler", client_ext)
        sign("front-proxy-client", "/CN=front-proxy-client", client_ext, ca="front-proxy-ca")
        (self.pki_dir / "done").write_text("")

    def _write_kubeconfigs(self) -> None:
        pki = self.pki_dir
        for path, user in (
            (self.kubeconfig, "admin"),
            (self.state_dir / "controller-manager.kubeconfig", "controller-manager"),
            (self.state_dir / "scheduler.kubeconfig", "scheduler"),
        ):
            cfg = {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "streamdist-test",
                        "cluster": {"server": self.server, "certificate-authority": str(pki / "ca.crt")},
                    }
                ],
                "users": [
                    {
                        "name": user,
                        "user": {
                            "client-certificate": str(pki / f"{user}.crt"),
                            "client-key": str(pki / f"{user}.key"),
                        },
                    }
                ],
                "contexts": [{"name": "streamdist-test", "context": {"cluster": "streamdist-test", "user": user}}],
                "current-context": "streamdist-test",
                "preferences": {},
            }
            path.write_text(json.dumps(cfg, indent=2) + "\n")  # JSON is YAML: kubectl and clients read it
            path.chmod(0o600)

    def _admin_ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki_dir / "ca.crt"))
        ctx.load_cert_chain(str(self.pki_dir / "admin.crt"), str(self.pki_dir / "admin.key"))
        return ctx


def _insecure() -> ssl.SSLContext:
    """For the self-signed /healthz of the controller-manager and scheduler."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx
