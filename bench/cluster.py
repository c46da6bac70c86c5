"""The control-plane benchmarks' cluster: the test ControlPlane (real etcd and
kube-apiserver, KWOK nodes), the CRDs, the operator as a real process under its own
identity, an audit log of what that identity did, and watches that timestamp events.

* The operator runs with a client certificate of its own (CN ``streamdist-operator``,
  O ``system:masters``), so the apiserver's audit log (``--audit-policy-file``) tells
  its requests from kubectl's, the scheduler's, KWOK's and the controller-manager's.
  ``apiserver_request_total`` from ``/metrics`` has no client label: it is read too,
  for the totals, and for what only the operator does (status patches).
* ``Watcher`` runs raw watches (one JSON line per event, no model deserialisation)
  in threads and stamps each event with ``time.monotonic()`` on arrival, the clock
  the benchmark also reads just before ``kubectl apply``.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from streamdist_dev.audit import Request
from streamdist_dev.controlplane import ControlPlane, bin_dir
from streamdist_dev.kubectl import install_crds
from streamdist_dev.operator import OperatorProcess

from .common import mem_kb, wait_until

GROUP, VERSION = "streamdist.io", "v1alpha1"
OPERATOR_USER = "streamdist-operator"
ADMIN_USER = "kubernetes-admin"
# The operator's resync period as shipped (the integration harness shortens it to 3 s).
RESYNC_SECONDS = 5.0

AUDIT_POLICY = f"""apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted]
rules:
# status patches with their bodies: what did the operator change?
- level: Request
  users: [{OPERATOR_USER}]
  verbs: [patch]
  resources:
  - group: streamdist.io
    resources: [streaminputs/status, streamoutputs/status]
- level: Metadata
  users: [{OPERATOR_USER}, {ADMIN_USER}]
