"""The confidence monitor's cost per input: ``python -m bench.confidencecost [--window S]``.

The rendered router of an RTSP-published StreamInput (operator setting
``confidence_monitor`` on) is fed the media-cost benchmark's source (1080p30 H.264
High + AAC at about 6 Mbit/s, 2 s GOP, looped with ``-c copy``: no encoding counted),
and its rendered monitor sidecar runs as the pod would run it. For one window each:
the router alone (monitor not started), then the router with the monitor reading the
readers' path. Metered with bench.procmeter (the monitor's Python and its FFmpeg child
as one tree; CPU from /proc, PSS sampled). Printed: CPU s/min and share of one core of
the monitor, the router's CPU with and without it (the monitor is one more RTSP reader),
the monitor's PSS, keyframes decoded (its thumbnail stays fresh), and the load average
before and after, since the machine is shared.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

from tests.harness import media, rendered

from streamdist import confidence

from . import mediautil
from .procmeter import TreeMeter


def _meter(roots: dict[str, int], window: float) -> TreeMeter:
    meter = TreeMeter(roots).start()
    end = time.monotonic() + window
    while time.monotonic() < end:
        time.sleep(5)
        meter.sample(memory=True)
    return meter.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.confidencecost", description=__doc__.split("\n\n")[0])
    p.add_argument("--window", type=float, default=60.0, help="seconds metered per phase (default: %(default)s)")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/streamdist-bench/confidence"))
    args = p.parse_args(argv)
    src = mediautil.source_file(60)
    mbps, desc = mediautil.probe_bitrate(src)
    settings = dataclasses.replace(rendered.SETTINGS, confidence_monitor=True)
    load_before = os.getloadavg()
    with media.ProcessGroup(logdir=args.workdir / "logs") as group:
        inp = rendered.make_input("cam", "rtsp")
        router = rendered.prepare_input(inp, args.workdir / "router", group=group, settings=settings)
        monitor_argv, router.monitor_argv = router.monitor_argv, None  # started below, after the baseline
        assert monitor_argv is not None
        router.start()
        mediautil.loop_source(src, router.ingest_url(), group)
        router.wait_ready(30)
        time.sleep(5)
        alone = _meter({"router": router.process.pid}, args.window)
        monitor = group.start("monitor", monitor_argv)
        creds = router.plan.credentials

        def running() -> bool:
            try:
                return confidence.fetch(media.LOOPBACK, router.monitor_port, creds.api_user, creds.api_password).running
            except confidence.ConfidenceError:
                return False

        media.wait_for(running, 30, what="the monitor reading the input")
        time.sleep(5)
        both = _meter({"router": router.process.pid, "monitor": monitor.popen.pid}, args.window)
        state = confidence.fetch(media.LOOPBACK, router.monitor_port, creds.api_user, creds.api_password)
        alive = monitor.alive()
    load_after = os.getloadavg()
    mon = both.per_minute(["monitor"])
    print(f"source: {desc} at {mbps:.1f} Mbit/s; window {args.window:g} s per phase; {os.cpu_count()} CPUs")
    before, after = (" ".join(f"{x:.2f}" for x in load) for load in (load_before, load_after))
    print(f"load average (1/5/15 min) before {before}, after {after}")
    print(f"monitor: {mon:.2f} CPU s/min = {mon / 60 * 100:.1f} % of one core; PSS {both.pss_mb(['monitor']):.1f} MB; "
          f"processes {both.processes(['monitor'])}; alive {alive}")  # fmt: skip
    print(f"router: {alone.per_minute(['router']):.2f} CPU s/min alone, "
          f"{both.per_minute(['router']):.2f} with the monitor")  # fmt: skip
    print(f"monitor state at the end: running={state.running} active={sorted(state.active)} "
          f"thumbnail age {state.thumbnail_age} s")  # fmt: skip
    return 0 if alive else 1


if __name__ == "__main__":
    raise SystemExit(main())
