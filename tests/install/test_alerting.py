"""From the operator's metrics to a webhook: the pinned Prometheus scrapes the
operator's real collector and evaluates the chart's rule as rendered, the pinned
Alertmanager runs the README's configuration ("Getting told"), and the alert arrives
at a webhook receiver with its labels and runbook.

No cluster: the collector reads an index the test fills (the same one the operator
fills from its watches); the output's restarts climb as in a reconnect storm. The same
path on the real node, with a destination taken down, is not built (tests/e2e).
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from streamdist import metrics
from streamdist.handlers.context import Indexes
from streamdist_dev.chart import REPO, find, rendered
from tests.install.install_tools import prometheus_bin

pytestmark = pytest.mark.timeout(300)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"127.0.0.1:{server.server_address[1]}"


def readme_alertmanager_config() -> dict[str, Any]:
    """The Alertmanager configuration the README gives under "Getting told"."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("### Getting told"):]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block, "README: no yaml block under 'Getting told'"
    return yaml.safe_load(block.group(1))


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


def _ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{url} exited {proc.returncode}:\n{log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} not ready in {timeout}s:\n{log.read_text()[-3000:]}")


def test_reconnect_storm_reaches_the_webhook(tmp_path, processes):
    # the operator's collector, on an index holding one output of one input
    output = {"metadata": {"name": "yt", "namespace": "live"}, "spec": {"input": "cam"},
              "status": {"phase": "Reconnecting", "reconnects": 0}}
    source = {"metadata": {"name": "cam", "namespace": "live"}, "status": {"phase": "Live", "bitrateKbps": 6000}}
    idx = Indexes(inputs={("live", "cam"): [source]}, outputs={("live", "yt"): [output]})
    registry = CollectorRegistry()
    registry.register(metrics.StatusCollector(SimpleNamespace(paused=False, idx=idx)))

    class Metrics(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = generate_latest(registry)
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    received: list[dict[str, Any]] = []

    class Webhook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    target_server, target = _serve(Metrics)
    hook_server, hook = _serve(Webhook)
    try:
        # Alertmanager with the README's configuration, pointed at the local receiver
        # and not waiting 30 s to group
        am_config = readme_alertmanager_config()
        (route,) = am_config["route"]["routes"]
        route["group_wait"] = "1s"
        (receiver,) = [r for r in am_config["receivers"] if r["name"] == route["receiver"]]
        receiver["webhook_configs"][0]["url"] = f"http://{hook}/streamdist"
        (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(am_config))
        am_port = _free_port()
        am_log = tmp_path / "alertmanager.log"
        processes.append(subprocess.Popen(
            [str(prometheus_bin("alertmanager")), f"--config.file={tmp_path / 'alertmanager.yml'}",
             f"--storage.path={tmp_path / 'am-data'}", f"--web.listen-address=127.0.0.1:{am_port}",
             "--cluster.listen-address="],
            stdout=am_log.open("wb"), stderr=subprocess.STDOUT))
        _ready(f"http://127.0.0.1:{am_port}/-/ready", processes[-1], am_log)

        # Prometheus with the chart's rule, scraping the collector as the chart's
        # ServiceMonitor does (honor_labels: the samples' namespace is the output's)
        (rule,) = find(rendered("--set", "metrics.prometheusRule.enabled=true"), "PrometheusRule")
        (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule["spec"]))
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(tmp_path / "rules.yaml")],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
            "scrape_configs": [{"job_name": "streamdist", "honor_labels": True,
                                "static_configs": [{"targets": [target]}]}],
        }))
        prom_port = _free_port()
        prom_log = tmp_path / "prometheus.log"
        processes.append(subprocess.Popen(
            [str(prometheus_bin("prometheus")), f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'prom-data'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=prom_log.open("wb"), stderr=subprocess.STDOUT))
        _ready(f"http://127.0.0.1:{prom_port}/-/ready", processes[-1], prom_log)

        # FFmpeg keeps failing: one restart a second, as status.reconnects shows them
        deadline = time.monotonic() + 90
        alerts: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not alerts:
            output["status"]["reconnects"] += 1
            time.sleep(1)
            alerts = [a for n in received for a in n["alerts"] if a["labels"]["alertname"] == "StreamdistReconnectStorm"]
        assert alerts, (f"no StreamdistReconnectStorm at the webhook in 90 s; received {received}\n"
                        f"prometheus:\n{prom_log.read_text()[-2000:]}\nalertmanager:\n{am_log.read_text()[-2000:]}")
    finally:
        target_server.shutdown()
        hook_server.shutdown()

    (alert,) = alerts[:1]
    assert alert["status"] == "firing"
    assert {k: alert["labels"][k] for k in ("namespace", "output", "input", "severity")} == {
        "namespace": "live", "output": "yt", "input": "cam", "severity": "warning"}
    assert alert["annotations"]["summary"] == "Output live/yt reconnected more than 5 times in 10 minutes"
    assert "kubectl -n live get so yt" in alert["annotations"]["runbook"]
    notification = next(n for n in received if alert in n["alerts"])
    assert notification["receiver"] == "streamdist-webhook" and notification["version"] == "4"
    # nothing else fired: the input is live and the operator acts
    others = {a["labels"]["alertname"] for n in received for a in n["alerts"]} - {"StreamdistReconnectStorm"}
    assert not others, others
