"""`make demo`: a real single-node cluster on this machine, the operator, the demo set.

The operator runs as a cluster runs it: the Helm chart, two replicas (pods of the
operator image hack/build-images.sh builds; one acts, one stands by). A test pattern
goes into the demo input (MPEG-TS over UDP) and out through three outputs (SRT
listener, RTMP, UDP) to local receivers; it prints `kubectl get streamdist` and how to
watch each output, and runs until Ctrl-C (or `make demo-down`).

STREAMDIST_CLUSTER=current uses the current kube context instead: it builds the three
images, puts them where that cluster takes local images (kind, k3d, minikube; any
other: REGISTRY=host[:port]/path, see dev/streamdist_dev/load_images.py), and installs the
chart with those references. Where this machine cannot run the node (not root, no
containerd), it falls back to KWOK fake nodes and says so: the operator (a process
then) and the API server are real, no video flows.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from streamdist_dev import load_images
from streamdist_dev.controlplane import ControlPlane
from streamdist_dev.kubectl import install_crds
from streamdist_dev.node import (
    IMAGES,
    NodeCluster,
    build_images,
    cleanup_host,
    demo_settled,
    node_supported,
    start_demo_receivers,
    start_demo_source,
)
from streamdist_dev.operator import OperatorProcess
from streamdist_dev.operator_pods import OperatorPods
from streamdist_dev.ui import (
    THUMBNAIL_RULES,
    WRITE_RULES,
    UiProcess,
    operator_args,
    page_kubeconfig,
    service_account,
)

ROOT = Path(__file__).resolve().parents[1]

STATE = ROOT / ".state" / "demo"
NAMESPACE = "streamdist-demo"


def step(text: str) -> None:
    print(f"==> {text}", flush=True)


def down() -> int:
    pidfile = STATE / "demo.pid"
    if not pidfile.exists():
        print("no demo running")
        return 0
    pid = int(pidfile.read_text())
    try:
        os.kill(pid, signal.SIGINT)
        step(f"asked demo (pid {pid}) to stop")
    except ProcessLookupError:
        pidfile.unlink()
    return 0


def up() -> int:
    STATE.mkdir(parents=True, exist_ok=True)
    (STATE / "demo.pid").write_text(str(os.getpid()))
    # SIGTERM (kill, a supervisor, a timeout) stops the demo like Ctrl-C does: every
    # `finally` and context manager below runs, so no receiver or source is left behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        if os.environ.get("STREAMDIST_CLUSTER") == "current":
            return _current_cluster()
        if os.environ.get("STREAMDIST_CLUSTER") == "kind":
            return _kind_demo()
        why_not = node_supported()
        if why_not and _docker_here():
            step(f"no local node on this machine ({why_not}), but Docker: the kind path")
            return _kind_demo()
        if why_not:
            step(f"no real node on this machine ({why_not}) and no Docker: falling back to KWOK fake nodes")
            return _kwok_demo()
        return _node_demo()
    finally:
        (STATE / "demo.pid").unlink(missing_ok=True)


def _node_demo() -> int:
    """The real single-node cluster: video flows from a test pattern to three receivers."""
    started = time.monotonic()
    step(
        "building or reusing the parts and starting the local node "
        "(containerd, kubelet, kube-proxy, CoreDNS, kube-router enforcing NetworkPolicy)"
    )
    cleanup_host(STATE / "node", quiet=True)
    shutil.rmtree(STATE / "node", ignore_errors=True)
    with NodeCluster(STATE / "node") as nc:
        step(f"node Ready after {time.monotonic() - started:.0f}s; installing the Helm chart (CRDs, RBAC, "
             f"two operator replicas from {IMAGES['operator']})")  # fmt: skip
        pods = OperatorPods(nc.kubectl, nc.kubeconfig, IMAGES, workdir=STATE).install()
        acting = nc.wait_for("one operator replica acting", pods.active, 120, 1.0)
        step(f"operator pods {', '.join(pods.ready_pods())} Ready after {pods.install_seconds:.0f}s; {acting} acts")
        _run_demo_set(nc, pods, acting, started, ui_cp=nc.cp)
    cleanup_host(STATE / "node", quiet=True)
    step("stopped; the node is torn down")
    return 0


def _run_demo_set(
    cluster: Any, pods: OperatorPods, acting: str, started: float, nodeports: bool = False, ui_cp: Any = None
) -> None:
    """examples/demo on ``cluster`` (a NodeCluster or a KindKube): receivers and a source on
    this host, until every output streams; then what to watch (and the control room, with
    ``ui_cp``, the control plane it reads), until Ctrl-C."""
    cluster.kubectl("create", "namespace", NAMESPACE, check=False)
    step(f"applying examples/demo/ to namespace {NAMESPACE}")
    cluster.kubectl("apply", "-n", NAMESPACE, "-f", str(ROOT / "examples" / "demo"))
    if nodeports:
        from streamdist_dev.kind import expose_demo

        expose_demo(cluster, NAMESPACE)
    step("starting the local receivers and the test-pattern source")
    pieces = start_demo_receivers(cluster, NAMESPACE, ROOT / "examples" / "demo" / "outputs.yaml", STATE / "rx")
    ui: UiProcess | None = None
    try:
        ui = _start_ui(ui_cp, pods) if ui_cp is not None else None
        start_demo_source(cluster, NAMESPACE, "demo", pieces)
        step("waiting until the input is Live and every output Streaming")
        cluster.wait_for("the demo to stream", lambda: demo_settled(cluster, NAMESPACE), timeout=300)
        step(f"all Streaming {time.monotonic() - started:.0f}s after start; kubectl get streamdist:")
        print(cluster.kubectl("get", "streamdist", "-n", NAMESPACE, "-o", "wide").stdout)
        print(cluster.kubectl("get", "pods", "-n", pods.namespace, "-o", "wide").stdout)
        pieces.wait_received(60)  # the watch commands below find a stream on every output
        print("Watch each output:")
        for name, command in sorted(pieces.watch.items()):
            print(f"  {name:10s} {command}")
        _footer(cluster.kubeconfig, f"kubectl logs -n {pods.namespace} {acting}", ui)
        _wait_for_interrupt()
    finally:
        if ui is not None:
            ui.__exit__()
        pieces.stop()


def _docker_here() -> bool:
    from streamdist_dev.kind import docker_supported, running_docker

    return running_docker() is not None or not docker_supported()


def _kind_demo() -> int:
    """kind on Docker (the user's daemon, or one started here): the node image and the
    images built here, loaded with kind, the chart, then the same demo set."""
    from streamdist_dev.kind import DockerDaemon, KindKube, kind_bin, kind_cluster, load_node_image, running_docker

    started = time.monotonic()
    step("building or reusing kind (Go module proxy), its node image and the images (hack/build-images.sh)")
    built = build_images(("kind-node", "operator", "ffmpeg", "mediamtx"))
    node_image = next(name for name in built if "/kind-node:" in name)
    with contextlib.ExitStack() as stack:
        docker = running_docker() or stack.enter_context(DockerDaemon(STATE / "docker"))
        step(f"Docker at {docker.host}; loading {node_image} into it")
        load_node_image(docker, node_image, built[node_image])
        step("kind create cluster --name streamdist-demo (through pytest-kind's KindCluster)")
        k = KindKube(stack.enter_context(kind_cluster("streamdist-demo", STATE / "kind", docker, node_image)), docker)
        context = k.kubectl("config", "current-context").stdout.strip()
        how = load_images.plan(context, k.kubectl_json("get", "nodes")["items"])
        step(f"cluster up after {time.monotonic() - started:.0f}s; {how.why}")
        archives = {key: built[ref] for key, ref in IMAGES.items()}
        refs = load_images.load(how, archives, IMAGES, {"kind": str(kind_bin())})
        pods = OperatorPods(k.kubectl, k.kubeconfig, refs, workdir=STATE).install()
        acting = k.wait_for("one operator replica acting", pods.active, 120, 1.0)
        step(f"operator pods {', '.join(pods.ready_pods())} Ready after {pods.install_seconds:.0f}s; {acting} acts")
        _run_demo_set(k, pods, acting, started, nodeports=True)
    step("stopped; the kind cluster is deleted")
    return 0


def _kwok_demo() -> int:
    """Control plane with KWOK playing the nodes: the operator is real, no video flows."""
    from streamdist_dev.controlplane import bin_dir

    shutil.rmtree(STATE / "cluster", ignore_errors=True)  # a fresh etcd each time
    step("building or reusing the control-plane binaries (hack/build-bins.sh)")
    bins = bin_dir()
    step("starting etcd, kube-apiserver, controller-manager, scheduler and KWOK on loopback")
    started = time.monotonic()
    with ControlPlane(STATE / "cluster", bins) as cp:
        _install_crds(cp)
        step("starting the operator (streamdist run)")
        with OperatorProcess(cp.kubeconfig, STATE / "operator") as op:
            cp.kubectl("create", "namespace", NAMESPACE, check=False)
            step(f"applying examples/demo/ to namespace {NAMESPACE}")
            cp.kubectl("apply", "-n", NAMESPACE, "-f", str(ROOT / "examples" / "demo"))
            cp.wait_for("the demo outputs to settle", lambda: demo_settled(cp, NAMESPACE, live=False), timeout=60)
            step(f"settled in {time.monotonic() - started:.1f}s; kubectl get streamdist -n {NAMESPACE}:")
            print(cp.kubectl("get", "streamdist", "-n", NAMESPACE, "-o", "wide").stdout)
            print("NOTE: the pods are played by KWOK (fake nodes): no video flows in this mode.")
            with _start_ui(cp) as ui:
                _footer(cp.kubeconfig, f"operator log: {op.log}", ui)
                _wait_for_interrupt()
    step("stopped")
    return 0


def _current_cluster() -> int:
    """The cluster of the current kube context: the images built here and loaded the way
    that cluster takes local images (or pushed to $REGISTRY), then the chart with them."""
    kubectl = _user_kubectl()
    context = kubectl("config", "current-context").stdout.strip()
    nodes = json.loads(kubectl("get", "nodes", "-o", "json").stdout)["items"]
    how = load_images.plan(context, nodes, os.environ.get("REGISTRY", ""), os.environ.get("REGISTRY_INSECURE") == "1")
    step(f"current context {context!r}: {how.why}")
    if not how.how:
        return 1
    if os.geteuid() != 0:
        step("building the images needs root (debootstrap and chroot: hack/build-images.sh); run it as root")
        return 1
    step("building (or reusing) the operator, FFmpeg and MediaMTX images (hack/build-images.sh)")
    built = build_images(("operator", "ffmpeg", "mediamtx"))
    archives = {key: built[ref] for key, ref in IMAGES.items()}
    step(f"putting them where the cluster takes them ({how.how})")
    refs = load_images.load(how, archives, IMAGES, tools=_tools())
    step("installing the Helm chart into namespace streamdist with: " + ", ".join(f"{k}={v}" for k, v in refs.items()))
    pods = OperatorPods(kubectl, None, refs, workdir=STATE).install()
    step(f"operator pods {', '.join(pods.ready_pods())} Ready after {pods.install_seconds:.0f}s")
    kubectl("create", "namespace", NAMESPACE, check=False)
    step(f"applying examples/demo/ to namespace {NAMESPACE}")
    kubectl("apply", "-n", NAMESPACE, "-f", str(ROOT / "examples" / "demo"))
    print("NOTE: on your cluster the demo outputs send to receiver.streamdist-demo.svc, which you provide;")
    print("      send a source to the input's endpoint shown below.")
    print(kubectl("get", "streamdist", "-n", NAMESPACE, "-o", "wide", check=False).stdout)
    return 0


def _user_kubectl() -> Any:
    """kubectl of the user's current context ($KUBECTL, else kubectl on PATH)."""
    binary = os.environ.get("KUBECTL") or shutil.which("kubectl") or "kubectl"

    def run(*args: str, check: bool = True, input: str | None = None, timeout: float = 120) -> Any:
        proc = subprocess.run([binary, *args], capture_output=True, text=True, input=input, timeout=timeout)
        if check and proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, [binary, *args], proc.stdout, proc.stderr)
        return proc

    return run


