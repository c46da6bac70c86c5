"""Installed the way users install it, on a real control plane with KWOK nodes.

In order (one module, one control plane): the plain manifests on a fresh cluster;
`helm install` into a namespace enforcing the `restricted` Pod Security Standard;
`helm template` applied with --dry-run=server; `kubectl auth can-i` for each verb the
operator needs and for what it must never do; the operator process run locally with a
token of the chart's ServiceAccount (so with exactly the chart's rights) reconciling the
examples end to end, while the API server's audit log shows every request it made was
allowed and every verb the chart grants was used; a standby replica pausing and taking
over; `helm upgrade` leaving running output pods alone; `helm uninstall` keeping the CRDs
and the user's streams. KWOK plays the chart's own operator pods: they are scheduled,
admitted and "Running", but do not act.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from streamdist_dev.audit import Request
from streamdist_dev.chart import CHART, REPO, helm
from streamdist_dev.controlplane import ControlPlane, free_ports
from streamdist_dev.operator import OperatorProcess
from streamdist_dev.ui import THUMBNAIL_RULES, audience_token, bearer_get, service_account
from tests.install.conftest import (
    FULLNAME,
    NAMESPACE,
    NS_FULLNAME,
    NS_NAMESPACE,
    NS_RELEASE,
    NS_SA_USER,
    RELEASE,
    SA_USER,
    kjson,
)
from tests.install.install_tools import flat_rules, run_health

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

LIVE = "live"  # the user's namespace for streams, enforcing `restricted` too
RESTRICTED = ["pod-security.kubernetes.io/enforce=restricted", "pod-security.kubernetes.io/enforce-version=latest"]
CRDS = {"streaminputs.streamdist.io", "streamoutputs.streamdist.io", "clusterkopfpeerings.kopf.dev",
        "kopfpeerings.kopf.dev"}


def _helm(cp: ControlPlane, *args: str, timeout: float = 420) -> Any:
    """helm against the test's control plane; a failure says what the cluster held at that moment
    (a `--wait` that runs out names no object by itself)."""
    proc = helm(*args, env={"KUBECONFIG": str(cp.kubeconfig)}, timeout=timeout, check=False)
    if proc.returncode != 0:
        state = cp.kubectl("get", "pods,statefulsets,deployments,jobs", "-A", "-o", "wide", check=False)
        events = cp.kubectl("get", "events", "-A", "--sort-by=.lastTimestamp", check=False)
        raise AssertionError(f"helm {' '.join(args[:2])} exited {proc.returncode}:\n{proc.stderr}\n"
                             f"{state.stdout}\n{events.stdout[-4000:]}")
    return proc


def _crds(cp: ControlPlane) -> set[str]:
    return {i["metadata"]["name"] for i in kjson(cp, "get", "crd")["items"]}


def _pods(cp: ControlPlane, ns: str, selector: str) -> list[dict[str, Any]]:
    return kjson(cp, "-n", ns, "get", "pods", "-l", selector)["items"]


def _status(cp: ControlPlane, kind: str, name: str) -> dict[str, Any]:
    got = cp.kubectl("-n", LIVE, "get", kind, name, "-o", "json", check=False)
    return (json.loads(got.stdout).get("status") or {}) if got.returncode == 0 else {}


def _phase(cp: ControlPlane, kind: str, name: str) -> str:
    return _status(cp, kind, name).get("phase", "")


def _operator_pods_admitted(cp: ControlPlane, ns: str, instance: str) -> None:
    """The StatefulSet's two pods exist (so `restricted` admitted them), one per ordinal."""
    selector = f"app.kubernetes.io/instance={instance},app.kubernetes.io/component=operator"

    def running() -> list[dict[str, Any]] | None:
        pods = _pods(cp, ns, selector)
        return pods if len(pods) == 2 and all(p["status"].get("phase") == "Running" for p in pods) else None

    pods = cp.wait_for(f"{ns} operator pods running", running, timeout=90)
    assert sorted(p["metadata"]["labels"]["apps.kubernetes.io/pod-index"] for p in pods) == ["0", "1"]
    assert len({p["spec"]["nodeName"] for p in pods}) == 2, "the replicas should spread over the two nodes"
    events = kjson(cp, "-n", ns, "get", "events")["items"]
    assert not [e for e in events if e["reason"] == "FailedCreate"], [e["message"] for e in events]


# --- plain manifests --------------------------------------------------------------------------