- level: None
"""


# ------------------------------------------------------------------ manifests


def input_name(i: int) -> str:
    return f"in-{i:03d}"


def output_name(i: int, j: int) -> str:
    return f"out-{i:03d}-{j:02d}"


def manifests(inputs: int, per_input: int, first_input: int = 0) -> list[dict[str, Any]]:
    """``inputs`` UDP StreamInputs, each with ``per_input`` RTMP StreamOutputs (the
    most common destination; its key is masked in status), inputs first."""
    docs: list[dict[str, Any]] = []
    for i in range(first_input, first_input + inputs):
        docs.append(
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "StreamInput",
                "metadata": {"name": input_name(i)},
                "spec": {"protocol": "udp"},
            }
        )
    for i in range(first_input, first_input + inputs):
        for j in range(per_input):
            docs.append(output_doc(input_name(i), output_name(i, j)))
    return docs


def output_doc(input_: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "StreamOutput",
        "metadata": {"name": name},
        "spec": {"input": input_, "url": f"rtmp://live.example.net:1935/app/key-{name}"},
    }


def write_manifests(path: Path, docs: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def count_by_what(reqs: list[Request]) -> Counter[str]:
    return Counter(r.what for r in reqs)


# ------------------------------------------------------------ apiserver metrics

_METRIC = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\}\s+(?P<value>[0-9.eE+-]+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def parse_request_totals(text: str) -> Counter[tuple[str, str, str]]:
    """apiserver_request_total summed per (verb, resource, subresource)."""
    out: Counter[tuple[str, str, str]] = Counter()
    for line in text.splitlines():
        m = _METRIC.match(line)
        if not m:
            continue
        labels = dict(_LABEL.findall(m.group("labels")))
        out[(labels.get("verb", ""), labels.get("resource", ""), labels.get("subresource", ""))] += int(
            float(m.group("value"))
        )
    return out


# --------------------------------------------------------------------- watches


@dataclass
class ObjState:
    first_seen: float | None = None
    first_phase: float | None = None
    first_phase_value: str = ""
    streaming: float | None = None
    status: dict[str, Any] = field(default_factory=dict)
    uid: str = ""
    deleted: float | None = None
    phases: dict[str, float] = field(default_factory=dict)  # first time seen in each phase
    deleting: float | None = None  # first seen with metadata.deletionTimestamp (its stop asked for)


class Watcher:
    """Timestamped watches of one namespace's StreamOutputs, StreamInputs and output Pods.

    ``pods[pod name]``: first-seen time, uid, deletion; ``outputs[name]`` and
    ``inputs[name]``: first seen, first non-empty ``status.phase``, first
    ``Streaming``, latest status. ``pod_added``/``pod_deleted`` count events per output.
    """

    def __init__(self, kubeconfig: Path, namespace: str) -> None:
        import kubernetes

        self.ns = namespace
        self.api = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        self.api.user_agent = "streamdist-bench"
        self.core = kubernetes.client.CoreV1Api(self.api)
        self.custom = kubernetes.client.CustomObjectsApi(self.api)
        self.lock = threading.Lock()
        self.pods: dict[str, ObjState] = {}
        self.pod_output: dict[str, str] = {}
        self.pod_added: Counter[str] = Counter()
        self.pod_deleted: Counter[str] = Counter()
        self.outputs: dict[str, ObjState] = {}
        self.inputs: dict[str, ObjState] = {}
        self.last_event = time.monotonic()
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._ready: list[threading.Event] = []

    # the three watches
    def _pods(self, **kw: Any) -> Any:
        return self.core.list_namespaced_pod(
            self.ns, label_selector="app.kubernetes.io/managed-by=streamdist,streamdist.io/output", **kw
        )

    def _custom(self, plural: str) -> Callable[..., Any]:
        def fn(**kw: Any) -> Any:
            return self.custom.list_namespaced_custom_object(GROUP, VERSION, self.ns, plural, **kw)

        return fn

    def start(self, timeout: float = 30.0) -> Watcher:
        for name, fn, handler in (
            ("pods", self._pods, self._on_pod),
            ("streamoutputs", self._custom("streamoutputs"), self._on_output),
            ("streaminputs", self._custom("streaminputs"), self._on_input),
        ):
            ready = threading.Event()
            t = threading.Thread(target=self._loop, args=(fn, handler, ready), name=f"watch-{name}", daemon=True)
            t.start()
            self._threads.append(t)
            self._ready.append(ready)
        for ev in self._ready:
            if not ev.wait(timeout):
                raise RuntimeError(f"watch not established in {timeout}s: {self.errors[-3:]}")
        return self

    def stop(self) -> None:
        self._stop.set()
        self.api.close()

    def _loop(
        self, fn: Callable[..., Any], handler: Callable[[float, dict[str, Any]], None], ready: threading.Event
    ) -> None:
        from kubernetes.watch.watch import iter_resp_lines

        rv = ""
        while not self._stop.is_set():
            try:
                if not rv:
                    # the current objects, then watch from that resourceVersion
                    resp = fn(_preload_content=False)
                    doc = json.loads(resp.data)
                    now = time.monotonic()
                    for item in doc.get("items") or []:
                        handler(now, {"type": "ADDED", "object": item, "initial": True})
                    rv = doc["metadata"]["resourceVersion"]
                resp = fn(watch=True, resource_version=rv, timeout_seconds=240, _preload_content=False)
                ready.set()
                for line in iter_resp_lines(resp):
                    t = time.monotonic()
                    if self._stop.is_set():
                        return
                    ev = json.loads(line)
                    if ev.get("type") == "ERROR":
                        rv = ""  # expired: list again
                        break
                    obj = ev.get("object") or {}
                    rv = (obj.get("metadata") or {}).get("resourceVersion", rv)
                    handler(t, ev)
                resp.release_conn()
            except Exception as exc:
                if self._stop.is_set():
                    return
                self.errors.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.5)

    def _on_pod(self, t: float, ev: dict[str, Any]) -> None:
        obj = ev["object"]
        meta = obj.get("metadata") or {}
        name = meta.get("name", "")
        out = (meta.get("labels") or {}).get("streamdist.io/output", "")
        with self.lock:
            self.last_event = t
            st = self.pods.setdefault(name, ObjState())
            self.pod_output[name] = out
            if st.first_seen is None:
                st.first_seen = t
                st.uid = meta.get("uid", "")
                if not ev.get("initial"):
                    self.pod_added[out] += 1
            st.status = obj.get("status") or {}
            if meta.get("deletionTimestamp") and st.deleting is None:
                st.deleting = t
            if ev["type"] == "DELETED" and st.deleted is None:
                st.deleted = t
                self.pod_deleted[out] += 1

    def _on_custom(self, store: dict[str, ObjState], t: float, ev: dict[str, Any]) -> None:
        obj = ev["object"]
        meta = obj.get("metadata") or {}
        status = obj.get("status") or {}
        with self.lock:
            self.last_event = t
            st = store.setdefault(meta.get("name", ""), ObjState())
            if st.first_seen is None:
                st.first_seen = t
                st.uid = meta.get("uid", "")
            phase = status.get("phase") or ""
            if phase and st.first_phase is None:
                st.first_phase, st.first_phase_value = t, phase
            if phase:
                st.phases.setdefault(phase, t)
            if phase == "Streaming" and st.streaming is None:
                st.streaming = t
            st.status = status
            if ev["type"] == "DELETED":
                st.deleted = t

    def _on_output(self, t: float, ev: dict[str, Any]) -> None:
        self._on_custom(self.outputs, t, ev)

    def _on_input(self, t: float, ev: dict[str, Any]) -> None:
        self._on_custom(self.inputs, t, ev)

    # queries
    def live_pods(self) -> dict[str, ObjState]:
        with self.lock:
            return {n: s for n, s in self.pods.items() if s.deleted is None}

    def pod_seen(self, output: str) -> float | None:
        with self.lock:
            times = [s.first_seen for n, s in self.pods.items() if self.pod_output.get(n) == output and s.first_seen]
        return min(times) if times else None

    def settled(self, outputs: int, inputs: int) -> bool:
        """``outputs`` outputs Streaming and ``inputs`` inputs past Pending (router ready)."""
        with self.lock:
            up = sum(1 for s in self.inputs.values() if s.status.get("phase") in ("Waiting", "Live"))
        return up >= inputs and self.streaming_count() >= outputs

    def streaming_count(self) -> int:
        with self.lock:
            return sum(1 for s in self.outputs.values() if s.status.get("phase") == "Streaming")


# --------------------------------------------------------------------- cluster


class RssSampler(threading.Thread):
    """Polls a process's VmRSS every ``interval`` s; VmHWM is read at the end too."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        super().__init__(daemon=True, name=f"rss-{pid}")
        self.pid = pid
        self.interval = interval
        self.peak_kb = 0
        self.hwm_kb = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.read()
            self._halt.wait(self.interval)

    def read(self) -> None:
        m = mem_kb(self.pid)
        self.peak_kb = max(self.peak_kb, m.get("VmRSS", 0))
        self.hwm_kb = max(self.hwm_kb, m.get("VmHWM", 0))

    def stop(self) -> None:
        self._halt.set()
        self.read()


