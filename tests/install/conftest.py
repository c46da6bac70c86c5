"""Fixtures of the install tests.

The cluster tests get a control plane of their own (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, KWOK: dev/streamdist_dev/controlplane.py, the same
harness as tests/integration) rather than the integration tests' shared one, for two
reasons: the integration `operator` fixture runs the operator with admin rights for
the whole session, and a second operator acting on the same objects would hide any
permission the chart forgot; and the API server must write an audit log from its
start, so that the tests can read back every request the chart's ServiceAccount made.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from streamdist_dev import audit
from streamdist_dev.controlplane import ControlPlane, bin_dir

# The release the cluster tests install, and the namespace it goes to.
RELEASE = "sd"
NAMESPACE = "sd-system"
FULLNAME = "sd-streamdist"
SA_USER = f"system:serviceaccount:{NAMESPACE}:{FULLNAME}"
# A second release, watching one namespace only (Roles instead of a ClusterRole).
NS_RELEASE = "team"
NS_NAMESPACE = "team-system"
NS_FULLNAME = "team-streamdist"
NS_SA_USER = f"system:serviceaccount:{NS_NAMESPACE}:{NS_FULLNAME}"

AUDIT_POLICY = audit.policy(
    {"level": "Metadata", "userGroups": [f"system:serviceaccounts:{NAMESPACE}", f"system:serviceaccounts:{NS_NAMESPACE}"]}
)


@pytest.fixture(scope="session")
def install_cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A control plane for the install tests, auditing the release's ServiceAccounts."""
    state = tmp_path_factory.mktemp("install-cp")
    with ControlPlane(state / "cp", bin_dir(), audit_policy=AUDIT_POLICY) as cp:
        yield cp


def kjson(cp: ControlPlane, *args: str) -> Any:
    return json.loads(cp.kubectl(*args, "-o", "json").stdout)
