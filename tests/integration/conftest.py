"""Fixtures for the integration tests: a real control plane (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler) with KWOK fake nodes, the CRDs installed and
the operator running as a real process, once per test session (per xdist worker).

The first run builds the binaries (hack/build-bins.sh, minutes on a cold cache);
later runs reuse them. $STREAMDIST_BIN_DIR points at prebuilt ones instead.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.harness.controlplane import ControlPlane, bin_dir  # noqa: E402
from tests.harness.operator import OperatorProcess  # noqa: E402

T = TypeVar("T")
_ns_counter = itertools.count()


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A running ControlPlane; its admin kubeconfig is ``control_plane.kubeconfig``."""
    bins = bin_dir()
    # Test-only KWOK Stages (crashes, back-off, image pulls): they act only on pods a
    # test marks (annotation streamdist.test/crash, or an output name prefix "kwok-").
    stages = sorted((REPO_ROOT / "tests" / "integration" / "kwok").glob("*.yaml"))
    with ControlPlane(
        tmp_path_factory.mktemp("control-plane"),
        bins,
        kwok_stages=stages,
    ) as cp:
        cp.kubectl("apply", "-f", str(REPO_ROOT / "crds"))
        cp.kubectl("wait", "--for=condition=Established", "crd/streaminputs.streamdist.io",
                   "crd/streamoutputs.streamdist.io", "--timeout=60s")
        yield cp


@pytest.fixture(scope="session")
def operator(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    with OperatorProcess(control_plane.kubeconfig, tmp_path_factory.mktemp("operator")) as op:
        yield op
    if op.proc and op.proc.returncode not in (0, -15, None):
        print(op.logs()[-4000:])


@pytest.fixture
def ns(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards."""
    name = f"t{next(_ns_counter)}-{request.node.name.lower()}"
    name = "".join(c if c.isalnum() else "-" for c in name)[:50].strip("-")
    control_plane.kubectl("create", "namespace", name)
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


class Kubectl:
    """What a user types, bound to one namespace, with waiting helpers."""

    def __init__(self, cp: ControlPlane, namespace: str) -> None:
        self.cp = cp
        self.ns = namespace

    def __call__(self, *args: str, input: str | None = None, check: bool = True) -> Any:
        return self.cp.kubectl("-n", self.ns, *args, input=input, check=check)

    def apply_file(self, *paths: Path | str, check: bool = True) -> Any:
        files = [a for p in paths for a in ("-f", str(REPO_ROOT / p))]
        return self("apply", *files, check=check)

    def get(self, *args: str) -> Any:
        return json.loads(self("get", *args, "-o", "json").stdout)

    def items(self, kind: str, selector: str = "") -> list[dict[str, Any]]:
        args = [kind] + (["-l", selector] if selector else [])
        return self.get(*args)["items"]  # type: ignore[no-any-return]

    def status(self, kind: str, name: str) -> dict[str, Any]:
        return self.get(kind, name).get("status") or {}

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.items("events") if e["involvedObject"]["name"] == name]

    def wait(self, what: str, fn: Callable[[], T | None], timeout: float = 30.0) -> T:
        return self.cp.wait_for(what, fn, timeout=timeout, interval=0.3)

    def condition(self, kind: str, name: str, ctype: str) -> dict[str, Any] | None:
        for cond in self.status(kind, name).get("conditions") or []:
            if cond["type"] == ctype:
                return cond  # type: ignore[no-any-return]
        return None


@pytest.fixture
def k(control_plane: ControlPlane, operator: OperatorProcess, ns: str) -> Kubectl:
    return Kubectl(control_plane, ns)


def wait_gone(fn: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not fn():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.3)
