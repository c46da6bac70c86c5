"""Fixtures for the reliability suite: the integration suite's control plane, operator,
namespace and kubectl fixtures (one control plane per session and xdist worker), plus a
namespace that enforces the `restricted` Pod Security Standard.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from streamdist_dev import audit
from streamdist_dev.controlplane import ControlPlane, bin_dir
from streamdist_dev.kubectl import Kubectl
from streamdist_dev.operator import OperatorProcess
from tests.integration.conftest import k, ns  # noqa: F401

RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


# Requests of the operator replicas of the peering test (each has its own client
# certificate, so its own user name): who wrote what, and when.
REPLICA_USERS = ("replica-a", "replica-b")
AUDIT_POLICY = audit.policy({"level": "Metadata", "users": list(REPLICA_USERS)})


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """The integration suite's control plane (CRDs installed), with nodes that never flap
    and an audit log of the peering test's replicas (``control_plane.audit``)."""
    with ControlPlane(tmp_path_factory.mktemp("control-plane"), bin_dir(), audit_policy=AUDIT_POLICY, crds=True) as cp:
        yield cp


@pytest.fixture(scope="session")
def operator(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    """`streamdist run` as a real process; tests may kill and restart it (it is left running)."""
    op = OperatorProcess(control_plane.kubeconfig, tmp_path_factory.mktemp("operator"))
    op.start()
    yield op
    op.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.cluster)


@pytest.fixture
def rk(control_plane: ControlPlane, operator: OperatorProcess, ns: str) -> Kubectl:  # noqa: F811
    """kubectl bound to a fresh namespace that enforces `restricted` Pod Security."""
    control_plane.kubectl("label", "namespace", ns, *(f"{key}={v}" for key, v in RESTRICTED.items()))
    return Kubectl(control_plane, ns)


@pytest.fixture(scope="module")
def module_ns(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """One restricted namespace for a whole module (the hostile table shares its good set)."""
    name = "rel-" + "".join(c if c.isalnum() else "-" for c in request.module.__name__.rsplit(".", 1)[-1].lower())
    name = name.replace("_", "-")[:50].strip("-")
    control_plane.kubectl("create", "namespace", name)
    control_plane.kubectl("label", "namespace", name, *(f"{key}={v}" for key, v in RESTRICTED.items()))
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)