def _tools() -> dict[str, str]:
    """The loaders on PATH; kind also from the cache (hack/build-kind.sh builds it)."""
    tools = {name: path for name in ("kind", "k3d", "minikube", "skopeo") if (path := shutil.which(name))}
    cached = ROOT / ".state" / "no-kind"
    with contextlib.suppress(Exception):
        from streamdist_dev.kind import kind_bin

        cached = kind_bin()
    if "kind" not in tools and cached.exists():
        tools["kind"] = str(cached)
    return tools


def _install_crds(cluster: Any) -> None:
    step("installing the CRDs")
    install_crds(cluster)


def _start_ui(cluster: Any, pods: OperatorPods) -> UiProcess:
    """The control room (streamdist ui) on loopback: read-only for anyone, as the chart's
    page ServiceAccount, with the inputs' thumbnails from the operator pods; a token of
    ServiceAccount `demo-operator` (may change the two kinds in the demo namespace and see
    thumbnails) is written to a file to sign in with."""
    step("starting the control room (streamdist ui)")
    (STATE / "ui").mkdir(parents=True, exist_ok=True)
    kubeconfig = page_kubeconfig(cluster, STATE / "ui", "streamdist-ui")
    token = service_account(cluster.kubectl, NAMESPACE, "demo-operator", WRITE_RULES + THUMBNAIL_RULES)
    token_file = STATE / "ui" / "demo-operator.token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    port = int(os.environ.get("STREAMDIST_DEMO_UI_PORT", "0"))
    thumbnails = operator_args(cluster.kubectl, pods, "streamdist-ui", STATE / "ui")
    args = ("--anonymous-read", "--namespace", NAMESPACE, *thumbnails)
    return UiProcess(kubeconfig, STATE / "ui", *args, port=port).__enter__()


def _footer(kubeconfig: Path, operator_log: str, ui: UiProcess | None = None) -> None:
    if ui is not None:
        token_file = STATE / "ui" / "demo-operator.token"
        print(f"Control room: {ui.url}/   (read-only until you sign in with the token in {token_file})")
    print(f"      export KUBECONFIG={kubeconfig}   # to look around with kubectl")
    print(f"      operator log: {operator_log}")
    print("Ctrl-C (or `make demo-down`) stops everything.", flush=True)


def _wait_for_interrupt() -> None:
    if os.environ.get("STREAMDIST_DEMO_ONESHOT"):
        return
    with contextlib.suppress(KeyboardInterrupt):
        signal.pause()


if __name__ == "__main__":
    sys.exit(down() if sys.argv[1:] == ["down"] else up())
