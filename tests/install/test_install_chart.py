"""The chart, the plain manifests and the images, without a cluster: lint, drift, pins,
values wired to the settings the operator reads, RBAC exactly as documented."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib

import pytest
import yaml

from streamdist import settings as sd_settings
from streamdist_dev.chart import CHART, HACK, REPO, find, helm, rendered, versions
from tests.install.install_tools import KINDS, flat_rules, health_source

pytestmark = pytest.mark.timeout(300)

VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def _sts(objs):
    (sts,) = find(objs, "StatefulSet")
    return sts


def _env(objs) -> dict[str, dict]:
    (container,) = _sts(objs)["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e for e in container["env"]}


def _rules(objs, kind, name=None, namespace=None):
    out = []
    for o in find(objs, kind, name):
        if namespace is None or o["metadata"].get("namespace") == namespace:
            out += o["rules"]
    return out


# What the operator does, verb by verb (charts/streamdist/README.md explains each).
WORKLOAD = {
    ("streamdist.io", "streaminputs", "list", ""), ("streamdist.io", "streaminputs", "watch", ""),
    ("streamdist.io", "streamoutputs", "list", ""), ("streamdist.io", "streamoutputs", "watch", ""),
    ("streamdist.io", "streaminputs/status", "patch", ""), ("streamdist.io", "streamoutputs/status", "patch", ""),
    ("", "pods", "list", ""), ("", "pods", "watch", ""), ("", "pods", "create", ""), ("", "pods", "delete", ""),
    ("apps", "deployments", "get", ""), ("apps", "deployments", "list", ""), ("apps", "deployments", "watch", ""),
    ("apps", "deployments", "create", ""), ("apps", "deployments", "patch", ""),
    ("", "configmaps", "get", ""), ("", "configmaps", "create", ""), ("", "configmaps", "patch", ""),
    ("", "services", "get", ""), ("", "services", "create", ""), ("", "services", "patch", ""),
    ("", "services", "delete", ""),
    ("", "secrets", "get", ""), ("", "secrets", "create", ""), ("", "secrets", "patch", ""),
    ("networking.k8s.io", "networkpolicies", "get", ""), ("networking.k8s.io", "networkpolicies", "create", ""),
    ("networking.k8s.io", "networkpolicies", "patch", ""),
    ("", "events", "create", ""),
}
# In the release namespace only: the installation key Secret (created once, then read by name).
KEY_ROLE = {("", "secrets", "create", ""), ("", "secrets", "get", "streamdist-key")}
KOPF_CLUSTER = {
    ("apiextensions.k8s.io", "customresourcedefinitions", "list", ""),
    ("apiextensions.k8s.io", "customresourcedefinitions", "watch", ""),
    # the thumbnail endpoint: who is asking, and may they (thumbnails.enabled, the default)
    ("authentication.k8s.io", "tokenreviews", "create", ""),
    ("authorization.k8s.io", "subjectaccessreviews", "create", ""),
}


# --- lint and drift --------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [[], ["--set", "watchNamespaces={live,studio}"], ["--set", "replicaCount=1", "--set", "peering.enabled=false"],
     ["--set", "metrics.serviceMonitor.enabled=true"],
     ["--set", "metrics.podMonitor.enabled=true", "--set", "metrics.prometheusRule.enabled=true",
      "--set", "metrics.grafanaDashboard.enabled=true"]],
    ids=["defaults", "watch-namespaces", "single-standalone", "service-monitor", "monitoring"],
)
def test_helm_lint_strict(values):
    out = helm("lint", "--strict", str(CHART), *values)
    assert "0 chart(s) failed" in out.stdout


def test_chart_crds_are_byte_copies_of_crds():
    ours = {p.name for p in (REPO / "crds").glob("*.yaml")}
    chart = {p.name for p in (CHART / "crds").glob("*.yaml")}
    assert chart == ours | {"kopf-peerings.yaml"}, "run `make manifests` to copy crds/ into the chart"
    for name in ours:
        assert (CHART / "crds" / name).read_bytes() == (REPO / "crds" / name).read_bytes(), (
            f"charts/streamdist/crds/{name} differs from crds/{name}: run `make manifests`"
        )


def test_install_yaml_is_the_chart_rendered():
    want = subprocess.run(["bash", str(HACK / "gen-install.sh"), "--stdout"], capture_output=True, text=True,
                          check=True, timeout=120).stdout
    have = (REPO / "manifests" / "install.yaml").read_text()
    assert have == want, "manifests/install.yaml drifted from charts/streamdist: run `make manifests`"


def test_install_yaml_is_complete():
    objs = [d for d in yaml.safe_load_all((REPO / "manifests" / "install.yaml").read_text()) if d]
    kinds = sorted({o["kind"] for o in objs})
    assert kinds == sorted({
        "ClusterKopfPeering", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Namespace",
        "NetworkPolicy", "PodDisruptionBudget", "Role", "RoleBinding", "Service", "ServiceAccount", "StatefulSet",
    })
    (ns,) = find(objs, "Namespace")
    assert ns["metadata"]["name"] == "streamdist"
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert {o["metadata"]["name"] for o in find(objs, "CustomResourceDefinition")} == {
        "streaminputs.streamdist.io", "streamoutputs.streamdist.io",
        "clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev",
    }
    for o in objs:
        labels = o["metadata"].get("labels") or {}
        assert labels.get("app.kubernetes.io/part-of") == "streamdist", o["metadata"]["name"]


def test_argocd_cm_holds_the_lua_scripts():
    cm = yaml.safe_load((REPO / "argocd" / "argocd-cm.yaml").read_text())
    assert cm["metadata"]["name"] == "argocd-cm"
    assert set(cm["data"]) == {f"resource.customizations.health.streamdist.io_{k}" for k in KINDS}
    for kind in KINDS:
        assert cm["data"][f"resource.customizations.health.streamdist.io_{kind}"] == health_source(
            kind
        ), "argocd/argocd-cm.yaml drifted from the Lua scripts: run `make manifests`"


# --- pins and defaults -----------------------------------------------------------------------


def test_mediamtx_image_is_the_pinned_release():
    pin = versions()["MEDIAMTX_IMAGE"]
    img = VALUES["images"]["mediamtx"]
    assert f"{img['repository']}:{img['tag']}" == pin
    assert pin == sd_settings.MEDIAMTX_IMAGE
    assert pin == f"docker.io/bluenviron/mediamtx:{versions()['MEDIAMTX_VERSION'].lstrip('v')}"


def test_images_and_versions_agree_with_the_operator():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == project["version"]
    assert chart["kubeVersion"].startswith(">=1.29")
    ffmpeg = VALUES["images"]["ffmpeg"]
    assert f"{ffmpeg['repository']}:{ffmpeg['tag']}" == sd_settings.FFMPEG_IMAGE
    env = _env(rendered())
    assert _sts(rendered())["spec"]["template"]["spec"]["containers"][0]["image"] == (
        f"localhost/streamdist/operator:{project['version']}"
    )
    assert env["STREAMDIST_FFMPEG_IMAGE"]["value"] == sd_settings.FFMPEG_IMAGE
    assert env["STREAMDIST_MEDIAMTX_IMAGE"]["value"] == versions()["MEDIAMTX_IMAGE"]


def test_reconnect_defaults_are_the_crds():
    crd = yaml.safe_load((REPO / "crds" / "streamoutputs.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    reconnect = spec["properties"]["reconnect"]["properties"]
    want = {k: reconnect[k]["default"] for k in ("delaySeconds", "maxDelaySeconds")}
    assert VALUES["reconnectDefaults"] == want
    schema = json.loads((CHART / "values.schema.json").read_text())
    pinned = schema["properties"]["reconnectDefaults"]["properties"]
    assert {k: v["const"] for k, v in pinned.items()} == want


# --- values reach the operator ---------------------------------------------------------------


def _resolved_env(objs, ordinal: int) -> dict[str, str]:
    out = {}
    for name, e in _env(objs).items():
        if "value" in e:
            out[name] = e["value"]
        else:
            path = e["valueFrom"]["fieldRef"]["fieldPath"]
            out[name] = f"x-{ordinal}" if path == "metadata.name" else str(ordinal)
    return out


def test_values_reach_the_settings_the_operator_reads():
    objs = rendered("--set", "portRange=21000-21099", "--set", "imagePullPolicy=Always",
                    "--set", "watchNamespaces={live,studio}", "--set", "resyncSeconds=7",
                    "--set", "images.ffmpeg.tag=9.9", "--set", "metrics.port=9191")
    env = _resolved_env(objs, 1)
    got = sd_settings.from_env(env)
    assert (got.port_min, got.port_max) == (21000, 21099)
    assert got.image_pull_policy == "Always"
    assert got.namespaces == ("live", "studio")
    assert got.resync_seconds == 7
    assert got.ffmpeg_image == "localhost/streamdist/ffmpeg:9.9"
    assert got.mediamtx_image == versions()["MEDIAMTX_IMAGE"]
    assert got.metrics_port == 9191
    # Every STREAMDIST_* variable the chart sets is one the operator reads.
    source = "\n".join(p.read_text() for p in (REPO / "operator" / "streamdist").rglob("*.py"))
    for name in env:
        if name.startswith("STREAMDIST_"):
            assert f'"{name}"' in source, f"the chart sets {name}, which the operator never reads"


def test_peering_gives_each_replica_its_own_priority():
    objs = rendered()
    sts = _sts(objs)
    env = _env(objs)
    assert sts["spec"]["replicas"] == 2
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    assert env["STREAMDIST_PEERING"]["value"] == "streamdist"
    assert env["STREAMDIST_PRIORITY"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.labels['apps.kubernetes.io/pod-index']"
    )
    assert env["POD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    (peering,) = find(objs, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == "streamdist"
    (pdb,) = find(objs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"]
    # Two standalone replicas would both act: refused.
    bad = helm("template", "x", str(CHART), "--set", "peering.enabled=false", check=False)
    assert bad.returncode != 0 and "needs peering.enabled" in bad.stderr
    single = rendered("--set", "replicaCount=1", "--set", "peering.enabled=false")
    assert not find(single, "ClusterKopfPeering") and not find(single, "PodDisruptionBudget")
    assert "STREAMDIST_PEERING" not in _env(single)


def test_operator_pod_is_restricted_and_probed():
    spec = _sts(rendered())["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    psc, csc = spec["securityContext"], c["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 10001
    assert psc["seccompProfile"]["type"] == "RuntimeDefault"
    assert csc == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                   "capabilities": {"drop": ["ALL"]}}
    assert not any(v.get("hostPath") for v in spec.get("volumes", []))
    assert not spec.get("hostNetwork") and not spec.get("hostPID")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"health": 8080, "metrics": 9090, "thumbnails": 8081}
    env = _env(rendered())
    assert env["STREAMDIST_LIVENESS"]["value"] == "http://0.0.0.0:8080/healthz"
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]


def test_metrics_service_and_optional_service_monitor():
    objs = rendered()
    svc, thumbs = find(objs, "Service")
    assert svc["metadata"]["name"] == "streamdist-metrics"
    assert thumbs["metadata"]["name"] == "streamdist-thumbnails" and thumbs["spec"].get("clusterIP") is None
    assert thumbs["spec"]["ports"] == [{"name": "thumbnails", "port": 8081, "targetPort": "thumbnails", "protocol": "TCP"}]
    assert thumbs["spec"]["selector"] == svc["spec"]["selector"]
    assert svc["spec"]["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}]
    assert svc["spec"]["selector"] == _sts(objs)["spec"]["selector"]["matchLabels"]
    assert _sts(objs)["spec"]["serviceName"] == "streamdist-metrics"
    assert not find(objs, "ServiceMonitor")
    (sm,) = find(rendered("--set", "metrics.serviceMonitor.enabled=true",
                          "--set", "metrics.serviceMonitor.labels.release=prom"), "ServiceMonitor")
    assert sm["spec"]["endpoints"][0]["port"] == "metrics" and sm["spec"]["endpoints"][0]["path"] == "/metrics"
    assert sm["metadata"]["labels"]["release"] == "prom"
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()


# --- RBAC ----------------------------------------------------------------------------------


def test_rbac_cluster_wide_is_exactly_what_the_operator_uses():
    objs = rendered()
    text = json.dumps([o for o in objs if o["kind"] in ("ClusterRole", "Role")])
    assert '"*"' not in text
    assert flat_rules(_rules(objs, "ClusterRole", "streamdist")) == WORKLOAD
    assert flat_rules(_rules(objs, "ClusterRole", "streamdist-kopf")) == KOPF_CLUSTER | {
        ("kopf.dev", "clusterkopfpeerings", "list", ""), ("kopf.dev", "clusterkopfpeerings", "watch", ""),
        ("kopf.dev", "clusterkopfpeerings", "patch", "streamdist"),
    }
    (key_role,) = find(objs, "Role")
    assert key_role["metadata"]["namespace"] == "streamdist" and flat_rules(key_role["rules"]) == KEY_ROLE
    (key_binding,) = find(objs, "RoleBinding")
    assert key_binding["roleRef"]["name"] == key_role["metadata"]["name"]
    for binding in find(objs, "ClusterRoleBinding"):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "streamdist", "namespace": "streamdist"}]
    (sa,) = find(objs, "ServiceAccount")
    assert sa["metadata"]["name"] == "streamdist"


def test_rbac_with_watch_namespaces_grants_nothing_namespaced_cluster_wide():
    objs = rendered("--set", "watchNamespaces={live,studio}")
    assert '"*"' not in json.dumps(objs)
    assert {o["metadata"]["name"] for o in find(objs, "ClusterRole")} == {"streamdist-kopf", "streamdist-thumbnails"}
    assert flat_rules(_rules(objs, "ClusterRole", "streamdist-thumbnails")) == {
        ("streamdist.io", "streaminputs/thumbnail", "get", "")
    }
    assert not [b for b in find(objs, "ClusterRoleBinding") + find(objs, "RoleBinding")
                if b["roleRef"]["name"] == "streamdist-thumbnails"], "the chart binds it to nobody"
    assert flat_rules(_rules(objs, "ClusterRole", "streamdist-kopf")) == KOPF_CLUSTER | {
        ("", "namespaces", "list", ""), ("", "namespaces", "watch", ""),
    }
    assert flat_rules(_rules(objs, "Role", "streamdist-key", "streamdist")) == KEY_ROLE
    for ns in ("live", "studio"):
        assert flat_rules(_rules(objs, "Role", "streamdist", ns)) == WORKLOAD | {
            ("kopf.dev", "kopfpeerings", "list", ""), ("kopf.dev", "kopfpeerings", "watch", ""),
            ("kopf.dev", "kopfpeerings", "patch", "streamdist"),
        }
        (rb,) = [b for b in find(objs, "RoleBinding") if b["metadata"]["namespace"] == ns
                 and b["metadata"]["name"] == "streamdist"]
        assert rb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "streamdist"}
        (peering,) = [p for p in find(objs, "KopfPeering") if p["metadata"]["namespace"] == ns]
        assert peering["metadata"]["name"] == "streamdist"
    assert not find(objs, "ClusterKopfPeering")
    assert _env(objs)["STREAMDIST_NAMESPACES"]["value"] == "live,studio"


def test_secrets_are_never_listed_watched_or_deleted():
    """A Secret is read by name (its metadata first: the opt-in label), and the operator
    creates and applies only its own (each input's credentials, the installation key)."""
    for args in ([], ["--set", "watchNamespaces={live}"]):
        objs = rendered(*args)
        grants = flat_rules(_rules(objs, "ClusterRole") + _rules(objs, "Role"))
        assert {g[2] for g in grants if g[1] == "secrets"} == {"get", "create", "patch"}


# --- values.schema.json --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--set", "portRange=80-90"], "/portRange"),
        (["--set", "portRange=30000-20000"], "must not be above"),
        (["--set", "reconnectDefaults.delaySeconds=5"], "/reconnectDefaults/delaySeconds"),
        (["--set", "imagePullPolicy=Sometimes"], "/imagePullPolicy"),
        (["--set", "watchNamespaces={Bad_NS}"], "/watchNamespaces/0"),
        (["--set", "replicas=2"], "replicas"),
        (["--set", "images.mediamtx.tag="], "/images/mediamtx/tag"),
        (["--set", "metrics.port=70000"], "/metrics/port"),
    ],
)
def test_schema_rejects_bad_values(args, error):
    proc = helm("template", "x", str(CHART), *args, check=False)
    assert proc.returncode != 0
    assert error in proc.stderr, proc.stderr


