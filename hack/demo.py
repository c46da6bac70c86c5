"""`make demo`: a real control plane on loopback, the operator, and the demo stream set.

Until the real node exists the pods are played by KWOK: the operator, the API server,
the scheduler and the garbage collector are real, no video flows. Ctrl-C stops it all;
`make demo-down` stops a demo left running in another terminal.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness.controlplane import ControlPlane, bin_dir  # noqa: E402
from tests.harness.operator import OperatorProcess  # noqa: E402

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
    shutil.rmtree(STATE / "cluster", ignore_errors=True)  # a fresh etcd each time
    STATE.mkdir(parents=True, exist_ok=True)
    (STATE / "demo.pid").write_text(str(os.getpid()))
    step("building or reusing the control-plane binaries (hack/build-bins.sh)")
    bins = bin_dir()
    step("starting etcd, kube-apiserver, controller-manager, scheduler and KWOK on loopback")
    started = time.monotonic()
    with ControlPlane(STATE / "cluster", bins) as cp:
        step("installing the CRDs")
        cp.kubectl("apply", "-f", str(ROOT / "crds"))
        cp.kubectl("wait", "--for=condition=Established", "crd", "-l", "app.kubernetes.io/part-of=streamdist")
        step("starting the operator (streamdist run)")
        with OperatorProcess(cp.kubeconfig, STATE / "operator") as op:
            cp.kubectl("create", "namespace", NAMESPACE, check=False)
            step(f"applying examples/demo/ to namespace {NAMESPACE}")
            cp.kubectl("apply", "-n", NAMESPACE, "-f", str(ROOT / "examples" / "demo"))
            cp.wait_for("the demo outputs to settle", lambda: _settled(cp), timeout=60)
            step(f"settled in {time.monotonic() - started:.1f}s; kubectl get streamdist -n {NAMESPACE}:")
            print(cp.kubectl("get", "streamdist", "-n", NAMESPACE).stdout)
            print("NOTE: the pods are played by KWOK (fake nodes): no video flows until the real node exists.")
            print(f"      export KUBECONFIG={cp.kubeconfig}   # to look around with kubectl")
            print(f"      operator log: {op.log}")
            print("Ctrl-C (or `make demo-down`) stops everything.", flush=True)
            _wait_for_interrupt()
    (STATE / "demo.pid").unlink(missing_ok=True)
    step("stopped")
    return 0


def _settled(cp: ControlPlane) -> bool:
    items = cp.kubectl_json("get", "streamoutputs", "-n", NAMESPACE)["items"]
    inputs = cp.kubectl_json("get", "streaminputs", "-n", NAMESPACE)["items"]
    phases = [(o.get("status") or {}).get("phase") for o in items]
    return bool(items) and all(p == "Streaming" for p in phases) and all(
        (i.get("status") or {}).get("endpoint") for i in inputs
    )


def _wait_for_interrupt() -> None:
    if os.environ.get("STREAMDIST_DEMO_ONESHOT"):
        return
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(down() if sys.argv[1:] == ["down"] else up())
