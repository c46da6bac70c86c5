"""`make demo`: a real single-node cluster on this machine, the operator, the demo set.

A test pattern goes into the demo input (MPEG-TS over UDP) and out through three
outputs (SRT listener, RTMP, UDP) to local receivers; it prints `kubectl get streamdist`
and how to watch each output, and runs until Ctrl-C (or `make demo-down`).
STREAMDIST_CLUSTER=current uses the current kube context instead. Where this machine
cannot run the node (not root, no containerd), it falls back to KWOK fake nodes and
says so: the operator and the API server are real, no video flows.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness.controlplane import ControlPlane, bin_dir  # noqa: E402
from tests.harness.node import (  # noqa: E402
    NodeCluster,
    cleanup_host,
    node_supported,
    start_demo_receivers,
    start_demo_source,
)
from tests.harness.operator import OperatorProcess  # noqa: E402
from tests.harness.ui import WRITE_RULES, UiProcess, page_kubeconfig, service_account  # noqa: E402

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
        why_not = node_supported()
        if why_not:
            step(f"no real node on this machine ({why_not}): falling back to KWOK fake nodes")
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
        step(f"node Ready after {time.monotonic() - started:.0f}s; installing the CRDs")
        _install_crds(nc)
        step("starting the operator (streamdist run)")
        with OperatorProcess(nc.kubeconfig, STATE / "operator", env=nc.operator_env()) as op:
            nc.kubectl("create", "namespace", NAMESPACE, check=False)
            step(f"applying examples/demo/ to namespace {NAMESPACE}")
            nc.kubectl("apply", "-n", NAMESPACE, "-f", str(ROOT / "examples" / "demo"))
            step("starting the local receivers and the test-pattern source")
            pieces = start_demo_receivers(nc, NAMESPACE, ROOT / "examples" / "demo" / "outputs.yaml", STATE / "rx")
            ui: UiProcess | None = None
            try:
                ui = _start_ui(nc.cp)
                start_demo_source(nc, NAMESPACE, "demo", pieces)
                step("waiting until the input is Live and every output Streaming")
                nc.wait_for("the demo to stream", lambda: _settled(nc, live=True), timeout=300)
                step(f"all Streaming {time.monotonic() - started:.0f}s after start; kubectl get streamdist:")
                print(nc.kubectl("get", "streamdist", "-n", NAMESPACE).stdout)
                print("Watch each output:")
                for name, command in sorted(pieces.watch.items()):
                    print(f"  {name:10s} {command}")
                _footer(nc.kubeconfig, op.log, ui)
                _wait_for_interrupt()
            finally:
                if ui is not None:
                    ui.__exit__()
                pieces.stop()
    cleanup_host(STATE / "node", quiet=True)
    step("stopped; the node is torn down")
    return 0


def _kwok_demo() -> int:
    """Control plane with KWOK playing the nodes: the operator is real, no video flows."""
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
            cp.wait_for("the demo outputs to settle", lambda: _settled(cp, live=False), timeout=60)
            step(f"settled in {time.monotonic() - started:.1f}s; kubectl get streamdist -n {NAMESPACE}:")
            print(cp.kubectl("get", "streamdist", "-n", NAMESPACE).stdout)
            print("NOTE: the pods are played by KWOK (fake nodes): no video flows in this mode.")
            with _start_ui(cp) as ui:
                _footer(cp.kubeconfig, op.log, ui)
                _wait_for_interrupt()
    step("stopped")
    return 0


def _current_cluster() -> int:
    """The cluster of the current kube context: the chart with its published images."""
    kubectl = os.environ.get("KUBECTL", "kubectl")
    helm = str(bin_dir() / "helm")
    step("installing streamdist with the Helm chart into namespace streamdist")
    subprocess.run([helm, "upgrade", "--install", "streamdist", str(ROOT / "charts" / "streamdist"),
                    "-n", "streamdist", "--create-namespace", "--wait"], check=True)
    subprocess.run([kubectl, "create", "namespace", NAMESPACE], check=False)
    step(f"applying examples/demo/ to namespace {NAMESPACE}")
    subprocess.run([kubectl, "apply", "-n", NAMESPACE, "-f", str(ROOT / "examples" / "demo")], check=True)
    print("NOTE: on your cluster the demo outputs send to receiver.streamdist-demo.svc, which you provide;")
    print("      send a source to the input's endpoint shown below.")
    subprocess.run([kubectl, "get", "streamdist", "-n", NAMESPACE], check=False)
    return 0


def _install_crds(cluster: Any) -> None:
    step("installing the CRDs")
    cluster.kubectl("apply", "-f", str(ROOT / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "crd", "-l", "app.kubernetes.io/part-of=streamdist")


def _start_ui(cluster: Any) -> UiProcess:
    """The control room (streamdist ui) on loopback: read-only for anyone, as the chart's
    page ServiceAccount; a token of ServiceAccount `demo-operator` (may change the two kinds
    in the demo namespace) is written to a file to sign in with."""
    step("starting the control room (streamdist ui)")
    (STATE / "ui").mkdir(parents=True, exist_ok=True)
    kubeconfig = page_kubeconfig(cluster, STATE / "ui", "streamdist-ui")
    token = service_account(cluster.kubectl, NAMESPACE, "demo-operator", WRITE_RULES)
    token_file = STATE / "ui" / "demo-operator.token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    port = int(os.environ.get("STREAMDIST_DEMO_UI_PORT", "0"))
    return UiProcess(kubeconfig, STATE / "ui", "--anonymous-read", "--namespace", NAMESPACE, port=port).__enter__()


def _footer(kubeconfig: Path, operator_log: Path, ui: UiProcess) -> None:
    token_file = STATE / "ui" / "demo-operator.token"
    print(f"Control room: {ui.url}/   (read-only until you sign in with the token in {token_file})")
    print(f"      export KUBECONFIG={kubeconfig}   # to look around with kubectl")
    print(f"      operator log: {operator_log}")
    print("Ctrl-C (or `make demo-down`) stops everything.", flush=True)


def _settled(cluster: Any, live: bool) -> bool:
    items = cluster.kubectl_json("get", "streamoutputs", "-n", NAMESPACE)["items"]
    inputs = cluster.kubectl_json("get", "streaminputs", "-n", NAMESPACE)["items"]
    phases = [(o.get("status") or {}).get("phase") for o in items]
    wanted = ("Live",) if live else ("Live", "Waiting")
    return bool(items) and all(p == "Streaming" for p in phases) and all(
        (i.get("status") or {}).get("endpoint") and (i.get("status") or {}).get("phase") in wanted for i in inputs
    )


def _wait_for_interrupt() -> None:
    if os.environ.get("STREAMDIST_DEMO_ONESHOT"):
        return
    with contextlib.suppress(KeyboardInterrupt):
        signal.pause()


if __name__ == "__main__":
    sys.exit(down() if sys.argv[1:] == ["down"] else up())