# --- Argo CD Applications ----------------------------------------------------------------------


def test_argocd_applications_point_at_this_repository():
    apps = {p.name: yaml.safe_load(p.read_text()) for p in (REPO / "examples" / "argocd").glob("*.yaml")}
    assert set(apps) == {"streamdist-operator.yaml", "streams-demo.yaml"}
    for app in apps.values():
        assert app["apiVersion"] == "argoproj.io/v1alpha1" and app["kind"] == "Application"
        assert app["metadata"]["namespace"] == "argocd"
        assert (REPO / app["spec"]["source"]["path"]).is_dir()
        sync = app["spec"]["syncPolicy"]
        assert "CreateNamespace=true" in sync["syncOptions"]
        assert sync["managedNamespaceMetadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    chart = apps["streamdist-operator.yaml"]
    assert chart["spec"]["source"]["path"] == "charts/streamdist"
    assert "finalizers" not in chart["metadata"], "deleting the Application must not take the CRDs and streams"
    # The chart's values in the Application pass the chart's schema.
    values = yaml.safe_dump(chart["spec"]["source"]["helm"]["valuesObject"])
    helm("template", "x", str(CHART), "-f", "-", input=values)
    demo = apps["streams-demo.yaml"]
    assert demo["spec"]["source"]["path"] == "examples/demo"
    ns = demo["spec"]["destination"]["namespace"]
    assert f".{ns}.svc" in (REPO / "examples" / "demo" / "outputs.yaml").read_text()
    (peering,) = find(rendered(), "ClusterKopfPeering")
    assert peering["metadata"]["annotations"]["argocd.argoproj.io/sync-options"] == "SkipDryRunOnMissingResource=true"


# --- the images ----------------------------------------------------------------------------------


def _stages(path):
    stages, current = [], None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word = line.split()[0].upper()
        if word == "FROM":
            current = {"from": line, "lines": []}
            stages.append(current)
        elif current is not None:
            current["lines"].append(line)
    return stages


def test_operator_dockerfile():
    path = REPO / "Dockerfile"
    text = path.read_text()
    (arg,) = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert re.fullmatch(r"docker\.io/library/python:3\.11\.\d+-slim-bookworm", arg), arg
    build, final = _stages(path)
    assert build["from"] == "FROM ${PYTHON_IMAGE} AS build" and final["from"] == "FROM ${PYTHON_IMAGE}"
    body = "\n".join(final["lines"])
    copies = [ln for ln in final["lines"] if ln.startswith("COPY")]
    assert copies == ["COPY --from=build /opt/venv /opt/venv"], "only the venv goes into the final image"
    assert "USER 10001:10001" in final["lines"]
    assert 'ENTRYPOINT ["streamdist", "run"]' in final["lines"]
    for tool in ("apt-get install", "gcc", "build-essential", "pip install"):
        assert tool not in body, f"{tool} in the final stage"
    build_body = "\n".join(build["lines"])
    assert "--only-binary=:all:" in build_body and "pip wheel --no-deps" in build_body
    assert "COPY operator/ operator/" in build["lines"]


def _build_images_function(name):
    text = (REPO / "hack" / "build-images.sh").read_text()
    body = re.search(rf"^build_{name}\(\) \{{\n(.*?)^\}}$", text, re.M | re.S)
    assert body, f"no build_{name} in hack/build-images.sh"
    return body.group(1)


def _dockerfile_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("dockerfile", REPO / "hack" / "node" / "dockerfile.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_operator_image_built_here_is_the_dockerfiles_equivalent():
    """hack/build-images.sh builds the operator image without Docker; it reads the build
    context and the run-time config from the Dockerfile itself (hack/node/dockerfile.py),
    and runs the same install and the same checks as its build stage."""
    df = _dockerfile_module()
    build, final = df.stages((REPO / "Dockerfile").read_text(), df.DEBIAN_ENV)
    assert build["name"] == "build"
    assert build["copies"][:3] == ["pyproject.toml", "README.md", "operator/"], build["copies"]
    assert final["entrypoint"] == ["streamdist", "run"] and final["user"] == "10001:10001"
    assert final["config_env"]["PATH"].startswith("/opt/venv/bin:")
    assert final["expose"] == ["8080/tcp", "9090/tcp"]
    fn = _build_images_function("operator")
    assert '"$DOCKERFILE" "$df" --copies build' in fn and 'dockerfile_config "$df"' in fn
    # the control room's assets: the Dockerfile builds them in its build stage, this
    # script on the host before copying (the same hack/build-ui.sh either way)
    if "hack/build-ui.sh" in build["copies"]:
        assert 'bash "$REPO_ROOT/hack/build-ui.sh"' in fn
    assert 'pack "$root" "localhost/streamdist/operator:$VERSION" "$out" "${CONFIG[@]}"' in fn
    # every command of the Dockerfile's build stage that installs or checks, verbatim
    (run,) = [r for r in build["runs"] if "/opt/venv" in r]
    steps = [s.strip() for s in run.split("&&")]
    wanted = [s for s in steps if s.startswith(("/opt/venv/bin/python -c", "/opt/venv/bin/streamdist"))]
    wanted += [s.replace("pip install", "pip install -q") for s in steps if "--only-binary=:all:" in s]
    assert len(wanted) == 3, steps
    for step in wanted:
        assert step in fn, f"hack/build-images.sh build_operator lacks the Dockerfile's step: {step}"
    # the same Python minor on both bases: python:3.11.x-slim-bookworm and Debian 12's python3
    assert re.search(r"python:3\.11\.\d+-slim-bookworm", (REPO / "Dockerfile").read_text())
    assert re.search(r"^SUITE=bookworm$", (REPO / "hack" / "build-images.sh").read_text(), re.M)


def test_ffmpeg_image_built_here_takes_its_config_from_its_dockerfile():
    df = _dockerfile_module()
    (stage,) = df.stages((REPO / "images" / "ffmpeg" / "Dockerfile").read_text(), df.DEBIAN_ENV)
    args = df.oci_args(stage)
    assert '--entrypoint=["streamdist-ffmpeg"]' in args and "--user=10001:10001" in args
    fn = _build_images_function("ffmpeg")
    assert 'dockerfile_config "$df"' in fn and 'local df="$REPO_ROOT/images/ffmpeg/Dockerfile"' in fn


def test_ffmpeg_image_is_debians_ffmpeg_only():
    path = REPO / "images" / "ffmpeg" / "Dockerfile"
    text = path.read_text()
    assert re.search(r"^ARG DEBIAN_IMAGE=docker\.io/library/debian:12\.\d+-slim$", text, re.M)
    (stage,) = _stages(path)
    body = "\n".join(stage["lines"])
    installs = re.findall(r"apt-get install --yes --no-install-recommends ([^\\\n&]+)", body)
    # Debian's ffmpeg, srt-live-transmit (SRT outputs), the minimal python3 and its stdlib the
    # backup switcher runs on, the CAs RTMPS outputs verify servers against, and the font of
    # the switch's slate text
    expected = ["ffmpeg", "srt-tools", "python3-minimal", "libpython3-stdlib", "ca-certificates", "fonts-dejavu-core"]
    assert [i.split() for i in installs] == [expected]
    packages = [ln for ln in (REPO / "images" / "ffmpeg" / "packages.txt").read_text().splitlines()
                if ln and not ln.startswith("#")]
    assert packages == expected
    assert "USER 10001:10001" in stage["lines"]
    assert 'ENTRYPOINT ["streamdist-ffmpeg"]' in stage["lines"]
    assert "COPY --chmod=0755 streamdist-ffmpeg /usr/local/bin/streamdist-ffmpeg" in stage["lines"]
    assert "COPY --chmod=0755 streamdist_switch.py /usr/local/lib/streamdist-switch/streamdist_switch.py" in stage["lines"]
    assert "COPY switchlib/ /usr/local/lib/streamdist-switch/switchlib/" in stage["lines"]
    assert "ln -s ../lib/streamdist-switch/streamdist_switch.py /usr/local/bin/streamdist-switch" in body
    assert "rm -rf /var/lib/apt/lists/*" in body


def test_wheel_the_dockerfile_builds_carries_the_templates(tmp_path):
    """Stage 1's `pip wheel --no-deps .` on exactly what the Dockerfile copies (build
    requirements come from PyPI, as in the image build): package data and entry point."""
    import shutil
    import sys
    import zipfile

    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "operator", src / "operator", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "--wheel-dir",
                           str(tmp_path / "wheels"), "."], cwd=src, timeout=240, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = (tmp_path / "wheels").glob("streamdist-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    templates = {p.name for p in (REPO / "operator" / "streamdist" / "templates").glob("*.j2")}
    assert {n.rsplit("/", 1)[1] for n in names if n.startswith("streamdist/templates/")} == templates
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "streamdist = streamdist.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()


def test_thumbnails_off_leaves_no_port_no_service_and_no_review_rights():
    objs = rendered("--set", "thumbnails.enabled=false", "--set", "ui.enabled=true")
    assert [s["metadata"]["name"] for s in find(objs, "Service")] == ["streamdist-metrics", "streamdist-ui"]
    assert flat_rules(_rules(objs, "ClusterRole", "streamdist-kopf")) == {
        r for r in KOPF_CLUSTER if r[0] not in ("authentication.k8s.io", "authorization.k8s.io")
    } | {("kopf.dev", "clusterkopfpeerings", "list", ""), ("kopf.dev", "clusterkopfpeerings", "watch", ""),
         ("kopf.dev", "clusterkopfpeerings", "patch", "streamdist")}  # fmt: skip
    env = {e["name"]: e.get("value") for e in _sts(objs)["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["STREAMDIST_THUMBNAIL_PORT"] == "0"
    ui = next(d for d in find(objs, "Deployment") if d["metadata"]["name"] == "streamdist-ui")
    (page,) = ui["spec"]["template"]["spec"]["containers"]
    assert not [e for e in page["env"] if e["name"].startswith("STREAMDIST_UI_OPERATOR")]
    assert "volumes" not in ui["spec"]["template"]["spec"] and "volumeMounts" not in page


def test_the_page_reaches_the_operator_with_a_token_for_its_audience_only():
    objs = rendered("--set", "ui.enabled=true")
    ui = next(d for d in find(objs, "Deployment") if d["metadata"]["name"] == "streamdist-ui")
    spec = ui["spec"]["template"]["spec"]
    (source,) = spec["volumes"][0]["projected"]["sources"]
    assert source["serviceAccountToken"]["audience"] == "streamdist-operator"
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    assert env["STREAMDIST_UI_OPERATOR_URL"] == "http://streamdist-thumbnails.streamdist.svc:8081"
    assert env["STREAMDIST_UI_OPERATOR_TOKEN_FILE"] == spec["containers"][0]["volumeMounts"][0]["mountPath"] + "/token"
    assert flat_rules(_rules(objs, "ClusterRole", "streamdist-ui")) == {
        ("streamdist.io", "streaminputs/thumbnail", "get", "")
    }
    (policy,) = [p for p in find(objs, "NetworkPolicy") if p["metadata"]["name"] == "streamdist"]
    (thumbs,) = [r for r in policy["spec"]["ingress"] if r["ports"][0]["port"] == "thumbnails"]
    assert thumbs["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "ui"