def test_plain_manifests_install_as_documented(install_cp: ControlPlane) -> None:
    """manifests/install.yaml on a fresh cluster, with the commands its header documents."""
    cp = install_cp
    had = _crds(cp) & CRDS
    path = str(REPO / "manifests" / "install.yaml")
    header = Path(path).read_text().split("\n---", 1)[0]
    steps = [ln.removeprefix("#   ") for ln in header.splitlines() if ln.startswith("#   kubectl ")]
    assert steps == [
        "kubectl apply --server-side -f manifests/install.yaml || true",
        "kubectl wait --for=condition=Established crd/clusterkopfpeerings.kopf.dev --timeout=60s",
        "kubectl apply --server-side -f manifests/install.yaml",
    ]
    first = cp.kubectl("apply", "--server-side", "-f", path, check=False)
    if not had:  # what the header says happens on a fresh cluster
        assert first.returncode != 0 and 'no matches for kind "ClusterKopfPeering"' in first.stderr, first.stderr
    cp.kubectl("wait", "--for=condition=Established", "crd/clusterkopfpeerings.kopf.dev", "--timeout=60s")
    cp.kubectl("apply", "--server-side", "-f", path)
    assert _crds(cp) >= CRDS
    ns = kjson(cp, "get", "namespace", "streamdist")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    _operator_pods_admitted(cp, "streamdist", "streamdist")
    assert kjson(cp, "get", "clusterkopfpeering", "streamdist")["metadata"]["name"] == "streamdist"
    # Leave the cluster as found: everything but the CRDs, and the CRDs if they were ours.
    cp.kubectl("delete", "-f", path, "-l", "app.kubernetes.io/component", "--wait=false")
    if not had:
        # A CRD deleted before the API server's storage for it is up gets stuck: its
        # cleanup finalizer fails ("storage is (re)initializing") and retries with a
        # back-off of minutes. Listing each kind first waits for that storage.
        for crd in sorted(CRDS):
            cp.wait_for(f"{crd} served", lambda c=crd: cp.kubectl("get", c, "-A", check=False).returncode == 0,
                        timeout=60)  # fmt: skip
        cp.kubectl("delete", "crd", *sorted(CRDS), "--timeout=120s")
        cp.wait_for("CRDs gone", lambda: not (_crds(cp) & CRDS), timeout=60)


# --- helm install -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def release(install_cp: ControlPlane) -> str:
    """`helm install` into sd-system; returns helm's output (with NOTES)."""
    cp = install_cp
    for ns in (NAMESPACE, LIVE):
        cp.kubectl("create", "namespace", ns)
        cp.kubectl("label", "namespace", ns, *RESTRICTED)
    out = _helm(cp, "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--set", "resyncSeconds=3",
                "--wait", "--timeout", "300s")
    return str(out.stdout)


def test_helm_install_creates_crds_and_a_restricted_operator(install_cp: ControlPlane, release: str) -> None:
    cp = install_cp
    assert _crds(cp) >= CRDS
    for crd in CRDS:
        conds = {c["type"]: c["status"] for c in kjson(cp, "get", "crd", crd)["status"]["conditions"]}
        assert conds["Established"] == "True"
    _operator_pods_admitted(cp, NAMESPACE, RELEASE)
    assert kjson(cp, "get", "clusterkopfpeering", FULLNAME)["metadata"]["name"] == FULLNAME
    notes = release.split("NOTES:", 1)[1]
    assert "kubectl -n live apply -f examples/demo/" in notes
    assert "kubectl -n live get streamdist" in notes


@pytest.mark.parametrize("values", [[], ["--set", "watchNamespaces={dry-a,dry-b}"],
                                    ["--set", "replicaCount=1", "--set", "peering.enabled=false"]],
                         ids=["cluster-wide", "watch-namespaces", "single"])
def test_helm_template_passes_server_side_dry_run(install_cp: ControlPlane, release: str, values: list[str]) -> None:
    cp = install_cp
    for ns in ("dry-system", "dry-a", "dry-b"):
        if cp.kubectl("get", "namespace", ns, check=False).returncode != 0:
            cp.kubectl("create", "namespace", ns)
            cp.kubectl("label", "namespace", ns, *RESTRICTED)
    text = _helm(cp, "template", "dry", str(CHART), "--namespace", "dry-system", "--include-crds", *values).stdout
    out = cp.kubectl("apply", "--server-side", "--dry-run=server", "-f", "-", input=text)
    lines = [ln for ln in out.stdout.splitlines() if ln.strip()]
    docs = [d for d in text.split("\n---") if "kind:" in d]
    assert len(lines) == len(docs) and all(ln.endswith("(server dry run)") for ln in lines), out.stdout
    assert "Warning" not in out.stderr, out.stderr


