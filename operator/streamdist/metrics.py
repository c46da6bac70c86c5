"""Prometheus metrics: read from the same live indexes the status comes from.

A custom collector instead of gauges set by handlers: nothing to keep in sync, and a
deleted output disappears from the scrape by itself. Values are what status shows
(masked, never a secret: only names, phases and counts are exported).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .handlers.context import Context

OUTPUT_PHASES = (
    "Pending", "Connecting", "Streaming", "Reconnecting", "Suspended", "Scheduled", "Failed", "Invalid",
)
INPUT_PHASES = ("Pending", "Waiting", "Live", "Failed")

RECONCILE_SECONDS = Histogram(
    "streamdist_reconcile_duration_seconds",
    "Time one reconcile of a StreamInput or StreamOutput took.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


class StatusCollector(Collector):
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Metric]:
        reconnects = CounterMetricFamily(
            "streamdist_output_reconnects",
            "Restarts of an output since it was created.",
            labels=["namespace", "output", "input"],
        )
        out_phase = GaugeMetricFamily(
            "streamdist_output_phase", "1 for the phase an output is in.", labels=["namespace", "output", "phase"]
        )
        out_rate = GaugeMetricFamily(
            "streamdist_output_bitrate_kbps", "Measured kbit/s flowing to an output.", labels=["namespace", "output"]
        )
        in_rate = GaugeMetricFamily(
            "streamdist_input_bitrate_kbps", "kbit/s the source sends to an input.", labels=["namespace", "input"]
        )
        in_readers = GaugeMetricFamily(
            "streamdist_input_readers", "Readers of an input.", labels=["namespace", "input"]
        )
        in_phase = GaugeMetricFamily(
            "streamdist_input_phase", "1 for the phase an input is in.", labels=["namespace", "input", "phase"]
        )
        # With kopf peering one replica acts and the others stand by: this says which,
        # so a scrape of every replica shows the one acting (and an alert can fire on none).
        active = GaugeMetricFamily(
            "streamdist_operator_active", "1 while this replica acts, 0 while it stands by for a peer."
        )
        active.add_metric([], 0.0 if self.ctx.paused else 1.0)
        idx = self.ctx.idx
        for (ns, name), bodies in idx.items(idx.outputs):
            body = _first(bodies)
            status = body.get("status") or {}
            spec = body.get("spec") or {}
            reconnects.add_metric([ns, name, spec.get("input", "")], float(status.get("reconnects") or 0))
            for phase in OUTPUT_PHASES:
                out_phase.add_metric([ns, name, phase], 1.0 if status.get("phase") == phase else 0.0)
            if status.get("bitrateKbps") is not None:
                out_rate.add_metric([ns, name], float(status["bitrateKbps"]))
        for (ns, name), bodies in idx.items(idx.inputs):
            status = _first(bodies).get("status") or {}
            in_rate.add_metric([ns, name], float(status.get("bitrateKbps") or 0))
            in_readers.add_metric([ns, name], float(status.get("readers") or 0))
            for phase in INPUT_PHASES:
                in_phase.add_metric([ns, name, phase], 1.0 if status.get("phase") == phase else 0.0)
        yield from (active, reconnects, out_phase, out_rate, in_rate, in_readers, in_phase)


def _first(store: Any) -> dict[str, Any]:
    return next(iter(store), {})
