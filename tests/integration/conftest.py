"""Fixtures for the integration tests: a real control plane (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler) with KWOK fake nodes, one per test session.

The first run builds the binaries (hack/build-bins.sh, minutes on a cold cache);
later runs reuse them. $STREAMDIST_BIN_DIR points at prebuilt ones instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.harness.controlplane import ControlPlane, bin_dir  # noqa: E402


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory):
    """A running ControlPlane; its admin kubeconfig is ``control_plane.kubeconfig``."""
    bins = bin_dir()
    with ControlPlane(tmp_path_factory.mktemp("control-plane"), bins) as cp:
        yield cp