class Cluster:
    """ControlPlane (with audit log) + CRDs + an operator identity; stops on exit."""

    def __init__(self, workdir: Path, nodes: int = 2, pod_cidr: str | None = None) -> None:
        """pod_cidr: where KWOK hands out pod IPs (the harness' default otherwise)."""
        self.workdir = workdir
        if workdir.exists():
            shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        self.cp = ControlPlane(
            workdir / "cp",
            bin_dir(),
            nodes=[f"kwok-node-{i}" for i in range(nodes)],
            # KWOK's node heartbeat comes every 20-45 s; under load it misses the node
            # monitor's 50 s grace, the node-lifecycle controller turns every pod NotReady
            # (routers' Deployments unavailable) and, after 5 min, evicts them. Fake nodes
            # flapping is not what is measured here.
            controller_manager_args=["--node-monitor-grace-period=15m"],
            # kwok's last --cidr wins
            kwok_args=[f"--cidr={pod_cidr}"] if pod_cidr else [],
            audit_policy=AUDIT_POLICY,
        )
        assert self.cp.audit is not None
        self.audit = self.cp.audit
        self.operator_kubeconfig = workdir / "operator.kubeconfig"
        self.operators: list[OperatorProcess] = []

    def __enter__(self) -> Cluster:
        try:
            self.cp.start()
            install_crds(self.cp)
            self._operator_identity()
        except BaseException:
            self.cp.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for op in self.operators:
            with contextlib.suppress(Exception):
                op.stop()
        self.cp.stop()

    def _operator_identity(self) -> None:
        """A client certificate for the operator, signed by the test CA."""
        pki = self.cp.pki_dir
        name = "streamdist-operator"
        ext = pki / f"{name}.ext"
        ext.write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n"
        )
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        for cmd in (
            ["req", "-new", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/O=system:masters/CN={OPERATOR_USER}"],
            ["x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", f"{name}.crt", "-days", "2", "-extfile", ext.name],
        ):  # fmt: skip
            subprocess.run(["openssl", *cmd], cwd=pki, check=True, capture_output=True)
        cfg = json.loads(self.cp.kubeconfig.read_text())
        cfg["users"][0]["user"] = {
            "client-certificate": str(pki / f"{name}.crt"),
            "client-key": str(pki / f"{name}.key"),
        }
        self.operator_kubeconfig.write_text(json.dumps(cfg, indent=2))
        self.operator_kubeconfig.chmod(0o600)

    def start_operator(self, name: str = "operator", env: dict[str, str] | None = None) -> OperatorProcess:
        op = OperatorProcess(
            self.operator_kubeconfig,
            self.workdir / name,
            env={"STREAMDIST_RESYNC_SECONDS": str(RESYNC_SECONDS), **(env or {})},
        )
        self.operators.append(op)
        op.start(timeout=120)
        return op

    def namespace(self, name: str) -> str:
        self.cp.kubectl("create", "namespace", name)
        # the serviceaccount controller must have made "default" before pods can be created
        self.cp.wait_for(
            f"ServiceAccount {name}/default",
            lambda: self.cp.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
            timeout=60,
        )
        return name

    def metrics(self) -> Counter[tuple[str, str, str]]:
        return parse_request_totals(self.cp.kubectl("get", "--raw", "/metrics", timeout=60).stdout)

    def apply(self, namespace: str, path: Path, timeout: float = 600) -> float:
        """``kubectl apply -f path``; returns how long kubectl took."""
        t = time.monotonic()
        self.cp.kubectl("apply", "-n", namespace, "-f", str(path), timeout=timeout)
        return time.monotonic() - t

    def wait_quiet(self, user: str, quiet: float, timeout: float, start: int | None = None) -> float | None:
        """Wait until ``user`` made no write for ``quiet`` s (per the audit log, read
        from ``start``, default: now); returns the seconds waited, None at the timeout."""
        t0 = time.monotonic()
        state = {"offset": self.audit.offset() if start is None else start, "last": t0}

        def quiet_now() -> bool:
            end = self.audit.offset()
            if end > state["offset"]:
                if any(r.write for r in self.audit.requests(user, int(state["offset"]), end)):
                    state["last"] = time.monotonic()
                state["offset"] = end
            return time.monotonic() - state["last"] >= quiet

        got = wait_until(quiet_now, timeout, interval=0.5)
        return time.monotonic() - t0 if got else None


def nodes_for(pods: int) -> int:
    """KWOK nodes allow 110 pods each (the harness's capacity): room for ``pods``."""
    return max(2, -(-(pods + 20) // 100))


def status_patches(reqs: list[Request], limit: int = 3, width: int = 400) -> list[str]:
    """Up to ``limit`` status patch bodies, one line each (what the operator wrote)."""
    out = []
    for r in reqs:
        if r.verb == "patch" and r.subresource == "status":
            body = json.dumps((r.body or {}).get("status", r.body), sort_keys=True, separators=(",", ":"))
            out.append(f"{r.resource}/{r.name}: {body[:width]}{'...' if len(body) > width else ''}")
            if len(out) >= limit:
                break
    return out


def patch_changes(reqs: list[Request]) -> Counter[str]:
    """Status patches grouped by what each changed against the previous one of the same
    object (merge-patch semantics: top-level fields merge, ``conditions`` is replaced):
    "streamoutputs: phase Connecting->Streaming, Ready.status" and the like."""
    last: dict[tuple[str, str], dict[str, Any]] = {}
    out: Counter[str] = Counter()
    for r in reqs:
        if r.verb != "patch" or r.subresource != "status" or not isinstance(r.body, dict):
            continue
        st = r.body.get("status") or {}
        key = (r.resource, r.name)
        prev = last.get(key)
        if prev is None:
            out[f"{r.resource}: first status (phase {st.get('phase')})"] += 1
        else:
            changed = []
            for k in sorted(st):
                if k != "conditions" and st.get(k) != prev.get(k):
                    changed.append(f"phase {prev.get('phase')}->{st[k]}" if k == "phase" else k)
            before = {c.get("type"): c for c in prev.get("conditions") or []}
            for c in st.get("conditions") or []:
                o = before.get(c.get("type"))
                if o is None or o.get("status") != c.get("status"):
                    changed.append(f"{c.get('type')}.status")
                elif o.get("reason") != c.get("reason") or o.get("message") != c.get("message"):
                    changed.append(f"{c.get('type')}.reason {o.get('reason')}->{c.get('reason')}")
            out[f"{r.resource}: " + (", ".join(changed) or "nothing")] += 1
        last[key] = {**(prev or {}), **st}
    return out


def operator_metrics(port: int) -> str:
    """The operator's own Prometheus /metrics text."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def metric_sum(text: str, name: str, label_filter: str = "") -> float:
    """Sum of the samples of ``name`` (a prefix) whose line contains ``label_filter``."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (not label_filter or label_filter in line):
            m = re.search(r"\s([0-9.eE+-]+)$", line)
            if m:
                total += float(m.group(1))
    return total


@dataclass
class Scenario:
    """What a control-plane benchmark starts from: a cluster sized for ``inputs`` x
    ``per`` outputs, a namespace, a fresh operator (its pid) and a Watcher of it."""

    cl: Cluster
    ns: str
    op: OperatorProcess
    pid: int
    watcher: Watcher
    work: Path
    inputs: int
    outputs: int

    def manifest(self, docs: list[dict[str, Any]] | None = None) -> Path:
        """The benchmark's objects (by default ``manifests(inputs, per)``) in a file to apply."""
        per = self.outputs // self.inputs
        return write_manifests(self.work / "manifest.yaml", docs or manifests(self.inputs, per))

    def settled(self, timeout: float, interval: float = 0.2) -> bool:
        """Waits until every output streams and every input is up (False at the timeout)."""
        return bool(wait_until(lambda: self.watcher.settled(self.outputs, self.inputs), timeout, interval))


@contextlib.contextmanager
def scenario(
    work: Path, inputs: int, per: int, pod_cidr: str | None = None, env: dict[str, str] | None = None
) -> Iterator[Scenario]:
    """``pod_cidr``: where KWOK gives pods their addresses; ``env``: the operator's settings."""
    outputs = inputs * per
    with Cluster(work / "cluster", nodes=nodes_for(outputs + inputs), pod_cidr=pod_cidr) as cl:
        ns = cl.namespace("bench")
        op = cl.start_operator(env=env)
        assert op.proc is not None
        watcher = Watcher(cl.cp.kubeconfig, ns).start()
        yield Scenario(cl, ns, op, op.proc.pid, watcher, work, inputs, outputs)
