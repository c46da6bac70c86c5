"""The alerting path as the tests run it: the pinned Prometheus and Alertmanager, the
chart's rule as rendered, the README's Alertmanager configuration, a webhook receiver.

- ``prometheus_bin``: the pinned promtool, prometheus or alertmanager
  (hack/build-prometheus.sh builds them into the cache).
- ``chart_rules``: the rule groups of the chart's PrometheusRule, exactly as helm
  renders them (never a copy of the rule text, never shortened ``for:``).
- ``readme_alertmanager_config``: the yaml block of the README's "Getting told", with
  its webhook URL pointed at the test's receiver.
- ``monitor_scrape_configs``: Prometheus scrape configs for the chart's ServiceMonitor
  and PodMonitor, as the prometheus-operator generates them (kubernetes_sd_configs, a
  keep rule per selector label and for the port name), so a scrape proves the chart's
  selectors select the operator and the output pods.
- ``Webhook``: an HTTP receiver on loopback keeping every notification, timed.
- ``Alerting``: Alertmanager, then Prometheus pointed at it; stopped on exit.

    with Webhook() as hook, Alerting(tmp, chart_rules(objs), scrape,
                                     readme_alertmanager_config(hook.url)) as alerting:
        hook.wait_alert("StreamdistOutputDown", 300)
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from streamdist_dev.chart import HACK, REPO, cache_root, find, versions
from streamdist_dev.procs import StartStop, free_ports, reap, spawn, tail
from streamdist_dev.wait import http_ok, wait_for

Alert = dict[str, Any]


@cache
def prometheus_bin(name: str) -> Path:
    """The pinned promtool, prometheus or alertmanager (hack/build-prometheus.sh NAME
    builds it when missing; `make deps` builds all three)."""
    key = "ALERTMANAGER_VERSION" if name == "alertmanager" else "PROMETHEUS_VERSION"
    path = cache_root() / f"{name}-{versions()[key]}" / name
    if not os.access(path, os.X_OK):
        subprocess.run(["bash", str(HACK / "build-prometheus.sh"), name], check=True,
                       stdout=subprocess.DEVNULL, timeout=1800)
    assert os.access(path, os.X_OK), f"{path} missing after hack/build-prometheus.sh {name}"
    return path


# ------------------------------------------------------------------ configuration


def chart_rules(objs: list[dict[str, Any]]) -> dict[str, Any]:
    """The rule file of the chart's PrometheusRule in ``objs`` (helm template output):
    its spec is what the prometheus-operator hands Prometheus."""
    (rule,) = find(objs, "PrometheusRule")
    return dict(rule["spec"])


def readme_alertmanager_config(webhook_url: str, **route: str) -> dict[str, Any]:
    """The Alertmanager configuration the README gives under "Getting told", its webhook
    URL replaced by ``webhook_url``; ``route`` overrides the streamdist route's settings
    (``group_wait="1s"``) where a test says why."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("### Getting told"):]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block, "README: no yaml block under 'Getting told'"
    config: dict[str, Any] = yaml.safe_load(block.group(1))
    (ours,) = config["route"]["routes"]
    ours.update(route)
    (receiver,) = [r for r in config["receivers"] if r["name"] == ours["receiver"]]
    (webhook,) = receiver["webhook_configs"]
    webhook["url"] = webhook_url
    return config


