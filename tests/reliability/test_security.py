"""Security: the `restricted` Pod Security Standard is really enforced by the test
apiserver, every pod the operator makes (and every rendered manifest) is admitted in a
namespace that enforces it, MediaMTX's control API stays inside the cluster and takes
only the operator's credential, and the chart runs the operator as non-root with a
read-only root fs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamdist import render, switch_render, urls
from streamdist.models import parse_input, parse_output
from streamdist.settings import Settings
from streamdist_dev.kubectl import Kubectl
from tests.reliability.support import MANAGED, pods, poll, publisher, secret, si, so, text, url_from

pytestmark = pytest.mark.timeout(600)
REPO = Path(__file__).resolve().parents[2]

INPUTS = [
    si("in-udp", protocol="udp"),
    si("in-srt", protocol="srt", passphraseSecretRef={"name": "pp", "key": "passphrase"}, service={"type": "NodePort"}),
    si("in-rtmp", protocol="rtmp", service={"type": "LoadBalancer"}),
    si("in-rtsp", protocol="rtsp", port=24554),
]
PUBLISHERS = [publisher(i["metadata"]["name"]) for i in INPUTS if "publishSecretRef" in i["spec"]]
OUTPUTS = [
    so("o-srt-caller", "in-udp", "srt://dec.example:9000?latency=200000"),
    so("o-srt-listener", "in-srt", "srt://:9100?mode=listener", service={"type": "NodePort"}),
    so("o-rtmp", "in-rtmp", "rtmp://live.example/app/key"),
    so("o-rtmps-keyed", "in-rtsp", urlFrom=url_from("yt")),
    so("o-udp", "in-udp", "udp://239.1.1.1:5000?pkt_size=1316"),
    so("o-rtsp", "in-srt", "rtsp://monitor.example:8554/program"),
]


def test_pod_security_admission_is_enforced(control_plane, rk: Kubectl):
    cmdline = (Path(control_plane.state_dir) / "kube-apiserver.cmdline").read_text()
    assert "PodSecurity" not in cmdline.partition("--disable-admission-plugins")[2].split(" ")[0]
    bad = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "root"},
           "spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": True}}]}}
    result = rk("apply", "-f", "-", input=json.dumps(bad), check=False)
    assert result.returncode != 0 and 'violates PodSecurity "restricted:latest"' in result.stderr, result.stderr


def test_every_pod_the_operator_makes_is_admitted_under_restricted(rk: Kubectl, operator):
    k = rk
    k("apply", "-f", "-", input=text(secret("pp", passphrase="a-long-srt-passphrase"), *PUBLISHERS,
                                     secret("yt", url="rtmps://a.rtmp.youtube.com:443/live2/k"), *INPUTS, *OUTPUTS))
    names = [o["metadata"]["name"] for o in OUTPUTS]
    poll("every output streaming", lambda: all(k.status("so", n).get("phase") == "Streaming" for n in names),
         timeout=90, detail=lambda: k("get", "streamdist,pods,events", check=False).stdout)
    poll("every router ready", lambda: all(k.status("si", i["metadata"]["name"]).get("phase") == "Waiting"
                                           for i in INPUTS), timeout=60)
    assert len(pods(k)) == len(OUTPUTS)
    assert len(pods(k, f"{MANAGED},app.kubernetes.io/name=mediamtx")) == len(INPUTS)
    refused = [e for e in k.items("events") if e["reason"] in ("FailedCreate", "Forbidden")]
    assert not refused, [e["message"] for e in refused]
    assert f"namespace={k.ns}" not in "".join(
        ln for ln in operator.logs().splitlines() if "status=403" in ln), "the operator was refused a write"
    # The admission check again, on what runs now: no pod would violate `restricted`.
    result = k.cp.kubectl("label", "--dry-run=server", "--overwrite", "namespace", k.ns,
                          "pod-security.kubernetes.io/enforce=restricted")
    assert "violate" not in result.stderr, result.stderr


def _rendered_pods() -> list[dict[str, Any]]:
    """Pods as the operator renders them (the router's pod template, made a Pod)."""
    settings = Settings()
    out: list[dict[str, Any]] = []
    for i, doc in enumerate(INPUTS):
        inp = parse_input({**doc, "metadata": {**doc["metadata"], "namespace": "x", "uid": "u"}})
        for m in render.render_input(inp, 20000 + i, settings):
            if m["kind"] == "Deployment":
                tpl = m["spec"]["template"]
                out.append({"apiVersion": "v1", "kind": "Pod",
                            "metadata": {"name": f"{m['metadata']['name']}-x", "labels": tpl["metadata"]["labels"]},
                            "spec": tpl["spec"]})
    secrets = {"yt": "rtmps://a.rtmp.youtube.com:443/live2/k"}
    for doc in OUTPUTS:
        o = parse_output({**doc, "metadata": {**doc["metadata"], "namespace": "x", "uid": "u"}})
        url = o.spec.url or secrets[o.spec.url_from.secret_key_ref.name]  # type: ignore[union-attr]
        for m in render.render_output(o, render.OutputPlan(destination=urls.parse(url)), settings):
            if m["kind"] == "Pod":
                m = {**m, "metadata": {k: v for k, v in m["metadata"].items() if k not in ("namespace", "ownerReferences")}}
                out.append(m)
    return out


def test_rendered_pods_pass_schema_and_restricted_admission(rk: Kubectl):
    """`kubectl apply --dry-run=server` of rendered Pods: the Pod schema and the
    `restricted` admission both judge exactly what the renderer produces."""
    docs = _rendered_pods()
    assert len(docs) == len(INPUTS) + len(OUTPUTS)
    result = rk("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump_all(docs), check=False)
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr
    assert result.stdout.count("created (server dry run)") == len(docs), result.stdout


def test_router_api_stays_inside_and_takes_only_the_operators_credential(rk: Kubectl, operator):
    """What the operator applies for each router: the API and metrics never on the ingest
    Service; the config holds only hashed credentials; every secret MediaMTX reads comes
    from the input's own credentials Secret; a NetworkPolicy guards the router."""
    k = rk
    k("apply", "-f", "-", input=text(secret("pp", passphrase="a-long-srt-passphrase"), *PUBLISHERS, *INPUTS))
    poll("routers applied", lambda: len(k.items("services", MANAGED)) == 2 * len(INPUTS))
    for inp in INPUTS:
        name = inp["metadata"]["name"]
        inside = k.get("service", name)
        assert inside["spec"]["type"] == "ClusterIP"
        # the confidence monitor's port too (on by default)
        assert {p["name"] for p in inside["spec"]["ports"]} == {"rtsp", "api", "metrics", "monitor"}
        ingest = k.get("service", f"{name}-ingest")
        assert [p["name"] for p in ingest["spec"]["ports"]] == ["ingest"], "API/metrics never on the ingest Service"
        inside_only = {render.API_PORT, render.METRICS_PORT, switch_render.MONITOR_PORT}
        assert {p["port"] for p in ingest["spec"]["ports"]}.isdisjoint(inside_only)
        creds = k.get("secret", f"{name}-credentials")
        assert creds["metadata"]["ownerReferences"][0]["name"] == name and creds["type"] == "Opaque"
        policy = k.get("networkpolicy", f"{name}-mediamtx")["spec"]
        assert policy["podSelector"]["matchLabels"]["streamdist.io/input"] == name
        router = k.get("deployment", f"{name}-mediamtx")["spec"]["template"]["spec"]["containers"][0]
        for env in router.get("env") or []:
            assert env["valueFrom"]["secretKeyRef"]["name"] == f"{name}-credentials", env
    for cm in k.items("configmaps", MANAGED):
        config = yaml.safe_load(cm["data"]["mediamtx.yml"])
        users = config["authInternalUsers"]
        assert [u["user"] for u in users[:2]] == ["streamdist", "reader"]
        for user in users:
            if user["user"] == "any":
                assert user["ips"] == ["127.0.0.1/32", "::1/128"], "a credential-less user only on the pod's loopback"
            else:
                assert user["pass"].startswith("sha256:"), "no plain password in the router config"
    srt = k.get("deployment", "in-srt-mediamtx")["spec"]["template"]["spec"]["containers"][0]
    assert {e["name"] for e in srt["env"]} >= {"MTX_PATHS_IN-SRT_SRTPUBLISHPASSPHRASE",
                                              "MTX_AUTHINTERNALUSERS_2_USER", "MTX_AUTHINTERNALUSERS_2_PASS"}
    assert k.get("secret", "in-srt-credentials")["data"]["srtPassphrase"], "the passphrase is copied for the router"


# --- the chart -------------------------------------------------------------------------------


def _chart_pod() -> dict[str, Any]:
    from streamdist_dev.chart import helm

    rendered = helm("template", "rel", str(REPO / "charts/streamdist"), "--namespace", "streamdist-system").stdout
    (sts,) = [d for d in yaml.safe_load_all(rendered) if d and d.get("kind") in ("StatefulSet", "Deployment")]
    tpl = sts["spec"]["template"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "operator", "labels": tpl["metadata"]["labels"]},
            "spec": {k: v for k, v in tpl["spec"].items() if k != "serviceAccountName"}}


def test_chart_runs_the_operator_non_root_with_a_read_only_root_fs(rk: Kubectl):
    assert (REPO / "charts/streamdist/Chart.yaml").exists(), "the chart is missing"
    pod = _chart_pod()
    spec = pod["spec"]
    psc = spec.get("securityContext") or {}
    for c in spec["containers"]:
        sc = {**psc, **(c.get("securityContext") or {})}
        assert sc.get("runAsNonRoot") is True and sc.get("runAsUser", 1) != 0, sc
        assert sc.get("readOnlyRootFilesystem") is True, sc
        assert sc.get("allowPrivilegeEscalation") is False and sc["capabilities"]["drop"] == ["ALL"], sc
    result = rk("apply", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False)
    assert result.returncode == 0 and "Warning" not in result.stderr, result.stderr