# --- what the ServiceAccount may do ----------------------------------------------------------------

CAN = [
    ("list", "streaminputs.streamdist.io"), ("watch", "streaminputs.streamdist.io"),
    ("list", "streamoutputs.streamdist.io"), ("watch", "streamoutputs.streamdist.io"),
    ("patch", "streaminputs.streamdist.io", "--subresource=status"),
    ("patch", "streamoutputs.streamdist.io", "--subresource=status"),
    ("list", "pods"), ("watch", "pods"), ("create", "pods"), ("delete", "pods"),
    ("get", "deployments.apps"), ("list", "deployments.apps"), ("watch", "deployments.apps"),
    ("create", "deployments.apps"),
    ("patch", "deployments.apps"),
    ("get", "configmaps"), ("create", "configmaps"), ("patch", "configmaps"),
    ("get", "services"), ("create", "services"), ("patch", "services"), ("delete", "services"),
    ("get", "secrets/youtube-primary"), ("create", "secrets"), ("patch", "secrets"),
    ("get", "networkpolicies.networking.k8s.io"), ("create", "networkpolicies.networking.k8s.io"),
    ("patch", "networkpolicies.networking.k8s.io"),
    ("create", "events"),
    ("list", "customresourcedefinitions.apiextensions.k8s.io", "--all-namespaces"),
    ("watch", "customresourcedefinitions.apiextensions.k8s.io", "--all-namespaces"),
    ("list", "clusterkopfpeerings.kopf.dev", "--all-namespaces"),
    ("watch", "clusterkopfpeerings.kopf.dev", "--all-namespaces"),
    ("patch", f"clusterkopfpeerings.kopf.dev/{FULLNAME}", "--all-namespaces"),
    ("list", "pods", "--all-namespaces"), ("watch", "deployments.apps", "--all-namespaces"),
]
CANNOT = [
    ("list", "secrets"), ("watch", "secrets"), ("update", "secrets"), ("delete", "secrets"),
    ("deletecollection", "secrets"), ("list", "secrets", "--all-namespaces"),
    ("list", "networkpolicies.networking.k8s.io"), ("delete", "networkpolicies.networking.k8s.io"),
    ("create", "pods", "--subresource=exec"), ("create", "pods", "--subresource=attach"),
    ("create", "pods", "--subresource=portforward"), ("get", "pods", "--subresource=log"),
    ("update", "pods"), ("patch", "pods"), ("get", "pods"), ("deletecollection", "pods"),
    ("get", "nodes", "--all-namespaces"), ("list", "nodes", "--all-namespaces"), ("patch", "nodes", "--all-namespaces"),
    ("create", "clusterroles.rbac.authorization.k8s.io", "--all-namespaces"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", "--all-namespaces"),
    ("create", "roles.rbac.authorization.k8s.io"), ("create", "rolebindings.rbac.authorization.k8s.io"),
    ("escalate", "clusterroles.rbac.authorization.k8s.io", "--all-namespaces"),
    ("bind", "clusterroles.rbac.authorization.k8s.io", "--all-namespaces"),
    ("impersonate", "serviceaccounts"), ("create", "serviceaccounts", "--subresource=token"),
    ("delete", "deployments.apps"), ("update", "deployments.apps"),
    ("list", "configmaps"), ("delete", "configmaps"),
    ("list", "services"),
    ("create", "streaminputs.streamdist.io"), ("patch", "streaminputs.streamdist.io"),
    ("delete", "streamoutputs.streamdist.io"), ("update", "streamoutputs.streamdist.io", "--subresource=status"),
    ("get", "streaminputs.streamdist.io"),
    ("delete", "events"), ("list", "namespaces", "--all-namespaces"), ("delete", "namespaces", "--all-namespaces"),
    ("create", "customresourcedefinitions.apiextensions.k8s.io", "--all-namespaces"),
    ("patch", "clusterkopfpeerings.kopf.dev/someone-else", "--all-namespaces"),
    ("create", "clusterkopfpeerings.kopf.dev", "--all-namespaces"),
    ("create", "mutatingwebhookconfigurations.admissionregistration.k8s.io", "--all-namespaces"),
    ("*", "*", "--all-namespaces"),
]


def _can_i(cp: ControlPlane, verb: str, resource: str, *extra: str) -> bool:
    ns = [] if "--all-namespaces" in extra else ["-n", LIVE]
    got = cp.kubectl("auth", "can-i", verb, resource, *[e for e in extra if e != "--all-namespaces"], *ns,
                     f"--as={SA_USER}", check=False)
    assert got.stdout.strip() in ("yes", "no"), got.stderr
    return got.stdout.strip() == "yes"


def test_service_account_can_do_what_the_operator_does(install_cp: ControlPlane, release: str) -> None:
    denied = [c for c in CAN if not _can_i(install_cp, *c)]
    assert not denied


def test_service_account_cannot_do_anything_else(install_cp: ControlPlane, release: str) -> None:
    allowed = [c for c in CANNOT if _can_i(install_cp, *c)]
    assert not allowed


# --- the operator with exactly the chart's rights ----------------------------------------------------


class Operators:
    """`streamdist run` processes standing in for the StatefulSet's pods: same env (read
    back from the installed StatefulSet), same identity, a token of the same ServiceAccount."""

    def __init__(self, cp: ControlPlane, state: Path, namespace: str = NAMESPACE, fullname: str = FULLNAME) -> None:
        self.cp = cp
        self.state = state
        self.namespace = namespace
        self.fullname = fullname
        self.running: dict[int, OperatorProcess] = {}
        self.starts = 0

    def env(self, ordinal: int) -> dict[str, str]:
        sts = kjson(self.cp, "-n", self.namespace, "get", "statefulset", self.fullname)
        (container,) = sts["spec"]["template"]["spec"]["containers"]
        env: dict[str, str] = {}
        for e in container["env"]:
            if "value" in e:
                env[e["name"]] = e["value"]
                continue
            path = e["valueFrom"]["fieldRef"]["fieldPath"]
            env[e["name"]] = {"metadata.name": f"{self.fullname}-{ordinal}",
                              "metadata.namespace": self.namespace,
                              "metadata.labels['apps.kubernetes.io/pod-index']": str(ordinal)}[path]
        # the harness serves these on free loopback ports (two replicas share this host)
        env.pop("STREAMDIST_LIVENESS")
        env.pop("STREAMDIST_THUMBNAIL_PORT")
        env["STREAMDIST_METRICS_PORT"] = str(free_ports(1)[0])
        # KWOK's pods have no network: the routers' control API must be unreachable, as it
        # is on any machine without pod routes (some sandboxes answer every address with a
        # catch-all HTTP proxy instead, which MediaMTX's client would read as "no source").
        dead = f"http://127.0.0.1:{free_ports(1)[0]}"
        env.update({"http_proxy": dead, "HTTP_PROXY": dead, "no_proxy": "127.0.0.1,localhost",
                    "NO_PROXY": "127.0.0.1,localhost"})
        return env

    def kubeconfig(self, ordinal: int) -> Path:
        token = self.cp.kubectl("-n", self.namespace, "create", "token", self.fullname,
                                "--duration=2h").stdout.strip()
        path = self.state / f"sa-{ordinal}-{self.starts}.kubeconfig"
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "sa",
            "clusters": [{"name": "test", "cluster": {"server": self.cp.server,
                                                      "certificate-authority": str(self.cp.pki_dir / "ca.crt")}}],
            "users": [{"name": "sa", "user": {"token": token}}],
            "contexts": [{"name": "sa", "context": {"cluster": "test", "user": "sa"}}],
        }))
        return path

    def start(self, ordinal: int) -> OperatorProcess:
        self.starts += 1
        op = OperatorProcess(self.kubeconfig(ordinal), self.state / f"op{ordinal}-{self.starts}", env=self.env(ordinal))
        op.start()
        self.running[ordinal] = op
        return op

    def stop(self, ordinal: int) -> None:
        op = self.running.pop(ordinal, None)
        if op:
            op.stop()

    def stop_all(self) -> None:
        for ordinal in list(self.running):
            self.stop(ordinal)


