"""10. What telemetry costs the operator: the same settled outputs, steady state, with
the operator reading every output pod's metrics page every 10 s, and without.

On KWOK (bench/steady.py's measurement, run twice): off is how every KWOK benchmark
runs (no pod to read); on, every pod address answers with the page an RTMP output's
entrypoint serves for a healthy stream (bench/podpages.py), so the operator connects,
reads, parses and summarises each pod as on a real cluster. A healthy steady stream
must cause no status patch either way.
"""

from __future__ import annotations

from typing import Any

from . import steady
from .common import Opts, Result, Table, say

NAME = "telemetry"
TITLE = "telemetry's cost: operator CPU, RSS and status writes with every pod read every 10 s, vs not"


def run(opts: Opts) -> Result:
    inputs, per, window = (1, 20, 30.0) if opts.quick else (50, 20, 60.0)
    res = Result(NAME, TITLE)
    figures: dict[str, Any] = {}
    for on in (False, True):
        say(opts, f"{NAME}: {inputs}x{per}, telemetry {'on' if on else 'off'}, window {window:.0f}s")
        figures["on" if on else "off"] = steady.measure(opts, inputs, per, window, telemetry=on)
    res.figures = figures
    t = Table(
        f"{inputs * per} settled RTMP outputs ({inputs}x{per}), steady state, {window:.0f} s window",
        ["telemetry", "pod pages read/min", "late answers", "operator CPU s/min", "RSS MB", "status patches/min",
         "operator writes/min", "Degraded outputs", "target: 0 patches"],
    )  # fmt: skip
    for key in ("off", "on"):
        f = figures[key]
        t.add(key, f["pages_per_min"], f["pages_late"], f["cpu_per_min"], f["rss_mb"], f["status_patches_per_min"],
              f["writes_per_min"], f["degraded"], "ok" if f["status_patches"] == 0 else "MISSED")  # fmt: skip
    t.notes.append(
        "on: the operator reads every output pod's GET /metrics every 10 s (STREAMDIST_TELEMETRY, as on a real "
        "cluster); KWOK's pods have loopback addresses (127.1.0.0/16) where one local server answers with an RTMP "
        "output's page (the entrypoint's FFmpeg metrics, a healthy 30 fps 6 Mbit/s stream); off: nothing is read, "
        "as on every KWOK benchmark"
    )
    t.notes.append("late answers: pages the operator stopped waiting for (its deadline is 1 s) during the whole "
                   "run, settling included; a pod keeps its last record through 3 failed reads in a row")
    t.notes.append("CPU and RSS: the operator process only (the page server runs in the benchmark's process); "
                   "health polling of routers off in both (KWOK: no real routers)")
    for key in ("off", "on"):
        for line in figures[key]["patch_bodies"]:
            t.notes.append(f"status patch in the window ({key}): {line}")
    res.tables.append(t)
    return res
