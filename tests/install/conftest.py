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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

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

AUDIT_POLICY = f"""\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  userGroups: ["system:serviceaccounts:{NAMESPACE}", "system:serviceaccounts:{NS_NAMESPACE}"]
- level: None
"""


@dataclass(frozen=True)
class Request:
    """One request of the audit log, reduced to what RBAC decides on."""

    verb: str
    group: str
    resource: str  # "pods", "streaminputs/status"
    name: str
    namespaced: bool
    code: int


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def requests(self, user: str) -> list[Request]:
        seen: dict[str, Request] = {}
        if not self.path.exists():
            return []
        for line in self.path.read_text().splitlines():
            e = json.loads(line)
            ref = e.get("objectRef")
            if e["user"]["username"] != user or not ref:
                continue
            resource = ref.get("resource", "") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
            code = int((e.get("responseStatus") or {}).get("code") or 0)
            # A watch is logged when it starts and again when it ends: keep the last word.
            seen[e["auditID"]] = Request(e["verb"], ref.get("apiGroup", ""), resource, ref.get("name", ""),
                                         bool(ref.get("namespace")), code)
        return list(seen.values())


@pytest.fixture(scope="session")
def install_cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A control plane for the install tests, auditing the release's ServiceAccounts."""
    state = tmp_path_factory.mktemp("install-cp")
    policy = state / "audit-policy.yaml"
    policy.write_text(AUDIT_POLICY)
    audit = state / "audit.log"
    with ControlPlane(
        state / "cp",
        bin_dir(),
        apiserver_args=[f"--audit-policy-file={policy}", f"--audit-log-path={audit}", "--audit-log-maxsize=200"],
    ) as cp:
        cp.audit = AuditLog(audit)  # type: ignore[attr-defined]
        yield cp


def kjson(cp: ControlPlane, *args: str) -> Any:
    return json.loads(cp.kubectl(*args, "-o", "json").stdout)