@pytest.fixture(scope="module")
def ops(install_cp: ControlPlane, release: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    operators = Operators(install_cp, tmp_path_factory.mktemp("operators"))
    yield operators
    operators.stop_all()


def _grants(cp: ControlPlane) -> set[tuple[str, str, str, str]]:
    """(group, resource, verb, name) the installed chart grants its ServiceAccount."""
    return set().union(*(flat_rules(kjson(cp, "get", "clusterrole", name)["rules"])
                         for name in (FULLNAME, f"{FULLNAME}-kopf")))


def _allowed(grants: set[tuple[str, str, str, str]], r: Request, verb: str) -> bool:
    return (r.group, r.full_resource, verb, "") in grants or (r.group, r.full_resource, verb, r.name) in grants


FIXED = """
apiVersion: streamdist.io/v1alpha1
kind: StreamInput
metadata: {{name: {name}}}
spec: {{protocol: udp, port: 20500}}
"""
ORPHAN = """
apiVersion: streamdist.io/v1alpha1
kind: StreamOutput
metadata: {name: orphan}
spec: {input: nope, url: "udp://10.1.2.3:5000"}
"""


def _output(name: str) -> str:
    return f"""
apiVersion: streamdist.io/v1alpha1
kind: StreamOutput
metadata: {{name: {name}}}
spec: {{input: studio-udp, url: "udp://{name}.playout.example:5000?pkt_size=1316"}}
"""


def _streaming_with_pod(cp: ControlPlane, name: str, timeout: float = 60) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        pods = [p for p in _pods(cp, LIVE, f"streamdist.io/output={name}") if p["status"].get("phase") == "Running"]
        status = _status(cp, "so", name)
        return status if pods and status.get("phase") == "Streaming" and status.get("pod") else None

    return cp.wait_for(f"StreamOutput {name} Streaming with its pod", ready, timeout=timeout)


def _health(cp: ControlPlane, kind: str, short: str, name: str) -> tuple[str, str]:
    body = kjson(cp, "-n", LIVE, "get", short, name)
    got = {run_health(kind, body, vm) for vm in ("gopher-lua", "stock")}
    assert len(got) == 1, got
    return got.pop()


def _thumbnail(cp: ControlPlane, op: OperatorProcess, name: str, tmp: Path) -> tuple[int, str]:
    """GET one input's thumbnail from the operator as a ServiceAccount allowed to."""
    service_account(cp.kubectl, LIVE, "thumbs", THUMBNAIL_RULES)
    token = audience_token(cp.kubectl, LIVE, "thumbs", tmp / "thumbs.token").read_text()
    return bearer_get(f"http://127.0.0.1:{op.thumbnail_port}/v1/thumbnails/{LIVE}/{name}.jpg", token)


def test_operator_with_the_chart_rights_reconciles_the_examples(
    install_cp: ControlPlane, ops: Operators, tmp_path: Path
) -> None:
    cp = install_cp
    ops.start(1)
    cp.kubectl("-n", LIVE, "apply", "-f", str(REPO / "examples/inputs/udp.yaml"),
               "-f", str(REPO / "examples/outputs/rtmps-secret.yaml"),
               "-f", str(REPO / "examples/outputs/srt-listener.yaml"))

    # The input: its router Deployment (admitted under `restricted`) and where to send the source.
    cp.wait_for("router Deployment", lambda: cp.kubectl("-n", LIVE, "get", "deployment", "studio-udp-mediamtx",
                                                        check=False).returncode == 0, timeout=60)
    si = cp.wait_for("status.endpoint", lambda: _status(cp, "si", "studio-udp").get("endpoint") and
                     _status(cp, "si", "studio-udp"), timeout=60)
    assert si["endpoint"] == f"udp://studio-udp-ingest.{LIVE}.svc:{si['port']}"
    cp.wait_for("router pod running", lambda: [p for p in _pods(cp, LIVE, "streamdist.io/input=studio-udp,"
                                                                "app.kubernetes.io/name=mediamtx")
                                               if p["status"].get("phase") == "Running"], timeout=60)
    # The outputs: one FFmpeg pod each, Streaming; the stream key came from the Secret.
    yt = _streaming_with_pod(cp, "youtube")
    assert yt["destination"] == "rtmps://a.rtmp.youtube.com:443/live2/***"
    _streaming_with_pod(cp, "pickup-listener")
    cp.kubectl("-n", LIVE, "get", "service", "pickup-listener")
    assert _health(cp, "StreamOutput", "so", "youtube")[0] == "Healthy"
    # No source publishes (KWOK's router is no router): the input waits, which is Progressing.
    assert _health(cp, "StreamInput", "si", "studio-udp")[0] == "Progressing"
    # The thumbnail endpoint reviews a token for its audience (TokenReview) and its user's
    # right to this input's thumbnail (SubjectAccessReview); KWOK's router has no picture.
    # The confidence monitor is on (the chart's default), so the operator asks the router's
    # Service for one: a KWOK ClusterIP leads nowhere (503), or, where this host's gateway
    # answers HTTP for any address, the operator says what it was answered (404 or 502).
    status, body = _thumbnail(cp, ops.running[1], "studio-udp", tmp_path)
    fetched = ("cannot be reached", "no keyframe decoded yet", "the confidence monitor answered HTTP")
    assert status in (404, 502, 503) and any(why in body for why in fetched), (status, body)

    # Suspending the listener deletes its pod and its Service.
    cp.kubectl("-n", LIVE, "patch", "so", "pickup-listener", "--type=merge", "-p", '{"spec":{"suspend":true}}')
    cp.wait_for("listener suspended", lambda: _phase(cp, "so", "pickup-listener") == "Suspended" and not [
        p for p in _pods(cp, LIVE, "streamdist.io/output=pickup-listener") if not p["metadata"].get("deletionTimestamp")
    ] and cp.kubectl("-n", LIVE, "get", "service", "pickup-listener", check=False).returncode != 0, timeout=60)
    assert _health(cp, "StreamOutput", "so", "pickup-listener") == ("Suspended", "Suspended (spec.suspend is true)")

    # What only the operator can see ends as a condition (and an Event), nothing else.
    cp.kubectl("-n", LIVE, "apply", "-f", "-", input=FIXED.format(name="fixed-a"))
    cp.wait_for("fixed-a has its port", lambda: _status(cp, "si", "fixed-a").get("port") == 20500, timeout=60)
    cp.kubectl("-n", LIVE, "apply", "-f", "-", input=FIXED.format(name="fixed-b") + "---" + ORPHAN)
    cp.wait_for("port clash reported", lambda: _phase(cp, "si", "fixed-b") == "Failed", timeout=60)
    cp.wait_for("missing input reported", lambda: _phase(cp, "so", "orphan") == "Failed", timeout=60)
    health, message = _health(cp, "StreamInput", "si", "fixed-b")
    assert health == "Degraded" and message.startswith("PortConflict: ")
    health, message = _health(cp, "StreamOutput", "so", "orphan")
    assert health == "Degraded" and message.startswith("InputNotFound: ")
    cp.wait_for("a PortConflict Event", lambda: [e for e in kjson(cp, "-n", LIVE, "get", "events")["items"]
                                                 if e["reason"] == "PortConflict"], timeout=30)

    # A restarted operator adopts unchanged routers (reads their Services) and keeps the pods
    # it finds; an input changed meanwhile is applied over its existing children: each is
    # read first (get) to see it is its own, then patched.
    uids = {p["metadata"]["uid"] for p in _pods(cp, LIVE, "streamdist.io/output")}
    ops.running[1].kill()
    cp.kubectl("-n", LIVE, "patch", "si", "studio-udp", "--type=merge", "-p", '{"spec":{"fallback":{}}}')
    ops.running[1].start()
    cp.wait_for("the changed router config applied", lambda: "alwaysAvailable: yes" in cp.kubectl(
        "-n", LIVE, "get", "configmap", "studio-udp-mediamtx", "-o", "jsonpath={.data.mediamtx\\.yml}").stdout,
        timeout=30)  # fmt: skip
    time.sleep(5)
    assert {p["metadata"]["uid"] for p in _pods(cp, LIVE, "streamdist.io/output")} == uids

    # The audit log: nothing the operator asked for was refused, every request was one the
    # chart grants, and every verb the chart grants was used (an apply answered 201
    # created the object, which the API server authorized as `create` too).
    time.sleep(3)  # a resync or two more: its requests are in the log as well
    requests = cp.audit.last_words(SA_USER)  # type: ignore[union-attr]
    assert requests, "no audit records of the operator's ServiceAccount"
    refused = sorted({(r.verb, r.group, r.full_resource, r.code) for r in requests if r.code in (401, 403)})
    assert not refused
    grants = _grants(cp)
    outside = sorted({(r.verb, r.group, r.full_resource) for r in requests if not _allowed(grants, r, r.verb)})
    assert not outside
    used = {(r.group, r.full_resource, r.verb, n) for r in requests for n in ("", r.name)}
    used |= {(r.group, r.full_resource, "create", "") for r in requests if r.verb == "patch" and r.code == 201}
    unused = sorted(g for g in grants if g not in used)
    assert not unused, f"granted but never used: {unused}"


def _peers(cp: ControlPlane) -> dict[str, Any]:
    return kjson(cp, "get", "clusterkopfpeering", FULLNAME).get("status") or {}


def test_standby_replica_waits_then_takes_over(install_cp: ControlPlane, ops: Operators) -> None:
    cp = install_cp
    if 1 not in ops.running:
        ops.start(1)
    standby = ops.start(0)
    cp.wait_for("both replicas in the peering", lambda: {f"{FULLNAME}-0", f"{FULLNAME}-1"} <= set(_peers(cp)),
                timeout=30)
    assert {k: v["priority"] for k, v in _peers(cp).items()} == {f"{FULLNAME}-0": 0, f"{FULLNAME}-1": 1}
    time.sleep(4)
    assert "Resuming operations" not in standby.logs(), "the priority-0 replica acted beside the priority-1 one"

    ops.stop(1)  # SIGTERM, as in a rollout or a drain: it removes its keep-alive on the way out
    cp.wait_for("standby resumes", lambda: "Resuming operations" in standby.logs(), timeout=20)
    assert set(_peers(cp)) == {f"{FULLNAME}-0"}
    cp.kubectl("-n", LIVE, "apply", "-f", "-", input=_output("after-handover"))
    _streaming_with_pod(cp, "after-handover")


def test_helm_upgrade_leaves_running_output_pods_alone(install_cp: ControlPlane, ops: Operators) -> None:
    cp = install_cp
    if not ops.running:
        ops.start(1)
    before = {p["metadata"]["name"]: p["metadata"]["uid"]
              for p in _pods(cp, LIVE, "app.kubernetes.io/managed-by=streamdist")}
    assert len(before) >= 4  # two routers (studio-udp, fixed-a), youtube, after-handover
    router_gen = kjson(cp, "-n", LIVE, "get", "deployment", "studio-udp-mediamtx")["metadata"]["generation"]
    revision = kjson(cp, "-n", NAMESPACE, "get", "statefulset", FULLNAME)["status"]["updateRevision"]

    _helm(cp, "upgrade", RELEASE, str(CHART), "--namespace", NAMESPACE, "--reuse-values",
          "--set", "resources.limits.memory=768Mi", "--set", "podAnnotations.upgraded=yes",
          "--set", "portRange=20000-21999", "--set", "resyncSeconds=4", "--wait", "--timeout", "300s")
    sts = kjson(cp, "-n", NAMESPACE, "get", "statefulset", FULLNAME)
    assert sts["status"]["updateRevision"] != revision
    # The rollout, played by the local processes: each replica restarts with the new env.
    ops.stop_all()
    op = ops.start(1)
    assert "STREAMDIST_PORT_RANGE" in op.extra_env and op.extra_env["STREAMDIST_PORT_RANGE"] == "20000-21999"
    cp.kubectl("-n", LIVE, "apply", "-f", "-", input=_output("after-upgrade"))
    _streaming_with_pod(cp, "after-upgrade")  # the new operator acts ...
    time.sleep(10)  # ... and has resynced every object at least twice
    after = {p["metadata"]["name"]: p["metadata"]["uid"]
             for p in _pods(cp, LIVE, "app.kubernetes.io/managed-by=streamdist")}
    assert {n: after.get(n) for n in before} == before
    assert kjson(cp, "-n", LIVE, "get", "deployment", "studio-udp-mediamtx")["metadata"]["generation"] == router_gen
    for name in ("youtube", "after-handover"):
        assert _phase(cp, "so", name) == "Streaming"


def test_helm_uninstall_keeps_the_crds_and_the_streams(install_cp: ControlPlane, ops: Operators) -> None:
    cp = install_cp
    ops.stop_all()
    pods = {p["metadata"]["name"]: p["metadata"]["uid"]
            for p in _pods(cp, LIVE, "app.kubernetes.io/managed-by=streamdist")}
    streams = {i["metadata"]["name"] for i in kjson(cp, "-n", LIVE, "get", "streamdist")["items"]}
    _helm(cp, "uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", "--timeout", "120s")
    assert _crds(cp) >= CRDS
    assert {i["metadata"]["name"] for i in kjson(cp, "-n", LIVE, "get", "streamdist")["items"]} == streams
    assert {p["metadata"]["name"]: p["metadata"]["uid"]
            for p in _pods(cp, LIVE, "app.kubernetes.io/managed-by=streamdist")} == pods
    for args in (["clusterrole", FULLNAME], ["clusterrole", f"{FULLNAME}-kopf"], ["clusterrolebinding", FULLNAME],
                 ["clusterkopfpeering", FULLNAME], ["-n", NAMESPACE, "serviceaccount", FULLNAME],
                 ["-n", NAMESPACE, "statefulset", FULLNAME]):
        assert cp.kubectl("get", *args, check=False).returncode != 0, f"{args} survived helm uninstall"


# --- watching some namespaces only ---------------------------------------------------------------

CAMERA = """
apiVersion: streamdist.io/v1alpha1
kind: StreamInput
metadata: {name: cam}
spec: {protocol: udp}
---
apiVersion: streamdist.io/v1alpha1
kind: StreamOutput
metadata: {name: cam-out}
spec: {input: cam, url: "udp://10.1.2.3:5000?pkt_size=1316"}
"""


def test_watching_one_namespace_needs_no_cluster_wide_rights(install_cp: ControlPlane, tmp_path: Path) -> None:
    """values.watchNamespaces: Roles in the watched namespace, a KopfPeering there, and the
    operator with that token serves team-a, leaves team-b alone, and is refused nothing."""
    cp = install_cp
    for ns in (NS_NAMESPACE, "team-a", "team-b"):
        cp.kubectl("create", "namespace", ns)
        cp.kubectl("label", "namespace", ns, *RESTRICTED)
    _helm(cp, "install", NS_RELEASE, str(CHART), "--namespace", NS_NAMESPACE, "--set", "watchNamespaces={team-a}",
          "--set", "resyncSeconds=3", "--wait", "--timeout", "300s")
    ops = Operators(cp, tmp_path, NS_NAMESPACE, NS_FULLNAME)
    try:
        assert ops.env(1)["STREAMDIST_NAMESPACES"] == "team-a"
        op = ops.start(1)
        for ns in ("team-a", "team-b"):
            cp.kubectl("-n", ns, "apply", "-f", "-", input=CAMERA)

        def served() -> bool:
            si = json.loads(cp.kubectl("-n", "team-a", "get", "si", "cam", "-o", "json").stdout).get("status") or {}
            so = json.loads(cp.kubectl("-n", "team-a", "get", "so", "cam-out", "-o", "json").stdout).get("status") or {}
            pods = [p for p in _pods(cp, "team-a", "streamdist.io/output=cam-out") if p["status"].get("phase") == "Running"]
            return bool(si.get("endpoint")) and so.get("phase") == "Streaming" and bool(pods)

        cp.wait_for("team-a served", served, timeout=60)
        time.sleep(4)  # a resync more
        assert not (json.loads(cp.kubectl("-n", "team-b", "get", "si", "cam", "-o", "json").stdout).get("status"))
        assert not _pods(cp, "team-b", "app.kubernetes.io/managed-by=streamdist")
        assert "Resuming operations" in op.logs()  # its KopfPeering in team-a exists: peering is live

        requests = cp.audit.last_words(NS_SA_USER)  # type: ignore[union-attr]
        assert requests
        assert not sorted({(r.verb, r.full_resource, r.code) for r in requests if r.code in (401, 403)})
        cluster_scoped = {(r.verb, r.group, r.full_resource) for r in requests if not r.namespaced}
        assert cluster_scoped <= {("list", "apiextensions.k8s.io", "customresourcedefinitions"),
                                  ("watch", "apiextensions.k8s.io", "customresourcedefinitions"),
                                  ("list", "", "namespaces"), ("watch", "", "namespaces")}, cluster_scoped
        user = f"--as={NS_SA_USER}"
        for args, want in ((["create", "pods", "-n", "team-a"], "yes"), (["create", "pods", "-n", "team-b"], "no"),
                           (["get", "secrets", "-n", "team-b"], "no"), (["list", "pods", "--all-namespaces"], "no"),
                           (["list", "streaminputs.streamdist.io", "--all-namespaces"], "no"),
                           (["patch", f"kopfpeerings.kopf.dev/{NS_FULLNAME}", "-n", "team-a"], "yes"),
                           (["list", "clusterkopfpeerings.kopf.dev"], "no")):
            got = cp.kubectl("auth", "can-i", *args, user, check=False).stdout.strip()
            assert got == want, (args, got)
    finally:
        ops.stop_all()
        _helm(cp, "uninstall", NS_RELEASE, "--namespace", NS_NAMESPACE, "--wait", "--timeout", "120s")
