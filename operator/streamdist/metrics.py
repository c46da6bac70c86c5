"""Prometheus metrics: read from the same live indexes the status comes from.

A custom collector instead of gauges set by handlers: nothing to keep in sync, and a
deleted output disappears from the scrape by itself. Values are what status shows
(masked, never a secret: only names, phases and counts are exported).
"""

from __future__ import annotations

import contextlib
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
# Each switch of an input's backup switch: how long its readers went without frames
# at the cut (the switch measures it; status.lastSwitch and the Event say it too).
SWITCH_GAP_SECONDS = Histogram(
    "streamdist_input_switch_gap_seconds",
    "Output time without frames at a switch of source (primary, backup, slate), as the switch measured it.",
    ["namespace", "input", "to"],
    buckets=(0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2, 5, 10),
)
SWITCH_TARGETS = ("primary", "backup", "slate")


def observe_switch_gaps(namespace: str, name: str, gaps: tuple[tuple[str, int], ...]) -> None:
    for to, gap_ms in gaps:
        SWITCH_GAP_SECONDS.labels(namespace, name, to).observe(gap_ms / 1000)


def forget_input(namespace: str, name: str) -> None:
    """A deleted input's switch-gap series go with it."""
    for to in SWITCH_TARGETS:
        with contextlib.suppress(KeyError):
            SWITCH_GAP_SECONDS.remove(namespace, name, to)


def _gauge(name: str, help_text: str, *labels: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, labels=list(labels))


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), {})


