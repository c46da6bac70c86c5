"""The confidence monitor's cost per input (``python -m bench --only confidence``).

The rendered router of an RTSP-published StreamInput (operator setting
``confidence_monitor`` on) is fed the media-cost benchmark's source (1080p30 H.264
High + AAC at about 6 Mbit/s, 2 s GOP, looped with ``-c copy``: no encoding counted),
and its rendered monitor sidecar runs as the pod would run it. For one window each:
the router alone (monitor not started), then the router with the monitor reading the
readers' path. Metered with bench.procmeter (the monitor's Python and its FFmpeg child
as one tree; CPU from /proc, PSS sampled). Reported: the monitor's CPU s/min and share
of one core, the router's CPU with and without it (the monitor is one more RTSP
reader), the monitor's PSS, and the thumbnail's age at the end (keyframes decoded).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from streamdist_dev import media, rendered

from . import mediautil
from .common import Opts, Result, Table, say
from .procmeter import TreeMeter

NAME = "confidence"
TITLE = "confidence monitor: CPU and memory per input at 1080p30 6 Mbit/s"
TARGET_CORE_PERCENT = 10.0  # "a small fraction of a core" (issue 17), as a figure


def _meter(roots: dict[str, int], window: float) -> TreeMeter:
    meter = TreeMeter(roots).start()
    end = time.monotonic() + window
    while time.monotonic() < end:
        time.sleep(5)
        meter.sample(memory=True)
    return meter.stop()


def run(opts: Opts) -> Result:
    res = Result(NAME, TITLE)
    window = 10.0 if opts.quick else 60.0
    src = mediautil.source_file(10 if opts.quick else 60)
    mbps, desc = mediautil.probe_bitrate(src)
    settings = dataclasses.replace(rendered.SETTINGS, confidence_monitor=True)
    workdir = opts.dir(NAME)
    with media.ProcessGroup(logdir=workdir / "logs") as group:
        inp = rendered.make_input("cam", "rtsp")
        router = rendered.prepare_input(inp, workdir / "router", group=group, settings=settings)
        monitor_argv, router.monitor_argv = router.monitor_argv, None  # started below, after the baseline
        assert monitor_argv is not None
        router.start()
        mediautil.loop_source(src, router.ingest_url(), group)
        router.wait_ready(30)
        time.sleep(5)
        say(opts, f"{NAME}: router alone, {window:g} s")
        alone = _meter({"router": router.process.pid}, window)
        monitor = group.start("monitor", monitor_argv)
        state = router.monitor_state
        media.wait_for(lambda: (s := state()) is not None and s.running, 30, what="the monitor reading the input")
        time.sleep(5)
        say(opts, f"{NAME}: router and monitor, {window:g} s")
        both = _meter({"router": router.process.pid, "monitor": monitor.popen.pid}, window)
        end = state()
        alive = monitor.alive()
    mon = both.per_minute(["monitor"])
    figs: dict[str, Any] = {
        "cpu_per_min": mon, "core_percent": mon / 60 * 100, "pss_mb": both.pss_mb(["monitor"]),
        "processes": both.processes(["monitor"]), "router_alone": alone.per_minute(["router"]),
        "router_with": both.per_minute(["router"]), "alive": alive,
        "thumbnail_age": end.thumbnail_age if end else None, "window_s": window,
    }  # fmt: skip
    t = Table(f"one input: {desc} at {mbps:.1f} Mbit/s, {window:g} s per phase",
              ["monitor CPU s/min", "% of one core", "monitor PSS MB", "processes", "router CPU s/min alone",
               "router CPU s/min with the monitor", "thumbnail age s at the end", "alive",
               f"target < {TARGET_CORE_PERCENT:g} % of a core"])  # fmt: skip
    t.add(mon, figs["core_percent"], figs["pss_mb"], figs["processes"], figs["router_alone"], figs["router_with"],
          figs["thumbnail_age"], alive, "ok" if figs["core_percent"] < TARGET_CORE_PERCENT else "MISSED")  # fmt: skip
    res.tables.append(t)
    res.figures = figs
    if not alive:
        res.error = "the monitor died"
    return res
