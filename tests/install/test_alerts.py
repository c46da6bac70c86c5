"""The chart's alerts, Grafana dashboard and PodMonitor, checked with the real promtool.

promtool is built from the Go module proxy at the pinned Prometheus version
(hack/build-prometheus.sh, hack/versions.env). What is checked:
- the PrometheusRule as the chart renders it passes `promtool check rules`;
- `promtool test rules` (tests/install/alerts-test.yaml) passes on it, every alert of
  the rule is named there, and every alert is needed: with its expression replaced by
  one that never fires, the tests fail (so no alert's test passes without it firing);
- every PromQL expression of the dashboard parses (as recording rules, through
  `promtool check rules`: Prometheus' own parser);
- every metric name the dashboard and the alerts use is one the operator
  (streamdist.metrics, scraped from its real collector) or the output pods' entrypoint
  (images/ffmpeg/streamdist-ffmpeg) exports. MediaMTX's own metrics are not among them:
  the routers serve them only to the operator (a credential and a NetworkPolicy), so no
  Prometheus scrapes them; the operator re-exports what the dashboard needs of them.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from streamdist import ingest, mediamtx, metrics, render, telemetry, urls
from streamdist.handlers.context import Indexes
from streamdist.handlers.memory import InputKey, InputObservation, Memory
from streamdist.models import parse_output
from streamdist.settings import Settings
from streamdist_dev.chart import CHART, REPO, find, rendered
from tests.install.install_tools import promtool

pytestmark = pytest.mark.timeout(600)

ALERTS = CHART / "files" / "alerts.yaml"
DASHBOARD = CHART / "files" / "dashboard.json"
ALERT_TESTS = Path(__file__).parent / "alerts-test.yaml"
ENTRYPOINT = REPO / "images" / "ffmpeg" / "streamdist-ffmpeg"
ON = ("--set", "metrics.prometheusRule.enabled=true", "--set", "metrics.grafanaDashboard.enabled=true",
      "--set", "metrics.podMonitor.enabled=true")


@pytest.fixture(scope="module")
def objs() -> list[dict[str, Any]]:
    return rendered(*ON)


@pytest.fixture(scope="module")
def rule(objs) -> dict[str, Any]:
    (prometheus_rule,) = find(objs, "PrometheusRule")
    return prometheus_rule["spec"]


@pytest.fixture
def rule_file(rule, tmp_path) -> Path:
    path = tmp_path / "streamdist-rules.yaml"
    path.write_text(yaml.safe_dump(rule, sort_keys=False))
    return path


def _alerts(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for g in spec["groups"] for r in g["rules"] if "alert" in r]


def _test_rules(rules: Path, tmp_path: Path):
    """promtool test rules of alerts-test.yaml against `rules` instead of its rule_files."""
    tests = yaml.safe_load(ALERT_TESTS.read_text())
    tests["rule_files"] = [str(rules)]
    path = tmp_path / "alerts-test.yaml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    return promtool("test", "rules", str(path))


# --- the chart renders them, each behind its toggle -----------------------------------


def test_each_toggle_renders_its_object_alone():
    kinds = {"prometheusRule": "PrometheusRule", "podMonitor": "PodMonitor", "grafanaDashboard": "ConfigMap"}
    off = rendered()
    assert not find(off, "PrometheusRule") and not find(off, "PodMonitor")
    assert not [c for c in find(off, "ConfigMap") if c["metadata"]["name"].endswith("-dashboard")]
    for toggle in kinds:
        objs = rendered("--set", f"metrics.{toggle}.enabled=true")
        for other, other_kind in kinds.items():
            if other_kind == "ConfigMap":
                got = [c for c in find(objs, "ConfigMap") if c["metadata"]["name"].endswith("-dashboard")]
            else:
                got = find(objs, other_kind)
            assert len(got) == (1 if other == toggle else 0), (toggle, other)


def test_rendered_rule_is_the_file(rule):
    # .Files.Get inserts the file as it is: Helm must not read {{ $labels.x }} itself
    assert rule == yaml.safe_load(ALERTS.read_text())


def test_dashboard_configmap_carries_the_sidecar_label(objs):
    (cm,) = [c for c in find(objs, "ConfigMap") if c["metadata"]["name"].endswith("-dashboard")]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["streamdist.json"]) == json.loads(DASHBOARD.read_text())
    objs = rendered(*ON, "--set", "metrics.grafanaDashboard.label=dash", "--set",
                    "metrics.grafanaDashboard.labelValue=yes", "--set", "metrics.grafanaDashboard.folder=Media")
    (cm,) = [c for c in find(objs, "ConfigMap") if c["metadata"]["name"].endswith("-dashboard")]
    assert cm["metadata"]["labels"]["dash"] == "yes" and "grafana_dashboard" not in cm["metadata"]["labels"]
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Media"}


def test_dashboard_has_a_row_per_input():
    dash = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    rows = [p for p in dash["panels"] if p["type"] == "row" and p.get("repeat")]
    assert [r["repeat"] for r in rows] == ["input"]
    assert variables["input"]["multi"] and variables["input"]["includeAll"]
    # every panel after the repeated row, up to the next row, selects its input
    after = dash["panels"][dash["panels"].index(rows[0]) + 1:]
    own = after[:next(i for i, p in enumerate(after) if p["type"] == "row")]
    assert own and all('input="$input"' in t["expr"] for p in own for t in p["targets"])


def test_podmonitor_selects_the_output_pods_and_their_port(objs):
    (pm,) = find(objs, "PodMonitor")
    spec = pm["spec"]
    out = parse_output({"metadata": {"name": "far", "namespace": "live", "uid": "u"},
                        "spec": {"input": "cam", "url": "srt://dec.example:9000?mode=caller"}})
    pod = render.render_output(out, render.OutputPlan(destination=urls.parse(out.spec.url)), Settings())[0]
    labels = pod["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert spec["namespaceSelector"] == {"any": True}
    ports = {p["name"]: p["containerPort"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    (endpoint,) = spec["podMetricsEndpoints"]
    assert ports[endpoint["port"]] == render.TELEMETRY_PORT
    # output and input labels come from the pod's own labels (Prometheus' sanitised names)
    relabel = {r["targetLabel"]: r["sourceLabels"] for r in endpoint["relabelings"]}
    for target, key in (("output", "streamdist.io/output"), ("input", "streamdist.io/input")):
        assert relabel[target] == ["__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)]
        assert labels[key] == {"output": "far", "input": "cam"}[target]


# --- promtool -----------------------------------------------------------------------


def test_promtool_checks_the_rendered_rule(rule, rule_file):
    proc = promtool("check", "rules", str(rule_file))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    count = sum(len(g["rules"]) for g in rule["groups"])
    assert f"SUCCESS: {count} rules found" in proc.stdout


def test_promtool_refuses_a_broken_rule(tmp_path):
    # the check above can fail: a rule that does not parse is refused
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [{"alert": "X", "expr": "rate(x[5m]"}]}]}))
    proc = promtool("check", "rules", str(path))
    assert proc.returncode != 0


def test_promtool_unit_tests_of_the_alerts_pass(rule_file, tmp_path):
    proc = _test_rules(rule_file, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_every_alert_has_test_cases_that_see_it_fire(rule):
    cases = [c for t in yaml.safe_load(ALERT_TESTS.read_text())["tests"] for c in t.get("alert_rule_test", [])]
    names = {a["alert"] for a in _alerts(rule)}
    tested = {c["alertname"] for c in cases}
    assert names == tested, f"alerts without a test case: {names - tested}; tests of no alert: {tested - names}"
    firing = {c["alertname"] for c in cases if c.get("exp_alerts")}
    assert names == firing, f"alerts never expected to fire: {names - firing}"


def test_every_alert_is_needed_by_its_tests(rule, tmp_path):
    """An alert replaced by one that never fires makes the tests fail, naming it."""
    for i, alert in enumerate(_alerts(rule)):
        broken = copy.deepcopy(rule)
        (target,) = [a for a in _alerts(broken) if a["alert"] == alert["alert"]]
        target["expr"] = "vector(0) > 1"
        path = tmp_path / f"never-{i}.yaml"
        path.write_text(yaml.safe_dump(broken, sort_keys=False))
        case = tmp_path / f"case-{i}"
        case.mkdir()
        proc = _test_rules(path, case)
        assert proc.returncode != 0, f"{alert['alert']}: the tests pass although it never fires"
        assert alert["alert"] in proc.stdout + proc.stderr


# --- the dashboard's PromQL -----------------------------------------------------------

# Grafana's own variables and the dashboard's, replaced by values PromQL accepts
GRAFANA_RANGES = re.compile(r"\$__(rate_interval|interval|range)\b")
GRAFANA_VARS = re.compile(r"\$\{?(\w+)\}?")


def dashboard_expressions() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable of the dashboard."""
    dash = json.loads(DASHBOARD.read_text())
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                out.append((f"panel {p['id']} {p['title']!r} {t['refId']}", t["expr"]))
            walk(p.get("panels", []))

    walk(dash["panels"])
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            # label_values(SELECTOR, label) is Grafana's: the selector is PromQL
            m = re.fullmatch(r"label_values\((.*),\s*\w+\)", v["query"]["query"])
            assert m, f"variable {v['name']}: {v['query']['query']}"
            out.append((f"variable {v['name']}", m.group(1)))
    return out


