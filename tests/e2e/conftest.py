"""Fixtures for the end-to-end tests on the local real node (dev/streamdist_dev/node.py).

One NodeCluster per session (real containerd, kubelet, kube-proxy, CoreDNS, the images
of hack/build-images.sh), the operator installed by its Helm chart from its own image
(two peering replicas as pods: one acts, one stands by; they reach the API server
through the ``kubernetes`` Service and each router's control API through its Service,
from the pod network), and receivers running as host processes on the node's IP,
which pods reach directly or through a selector-less Service.

Skipped (with the reason) where the node cannot run: not root, or containerd, runc,
the CNI plugins or iptables missing (hack/install-node-debs.sh installs them).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamdist_dev.kubectl import Kubectl, install_crds, namespace_name
from streamdist_dev.node import IMAGES, NodeCluster, node_supported
from streamdist_dev.operator_pods import OperatorPods


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeCluster]:
    why = node_supported()
    if os.environ.get("STREAMDIST_NODE", "").lower() in ("0", "off", "no", "false"):
        why = "STREAMDIST_NODE=off"
    if why and os.environ.get("STREAMDIST_REQUIRE_NODE") == "1":
        pytest.fail(f"the local node must run here (STREAMDIST_REQUIRE_NODE=1): {why}")
    if why:
        pytest.skip(f"no local node here: {why}")
    t0 = time.monotonic()
    with NodeCluster(tmp_path_factory.mktemp("node")) as nc:
        install_crds(nc)
        print(f"\n[e2e] local node up in {time.monotonic() - t0:.1f}s: {nc.timings}", flush=True)
        yield nc


@pytest.fixture(scope="session")
def operator(node: NodeCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorPods]:
    """The chart's two operator replicas, from the image the node imported (resync 2 s)."""
    pods = OperatorPods(
        node.kubectl, node.kubeconfig, IMAGES, {"resyncSeconds": 2}, workdir=tmp_path_factory.mktemp("operator")
    ).install()
    acting = node.wait_for("one operator replica acting", pods.active, 120, 1.0)
    print(f"\n[e2e] operator chart installed, both replicas Ready in {pods.install_seconds:.1f}s; {acting} acts", flush=True)
    yield pods
    print(f"[e2e] operator replicas at the end: {pods.activity()}", flush=True)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item, so fixtures know whether the test failed."""
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep


@pytest.fixture
def ns(node: NodeCluster, operator: OperatorPods, request: pytest.FixtureRequest) -> Iterator[str]:
    name = namespace_name("e", request.node.name)
    node.kubectl("create", "namespace", name)
    yield name
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        tmp = request.node.funcargs.get("tmp_path")
        print(_diagnostics(node, operator, name, tmp), flush=True)
    node.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _host_network() -> str:
    """The node's side of pod traffic: neighbours on the bridge, conntrack entries of the
    pod network, the NAT rules' packet counters (a pod that cannot reach a host-side
    receiver shows here)."""
    from streamdist_dev.node import BRIDGE, POD_CIDR

    cmds = [
        ["ip", "neigh", "show", "dev", BRIDGE],
        ["bridge", "fdb", "show", "br", BRIDGE],
        ["conntrack", "-L", "-s", POD_CIDR],
        ["iptables-save", "-c", "-t", "nat"],
    ]
    out = []
    for cmd in cmds:
        try:
            got = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            text = got.stdout + got.stderr
        except (OSError, subprocess.TimeoutExpired) as exc:
            text = str(exc)
        if cmd[0] == "iptables-save":
            text = "\n".join(ln for ln in text.splitlines() if "KUBE-SVC" in ln or "KUBE-SEP" in ln or "DNAT" in ln)
        out.append(f"----- {' '.join(cmd)}\n{_tail(text, 80)}")
    return "\n".join(out)


def _diagnostics(node: NodeCluster, operator: OperatorPods, ns: str, tmp: Path | None) -> str:
    """What a failed e2e test leaves to read in CI, where its temp dirs are gone: every
    pod's log (and its previous container's), the namespace's events, the host-side
    processes' logs (receivers, sources) and the operator's lines about this namespace."""
    out = [f"===== e2e diagnostics for namespace {ns} (load average {os.getloadavg()}) ====="]
    out.append(node.kubectl("-n", ns, "get", "streamdist,pods,svc,endpointslices", "-o", "wide", check=False).stdout)
    out.append(node.kubectl("-n", ns, "get", "events", "--sort-by=.lastTimestamp", check=False).stdout)
    pods = json.loads(node.kubectl("-n", ns, "get", "pods", "-o", "json", check=False).stdout or "{}")
    for pod in pods.get("items", []):
        pname = pod["metadata"]["name"]
        for previous in ("--previous=false", "--previous=true"):
            got = node.kubectl("-n", ns, "logs", pname, previous, "--timestamps", "--tail=25", check=False)
            out.append(f"----- kubectl logs {pname} {previous}\n{got.stdout or got.stderr}")
    if tmp is not None and (tmp / "logs").is_dir():
        for log in sorted((tmp / "logs").glob("*.log")):
            out.append(f"----- {log.name}\n{_tail(log.read_text(errors='replace'), 40)}")
    out.append(_host_network())
    mine = [ln[:400] for ln in operator.logs().splitlines() if ns in ln]
    out.append(f"----- operator ({len(mine)} lines about {ns}, last 40)\n" + "\n".join(mine[-40:]))
    return "\n".join(out)


@pytest.fixture
def kube(node: NodeCluster, ns: str) -> Kubectl:
    return Kubectl(node, ns, wait_timeout=120.0, wait_interval=0.5)