class StatusCollector(Collector):
    """Gauges and counters of every input and output, from what their status says."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Metric]:
        # With kopf peering one replica acts and the others stand by: this says which,
        # so a scrape of every replica shows the one acting (and an alert can fire on none).
        active = _gauge("streamdist_operator_active", "1 while this replica acts, 0 while it stands by for a peer.")
        active.add_metric([], 0.0 if self.ctx.paused else 1.0)
        yield active
        yield from self._outputs()
        yield from self._inputs()
        yield from self._ingest()

    def _outputs(self) -> Iterator[Metric]:
        reconnects = CounterMetricFamily("streamdist_output_reconnects", "Restarts of an output since it was created.",
                                         labels=["namespace", "output", "input"])  # fmt: skip
        # Every output's series carry its input: a dashboard row per input selects its
        # outputs by that label, and an alert names the input it belongs to.
        phase = _gauge("streamdist_output_phase", "1 for the phase an output is in.",
                       "namespace", "output", "input", "phase")  # fmt: skip
        rate = _gauge("streamdist_output_bitrate_kbps", "Measured kbit/s flowing to an output.",
                      "namespace", "output", "input")  # fmt: skip
        degraded = _gauge("streamdist_output_degraded", "1 while the output's Degraded condition is True (reason).",
                          "namespace", "output", "input", "reason")  # fmt: skip
        idx = self.ctx.idx
        for (ns, name), bodies in idx.items(idx.outputs):
            body = _first(bodies)
            status, spec = body.get("status") or {}, body.get("spec") or {}
            src = spec.get("input", "")
            reconnects.add_metric([ns, name, src], float(status.get("reconnects") or 0))
            for value in OUTPUT_PHASES:
                phase.add_metric([ns, name, src, value], 1.0 if status.get("phase") == value else 0.0)
            if status.get("bitrateKbps") is not None:
                rate.add_metric([ns, name, src], float(status["bitrateKbps"]))
            cond = _condition(status, "Degraded")
            if cond:
                degraded.add_metric([ns, name, src, cond.get("reason", "")],
                                    1.0 if cond.get("status") == "True" else 0.0)
        yield from (reconnects, phase, rate, degraded)

    def _inputs(self) -> Iterator[Metric]:
        rate = _gauge("streamdist_input_bitrate_kbps", "kbit/s the source sends to an input.", "namespace", "input")
        readers = _gauge("streamdist_input_readers", "Readers of an input.", "namespace", "input")
        phase = _gauge("streamdist_input_phase", "1 for the phase an input is in.", "namespace", "input", "phase")
        # From the conditions the confidence monitor's readings set (the monitor itself
        # answers only the operator): 1 while True, 0 while False, no sample while Unknown.
        judged = _gauge("streamdist_input_confidence", "1 while the input is Black, Frozen or Silent (condition).",
                        "namespace", "input", "condition")  # fmt: skip
        idx = self.ctx.idx
        for (ns, name), bodies in idx.items(idx.inputs):
            status = _first(bodies).get("status") or {}
            rate.add_metric([ns, name], float(status.get("bitrateKbps") or 0))
            readers.add_metric([ns, name], float(status.get("readers") or 0))
            for value in INPUT_PHASES:
                phase.add_metric([ns, name, value], 1.0 if status.get("phase") == value else 0.0)
            for kind in CONFIDENCE_CONDITIONS:
                cond = _condition(status, kind)
                if cond and cond.get("status") in ("True", "False"):
                    judged.add_metric([ns, name, kind], 1.0 if cond["status"] == "True" else 0.0)
        yield from (rate, readers, phase, judged)

    def _ingest(self) -> Iterator[Metric]:
        """What each input's router counts for its ingest, as the latest poll read it.

        Raw figures (not status's settled ones), so that rates over time are true; from
        this replica's memory, so only while it acts (a standby's memory is stale), and
        counters since the source connected (a new source starts a new count: Prometheus
        reads that as a counter reset)."""
        labels = ("namespace", "input")
        degraded = _gauge("streamdist_input_degraded", "1 while the input's Degraded condition is True (reason).",
                          *labels, "reason")  # fmt: skip
        idx = self.ctx.idx
        for (ns, name), bodies in idx.items(idx.inputs):
            cond = _condition(_first(bodies).get("status") or {}, "Degraded")
            if cond:
                degraded.add_metric([ns, name, cond.get("reason", "")], 1.0 if cond.get("status") == "True" else 0.0)
        yield degraded
        if self.ctx.paused:
            return
        fams = _ingest_families()
        for key, record in self.ctx.memory.inputs():
            reading = record.observation.ingest if record.observation else None
            if reading is not None and (key.namespace, key.name) in idx.inputs:
                _add_ingest(fams, [key.namespace, key.name], reading.sample)
        yield from fams.values()


# Each input's ingest series: (key, name, kind, help). Counters get `_total` when exposed.
INGEST_SERIES = (
    ("errors", "streamdist_input_frames_in_error", "counter", "Frames of the source the router could not process."),
    ("discarded", "streamdist_input_frames_discarded", "gauge",
     "What the router discarded toward readers that fell behind (RTSP readers: RTP packets), summed over them."),
    ("rtt", "streamdist_input_srt_rtt_milliseconds", "gauge", "SRT ingest round-trip time."),
    ("rate", "streamdist_input_srt_receive_rate_mbps", "gauge", "SRT ingest receive rate."),
    ("received", "streamdist_input_srt_packets_received", "counter", "SRT ingest packets of the stream received."),
    ("lost", "streamdist_input_srt_packets_lost", "counter", "SRT ingest packets found missing."),
    ("retransmitted", "streamdist_input_srt_packets_retransmitted", "counter", "SRT ingest packets received again."),
    ("dropped", "streamdist_input_srt_packets_dropped", "counter",
     "SRT ingest packets thrown away (too late to play, or duplicates)."),
)  # fmt: skip


def _ingest_families() -> dict[str, CounterMetricFamily | GaugeMetricFamily]:
    labels = ["namespace", "input"]
    kinds = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily}
    return {key: kinds[kind](name, text, labels=labels) for key, name, kind, text in INGEST_SERIES}


def _add_ingest(fams: dict[str, CounterMetricFamily | GaugeMetricFamily], labels: list[str], sample: Any) -> None:
    """One input's samples (an ingest.Sample) into the families."""
    fams["errors"].add_metric(labels, float(sample.frames_in_error))
    fams["discarded"].add_metric(labels, float(sample.discarded))
    link = sample.link
    if link is None:
        return
    values = {"rtt": link.rtt_ms, "rate": link.receive_rate_mbps, "received": link.received, "lost": link.lost,
              "retransmitted": link.retransmitted, "dropped": link.dropped}  # fmt: skip
    for key, value in values.items():
        fams[key].add_metric(labels, float(value))


CONFIDENCE_CONDITIONS = ("Black", "Frozen", "Silent")  # streamdist.confidence.CONDITION_TYPES


def _first(store: Any) -> dict[str, Any]:
    return next(iter(store), {})