def as_promql(expr: str) -> str:
    return GRAFANA_VARS.sub("x", GRAFANA_RANGES.sub("5m", expr))


def test_every_dashboard_expression_parses(tmp_path):
    exprs = dashboard_expressions()
    assert len(exprs) > 10
    rules = [{"record": f"dashboard:expr_{i}", "expr": as_promql(e)} for i, (_, e) in enumerate(exprs)]
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, sort_keys=False))
    proc = promtool("check", "rules", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr + "\n" + "\n".join(f"{i}: {w}" for i, (w, _) in
                                                                              enumerate(exprs))


KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (the dashboard's and the alerts'
    forms: selectors, functions, aggregations with by/without, vector matching)."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = GROUPING.sub("", text)
    text = re.sub(r"\b(group_left|group_right)\b", "", text)
    names = set()
    for m in re.finditer(r"(?<![\w.:])[A-Za-z_:][A-Za-z0-9_:]*", text):
        if text[m.end():].lstrip().startswith("(") or m.group().lower() in KEYWORDS:
            continue  # a function or an aggregation; an operator
        names.add(m.group())
    return names


def test_metric_names_finds_every_name():
    # the comparison below can fail: the extractor sees every name, and only names
    expr = ('histogram_quantile(0.95, sum by (le, kind) (rate(a_bucket{x="y{z}"}[5m]))) / on (ns) group_left (o)'
            ' max without (pod) (b_total offset 5m) > 1e3 or absent(c:rec) unless d == bool 2')
    assert metric_names(expr) == {"a_bucket", "b_total", "c:rec", "d"}


def operator_exports() -> set[str]:
    """Every metric name the operator's real collector writes, with an input and an
    output in its index (so every family has samples), and its reconcile histogram."""
    out = {"metadata": {"name": "yt", "namespace": "live"}, "spec": {"input": "cam"},
           "status": {"phase": "Streaming", "reconnects": 1, "bitrateKbps": 6000,
                      "conditions": [{"type": "Degraded", "status": "False", "reason": "Nominal"}]}}
    inp = {"metadata": {"name": "cam", "namespace": "live"}, "status": {"phase": "Live", "bitrateKbps": 6000,
           "conditions": [{"type": "Black", "status": "True", "reason": "BlackPicture"},
                          {"type": "Degraded", "status": "True", "reason": "PacketLoss"}]}}
    idx = Indexes(inputs={("live", "cam"): [inp]}, outputs={("live", "yt"): [out]})
    registry = CollectorRegistry()
    registry.register(metrics.StatusCollector(SimpleNamespace(paused=False, idx=idx, memory=_srt_ingest("live", "cam"))))
    registry.register(metrics.RECONCILE_SECONDS)
    text = generate_latest(registry).decode()
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    for line in text.splitlines():  # a histogram without observations has no samples yet
        if line.startswith("# TYPE ") and line.endswith(" histogram"):
            base = line.split()[2]
            names |= {f"{base}_bucket", f"{base}_sum", f"{base}_count"}
    return names


def _srt_ingest(namespace: str, name: str) -> Memory:
    """A memory whose input has an SRT publisher's reading (the real router's answer, saved)."""
    fixtures = REPO / "tests" / "fixtures" / "mediamtx"
    path = mediamtx.parse_path(json.loads((fixtures / "path_get_srt_publisher_lossy.json").read_text()), 0.0)
    link = mediamtx.parse_srt_conn(json.loads((fixtures / "srtconns_get_publisher_lossy.json").read_text()))
    memory = Memory()
    reading = ingest.read(None, ingest.sample(path, [], link))
    memory.input(InputKey(namespace, name)).observation = InputObservation(None, path, ingest=reading)
    return memory


def pod_exports() -> set[str]:
    """Every metric name the output pods' entrypoint serves (its metric tables)."""
    names = set(re.findall(r"=> '(streamdist_\w+)', '(?:counter|gauge)'", ENTRYPOINT.read_text()))
    # the tables were read: the names the operator itself reads from the pods are there
    assert {telemetry.FRAMES, telemetry.BYTES, telemetry.SPEED, telemetry.SRT_RTT, telemetry.SRT_SENT} <= names
    return names


def test_dashboard_and_alerts_name_only_exported_metrics(rule):
    exported = operator_exports() | pod_exports()
    used = dashboard_expressions()
    used += [(f"alert {a['alert']}", a["expr"]) for a in _alerts(rule)]
    unknown = {}
    for where, expr in used:
        names = metric_names(as_promql(expr))
        assert names, f"{where}: no metric in {expr!r}"
        if names - exported:
            unknown[where] = sorted(names - exported)
    assert not unknown, f"metrics nobody exports: {unknown}"