def _sanitize(label: str) -> str:
    """A Kubernetes label name as Prometheus's __meta_kubernetes_*_label_<name>."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", label)


def _selector_keeps(selector: Mapping[str, Any], kind: str) -> list[dict[str, Any]]:
    """One keep rule per matchLabels entry, as the prometheus-operator writes them (the
    chart's monitors use matchLabels only: anything else would be silently dropped)."""
    assert set(selector) <= {"matchLabels"}, f"selector not translated: {selector}"
    return [
        {"action": "keep", "regex": f"({value});true",
         "source_labels": [f"__meta_kubernetes_{kind}_label_{_sanitize(key)}",
                           f"__meta_kubernetes_{kind}_labelpresent_{_sanitize(key)}"]}
        for key, value in sorted(selector.get("matchLabels", {}).items())
    ]  # fmt: skip


def _relabelings(endpoint: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The endpoint's own relabelings, camelCase keys as Prometheus spells them."""
    names = {"sourceLabels": "source_labels", "targetLabel": "target_label"}
    return [{names.get(k, k.lower()): v for k, v in r.items()} for r in endpoint.get("relabelings", [])]


def _sd(monitor: Mapping[str, Any], role: str, kubeconfig: Path) -> dict[str, Any]:
    """kubernetes_sd_configs of a monitor: ``any`` watches every namespace, otherwise its
    matchNames (the monitor's own namespace when it says neither)."""
    selector = monitor["spec"].get("namespaceSelector", {})
    sd: dict[str, Any] = {"role": role, "kubeconfig_file": str(kubeconfig)}
    if not selector.get("any"):
        sd["namespaces"] = {"names": selector.get("matchNames") or [monitor["metadata"]["namespace"]]}
    return sd


def _job(monitor: Mapping[str, Any], endpoint: Mapping[str, Any], index: int, prefix: str,
         role: str, kubeconfig: Path) -> dict[str, Any]:
    meta = monitor["metadata"]
    return {
        "job_name": f"{prefix}/{meta['namespace']}/{meta['name']}/{index}",
        "honor_labels": bool(endpoint.get("honorLabels", False)),
        "kubernetes_sd_configs": [_sd(monitor, role, kubeconfig)],
        "scrape_interval": endpoint["interval"],
        "scrape_timeout": endpoint["scrapeTimeout"],
        "metrics_path": endpoint.get("path", "/metrics"),
    }


def _service_monitor(monitor: dict[str, Any], kubeconfig: Path) -> list[dict[str, Any]]:
    """A ServiceMonitor's jobs (EndpointSlice discovery): its Services by label, their
    port by name, the labels namespace, service, pod, container, job and endpoint."""
    jobs = []
    for i, ep in enumerate(monitor["spec"]["endpoints"]):
        slice_target = ["__meta_kubernetes_endpointslice_address_target_kind",
                        "__meta_kubernetes_endpointslice_address_target_name"]
        relabel = [
            *_selector_keeps(monitor["spec"]["selector"], "service"),
            {"action": "keep", "source_labels": ["__meta_kubernetes_endpointslice_port_name"], "regex": ep["port"]},
            {"source_labels": slice_target, "regex": "Pod;(.*)", "replacement": "${1}", "target_label": "pod"},
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
            {"action": "drop", "source_labels": ["__meta_kubernetes_pod_phase"], "regex": "(Failed|Succeeded)"},
            {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "job", "replacement": "${1}"},
            {"target_label": "endpoint", "replacement": ep["port"]},
            *_relabelings(ep),
        ]  # fmt: skip
        jobs.append(_job(monitor, ep, i, "serviceMonitor", "endpointslice", kubeconfig) | {"relabel_configs": relabel})
    return jobs


def _pod_monitor(monitor: dict[str, Any], kubeconfig: Path) -> list[dict[str, Any]]:
    """A PodMonitor's jobs (pod discovery): running pods by label, their container port
    by name, the labels namespace, container, pod, job and endpoint."""
    jobs = []
    meta = monitor["metadata"]
    for i, ep in enumerate(monitor["spec"]["podMetricsEndpoints"]):
        relabel = [
            {"action": "drop", "source_labels": ["__meta_kubernetes_pod_phase"], "regex": "(Failed|Succeeded)"},
            *_selector_keeps(monitor["spec"]["selector"], "pod"),
            {"action": "keep", "source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": ep["port"]},
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {"target_label": "job", "replacement": f"{meta['namespace']}/{meta['name']}"},
            {"target_label": "endpoint", "replacement": ep["port"]},
            *_relabelings(ep),
        ]  # fmt: skip
        jobs.append(_job(monitor, ep, i, "podMonitor", "pod", kubeconfig) | {"relabel_configs": relabel})
    return jobs


def monitor_scrape_configs(objs: list[dict[str, Any]], kubeconfig: Path) -> list[dict[str, Any]]:
    """Scrape configs for every ServiceMonitor and PodMonitor in ``objs``, discovering
    through the API server of ``kubeconfig``. The prometheus-operator is not run (it is
    not built here); this is the config it generates for such monitors (its relabelings
    in the order of its golden files), so what Prometheus scrapes is what the chart's
    selectors select."""
    return [
        *(job for m in find(objs, "ServiceMonitor") for job in _service_monitor(m, kubeconfig)),
        *(job for m in find(objs, "PodMonitor") for job in _pod_monitor(m, kubeconfig)),
    ]


# ------------------------------------------------------------------ HTTP on loopback


def serve_http(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str]:
    """``handler`` served on a free loopback port in a daemon thread: (server, host:port).
    The caller shuts the server down."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, name="serve-http", daemon=True).start()
    return server, f"127.0.0.1:{server.server_address[1]}"


class Webhook(StartStop):
    """Alertmanager's webhook receiver: keeps each notification POSTed to it with the
    monotonic time it arrived (``received``); ``url`` is where to point the config."""

    path = "/streamdist"

    def __init__(self) -> None:
        self.received: list[tuple[float, dict[str, Any]]] = []
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    def start(self) -> None:
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((time.monotonic(), json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server, address = serve_http(Handler)
        self.url = f"http://{address}{self.path}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def alerts(self, name: str | None = None, status: str | None = None, **labels: str) -> list[tuple[float, Alert]]:
        """(arrival, alert) of every alert received so far with that name, status and labels."""
        return [
            (t, a) for t, n in self.received for a in n["alerts"]
            if (name is None or a["labels"]["alertname"] == name) and (status is None or a["status"] == status)
            and all(a["labels"].get(k) == v for k, v in labels.items())
        ]  # fmt: skip

    def notification(self, alert: Alert) -> dict[str, Any]:
        """The notification that carried ``alert``."""
        return next(n for _, n in self.received if alert in n["alerts"])

    def wait_alert(self, name: str, timeout: float, status: str = "firing", **labels: str) -> tuple[float, Alert]:
        """The first (arrival, alert) of ``name`` with ``status`` and ``labels``, waiting up to ``timeout`` s."""
        wait_for(f"{name} ({status}, {labels}) at the webhook", lambda: self.alerts(name, status, **labels),
                 timeout, 0.5, detail=lambda: f"received: {[n for _, n in self.received]}")
        return self.alerts(name, status, **labels)[0]


# ------------------------------------------------------------------ the two servers


class Alerting(StartStop):
    """Alertmanager with ``am_config``, then Prometheus evaluating ``rules`` on what
    ``scrape_configs`` scrape and sending to that Alertmanager; both on loopback, their
    data and logs under ``workdir``, both stopped by stop().

    ``interval``: Prometheus's global scrape and evaluation interval (a job's own
    ``scrape_interval`` wins); the rules' ``for:`` are theirs."""

    def __init__(self, workdir: Path, rules: Mapping[str, Any], scrape_configs: Sequence[Mapping[str, Any]],
                 am_config: Mapping[str, Any], interval: str = "1s") -> None:
        self.workdir = workdir
        self.rules, self.scrape_configs, self.am_config, self.interval = rules, scrape_configs, am_config, interval
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.am_port, self.prom_port = free_ports(2)

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._start("alertmanager", self.am_port, self.am_config, [
            f"--storage.path={self.workdir / 'am-data'}", "--cluster.listen-address="])
        self._start("prometheus", self.prom_port, self._prometheus_config(), [
            f"--storage.tsdb.path={self.workdir / 'prom-data'}"])

    def _prometheus_config(self) -> dict[str, Any]:
        rules = self.workdir / "rules.yaml"
        rules.write_text(yaml.safe_dump(dict(self.rules), sort_keys=False))
        return {
            "global": {"scrape_interval": self.interval, "evaluation_interval": self.interval},
            "rule_files": [str(rules)],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{self.am_port}"]}]}]},
            "scrape_configs": [dict(c) for c in self.scrape_configs],
        }

    def _start(self, name: str, port: int, config: Mapping[str, Any], flags: list[str]) -> None:
        """Writes ``config``, starts ``name`` on 127.0.0.1:port and waits for /-/ready."""
        path = self.workdir / f"{name}.yml"
        path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
        argv = [str(prometheus_bin(name)), f"--config.file={path}", f"--web.listen-address=127.0.0.1:{port}", *flags]
        proc = self.procs[name] = spawn(argv, self.log(name))
        wait_for(f"{name} ready", lambda: http_ok(f"http://127.0.0.1:{port}/-/ready", timeout=2), 60, 0.3,
                 check=lambda: self._alive(name, proc), detail=lambda: tail(self.log(name)))

    def _alive(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited {proc.returncode}:\n{tail(self.log(name))}")

    def log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def stop(self) -> None:
        for name in ("prometheus", "alertmanager"):
            reap(self.procs.pop(name, None))

    def logs(self) -> str:
        """Both servers' last lines, for assertion messages."""
        return "\n".join(f"--- {n}\n{tail(self.log(n), 20)}" for n in ("prometheus", "alertmanager"))

    def api(self, path: str, **params: str) -> Any:
        """Prometheus's HTTP API: the ``data`` of GET /api/v1/<path>."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        url = f"http://127.0.0.1:{self.prom_port}/api/v1/{path}{query}"
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.load(r)["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector of ``promql`` now."""
        return list(self.api("query", query=promql)["result"])

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets, with their labels, health and last error."""
        return list(self.api("targets", state="active")["activeTargets"])

    def describe_targets(self) -> str:
        """One line per active target (job, pod, health, last error) and the number of
        targets discovered but dropped by relabeling, for assertion messages."""
        lines = [f"  {t['labels'].get('job')} {t['labels'].get('namespace')}/{t['labels'].get('pod')} "
                 f"{t['scrapeUrl']} {t['health']} {t.get('lastError', '')}" for t in self.targets()]
        dropped = len(self.api("targets", state="dropped")["droppedTargets"])
        return "\n".join([f"active targets ({len(lines)}), {dropped} dropped:", *lines])
