"""The chart's control room (`ui.*` values), without a cluster: off by default; when on, a
restricted Deployment running `streamdist ui`, a Service, an optional Ingress, and rights
for the page's own ServiceAccount: the inputs' thumbnails (with `thumbnails.enabled`, the
default) and, only with anonymous reading, read the two kinds and Events, nothing else."""

from __future__ import annotations

import pytest

from streamdist_dev.chart import CHART, find, helm, rendered

pytestmark = pytest.mark.timeout(300)

READ_ONLY = {
    (g, r, v)
    for g, rs in (("streamdist.io", ("streaminputs", "streamoutputs")), ("", ("events",)))
    for r in rs
    for v in ("get", "list", "watch")
}
THUMBNAILS = {("streamdist.io", "streaminputs/thumbnail", "get")}


def _ui(objs):
    return [o for o in objs if o["metadata"]["name"].endswith("-ui")]


def _grants(role) -> set[tuple[str, str, str]]:
    return {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


def test_off_by_default():
    assert not _ui(rendered())


def test_deployment_runs_streamdist_ui_restricted():
    objs = rendered("--set", "ui.enabled=true", "--set", "thumbnails.enabled=false")
    kinds = sorted(o["kind"] for o in _ui(objs))
    assert kinds == ["Deployment", "NetworkPolicy", "Service", "ServiceAccount"], "no RBAC without a use for it"
    (policy,) = find(objs, "NetworkPolicy", "streamdist-ui")
    assert policy["spec"]["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]
    assert not find(rendered("--set", "ui.enabled=true", "--set", "networkPolicy.enabled=false"), "NetworkPolicy")
    (dep,) = find(objs, "Deployment", "streamdist-ui")
    spec = dep["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    assert c["command"] == ["streamdist", "ui"] and c["args"] == ["--port", "8000"]
    assert c["image"] == find(objs, "StatefulSet")[0]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert spec["serviceAccountName"] == "streamdist-ui"
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env == {"STREAMDIST_UI_ANONYMOUS_READ": "false", "STREAMDIST_UI_NAMESPACE": ""}
    (svc,) = find(objs, "Service", "streamdist-ui")
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["ports"][0]["targetPort"] == "http"
    assert svc["spec"]["selector"]["app.kubernetes.io/component"] == "ui"


def test_anonymous_reading_binds_read_only_rights_cluster_wide():
    objs = rendered("--set", "ui.enabled=true", "--set", "ui.anonymousRead=true")
    (role,) = find(objs, "ClusterRole", "streamdist-ui")
    assert _grants(role) == READ_ONLY | THUMBNAILS
    off = rendered("--set", "ui.enabled=true", "--set", "ui.anonymousRead=true", "--set", "thumbnails.enabled=false")
    assert _grants(find(off, "ClusterRole", "streamdist-ui")[0]) == READ_ONLY
    (binding,) = find(objs, "ClusterRoleBinding", "streamdist-ui")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "streamdist-ui", "namespace": "streamdist"}]
    assert binding["roleRef"]["name"] == "streamdist-ui"


def test_anonymous_reading_with_watch_namespaces_binds_there_only():
    objs = rendered("--set", "ui.enabled=true", "--set", "ui.anonymousRead=true", "--set", "watchNamespaces={a,b}")
    assert not find(objs, "ClusterRoleBinding", "streamdist-ui")
    bindings = find(objs, "RoleBinding", "streamdist-ui")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["a", "b"]
    assert all(b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "streamdist-ui"}
               for b in bindings)


def test_ingress_optional():
    assert not find(rendered("--set", "ui.enabled=true"), "Ingress")
    objs = rendered("--set", "ui.enabled=true", "--set", "ui.ingress.enabled=true",
                    "--set", "ui.ingress.host=streams.example.com", "--set", "ui.ingress.className=nginx")
    (ing,) = find(objs, "Ingress")
    (rule,) = ing["spec"]["rules"]
    assert rule["host"] == "streams.example.com" and ing["spec"]["ingressClassName"] == "nginx"
    assert rule["http"]["paths"][0]["backend"]["service"] == {"name": "streamdist-ui", "port": {"name": "http"}}


@pytest.mark.parametrize("arg", ["ui.enabled=yes", "ui.port=0", "ui.namespace=Not_A_Name", "ui.service.type=Ingress"])
def test_schema_rejects(arg):
    proc = helm("template", "streamdist", str(CHART), "--set", arg, check=False)
    assert proc.returncode != 0 and "values don't meet the specifications" in proc.stderr
