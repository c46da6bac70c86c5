"""Fixtures for the integration tests: a real control plane (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler) with KWOK fake nodes, the CRDs installed and
the operator running as a real process, once per test session (per xdist worker).

The first run builds the binaries (hack/build-bins.sh, minutes on a cold cache);
later runs reuse them. $STREAMDIST_BIN_DIR points at prebuilt ones instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from streamdist_dev.controlplane import ControlPlane, bin_dir
from streamdist_dev.kubectl import Kubectl, namespace_name
from streamdist_dev.operator import OperatorProcess

REPO_ROOT = Path(__file__).resolve().parents[2]



@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A running ControlPlane; its admin kubeconfig is ``control_plane.kubeconfig``."""
    # Test-only KWOK Stages (crashes, back-off, image pulls): they act only on pods a
    # test marks (annotation streamdist.test/crash, or an output name prefix "kwok-").
    stages = sorted((REPO_ROOT / "tests" / "integration" / "kwok").glob("*.yaml"))
    with ControlPlane(tmp_path_factory.mktemp("control-plane"), bin_dir(), kwok_stages=stages, crds=True) as cp:
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
    name = namespace_name("t", request.node.name)
    control_plane.kubectl("create", "namespace", name)
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def k(control_plane: ControlPlane, operator: OperatorProcess, ns: str) -> Kubectl:
    return Kubectl(control_plane, ns)
