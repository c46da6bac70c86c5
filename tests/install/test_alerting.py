"""From the operator's metrics to a webhook: the pinned Prometheus scrapes the
operator's real collector and evaluates the chart's rule as rendered, the pinned
Alertmanager runs the README's configuration ("Getting told"), and the alert arrives
at a webhook receiver with its labels and runbook.

No cluster: the collector reads an index the test fills (the same one the operator
fills from its watches); the output's restarts climb as in a reconnect storm. The
route's group_wait is 1 s here instead of the README's 30 s (this test is about the
path, in seconds). The same path on the real node, with everything as the README and
the chart say, is tests/e2e/test_node_streaming.py
(``test_destination_down_alert_reaches_the_webhook``): Prometheus discovers the
operator and the output pods through the chart's ServiceMonitor and PodMonitor
selectors, a destination goes down, StreamdistOutputDown arrives and then resolves.
The servers, the receiver and the configs are streamdist_dev.alerting's.
"""

from __future__ import annotations

import time
from http.server import BaseHTTPRequestHandler
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from streamdist import metrics
from streamdist.handlers.context import Indexes
from streamdist.handlers.memory import Memory
from streamdist_dev.alerting import Alerting, Webhook, chart_rules, readme_alertmanager_config, serve_http
from streamdist_dev.chart import rendered

pytestmark = pytest.mark.timeout(300)


def _collector_handler(registry: CollectorRegistry) -> type[BaseHTTPRequestHandler]:
    """GET anything: the registry's exposition, as the operator's /metrics serves it."""

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

    return Metrics


def test_reconnect_storm_reaches_the_webhook(tmp_path):
    # the operator's collector, on an index holding one output of one input
    output = {"metadata": {"name": "yt", "namespace": "live"}, "spec": {"input": "cam"},
              "status": {"phase": "Reconnecting", "reconnects": 0}}
    source = {"metadata": {"name": "cam", "namespace": "live"}, "status": {"phase": "Live", "bitrateKbps": 6000}}
    idx = Indexes(inputs={("live", "cam"): [source]}, outputs={("live", "yt"): [output]})
    registry = CollectorRegistry()
    registry.register(metrics.StatusCollector(SimpleNamespace(paused=False, idx=idx, memory=Memory())))
    target_server, target = serve_http(_collector_handler(registry))
    # scraped as the chart's ServiceMonitor does (honor_labels: the samples' namespace is the output's)
    scrape = [{"job_name": "streamdist", "honor_labels": True, "static_configs": [{"targets": [target]}]}]
    rules = chart_rules(rendered("--set", "metrics.prometheusRule.enabled=true"))
    try:
        with Webhook() as hook, Alerting(tmp_path, rules, scrape, readme_alertmanager_config(hook.url, group_wait="1s")) as alerting:
            # FFmpeg keeps failing: one restart a second, as status.reconnects shows them
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and not hook.alerts("StreamdistReconnectStorm"):
                output["status"]["reconnects"] += 1
                time.sleep(1)
            assert hook.alerts("StreamdistReconnectStorm"), (
                f"no StreamdistReconnectStorm at the webhook in 90 s; received {hook.received}\n{alerting.logs()}")
    finally:
        target_server.shutdown()

    (_, alert), *_ = hook.alerts("StreamdistReconnectStorm")
    assert alert["status"] == "firing"
    assert {k: alert["labels"][k] for k in ("namespace", "output", "input", "severity")} == {
        "namespace": "live", "output": "yt", "input": "cam", "severity": "warning"}
    assert alert["annotations"]["summary"] == "Output live/yt reconnected more than 5 times in 10 minutes"
    assert "kubectl -n live get so yt" in alert["annotations"]["runbook"]
    notification = hook.notification(alert)
    assert notification["receiver"] == "streamdist-webhook" and notification["version"] == "4"
    # nothing else fired: the input is live and the operator acts
    others = {a["labels"]["alertname"] for _, a in hook.alerts()} - {"StreamdistReconnectStorm"}
    assert not others, others
