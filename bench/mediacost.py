"""4. Media cost on loopback: what it costs to fan one 1080p30 ~6 Mbit/s H.264 + AAC
source out to N destinations, four ways, one after the other in one run, each for
the same window:

* ours: one FFmpeg per output, the argv exactly as rendered for the output Pod
  (RTSP/TCP pull from the router, ``-c copy``, RTSP/TCP push to the destination);
* tee: one FFmpeg pulling once and pushing to all N with the tee muxer;
* forward: MediaMTX's own push targets (``forward:`` on the path, MediaMTX v1.20.1),
  no FFmpeg at all;
* direct: the N destinations reading MediaMTX themselves (N FFmpeg RTSP readers
  writing to ``-f null``): the readers' cost, what a pull-based design would move to
  the destinations.

Every variant runs the rendered router MediaMTX (a fresh one each time, counted in
every variant) fed by an FFmpeg looping the pre-encoded file with ``-c copy`` (not
counted), and pushes to a receiver MediaMTX standing in for the destinations (not
counted). CPU: utime+stime from /proc over the window; RSS: VmRSS averaged over the
window. The receiver's byte counters prove each destination got the stream.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.harness import media

from . import mediautil
from .common import CpuMeter, Opts, Result, Table, mem_kb, say

NAME = "mediacost"
TITLE = "media cost: one FFmpeg per output vs tee vs MediaMTX forward vs direct readers"
VARIANTS = ("ours", "tee", "forward", "direct")
TEE_TARGET = 1.5


def run(opts: Opts) -> Result:
    n, window, warm, file_s = (3, 10.0, 3.0, 10) if opts.quick else (20, 60.0, 8.0, 60)
    res = Result(NAME, TITLE)
    say(opts, f"{NAME}: encoding/reusing the {file_s}s source")
    src = mediautil.source_file(file_s)
    mbps, desc = mediautil.probe_bitrate(src)
    figs: dict[str, dict[str, Any]] = {}
    for variant in VARIANTS:
        say(opts, f"{NAME}: {variant} x{n}, {window:.0f}s")
        figs[variant] = measure(opts, variant, n, window, warm, src)
    res.figures = {"outputs": n, "window_s": window, "source_mbps": mbps, **figs}
    t = Table(
        f"{n} outputs of one {desc} source at {mbps:.1f} Mbit/s, {window:.0f} s per variant",
        ["variant", "processes", "CPU s/min", "router CPU s/min", "CPU s/min/output", "RSS MB", "RSS MB/output",
         "delivered Mbit/s/output (min)", "all alive"],
    )  # fmt: skip
    for v in VARIANTS:
        f = figs[v]
        t.add(v, f["processes"], f["cpu_per_min"], f["router_cpu_per_min"], f["cpu_per_min"] / n, f["rss_mb"],
              f["rss_mb"] / n, f["delivered_min_mbps"], f["alive"])  # fmt: skip
    ours = figs["ours"]["cpu_per_min"]
    ratios = {v: ours / figs[v]["cpu_per_min"] if figs[v]["cpu_per_min"] > 0 else float("nan") for v in VARIANTS[1:]}
    res.figures["ratios"] = ratios
    r = Table(
        "ratios of ours to each (CPU s per minute; RSS)",
        ["ratio", "CPU", "RSS", "target"],
    )
    for v in VARIANTS[1:]:
        rss_ratio = figs["ours"]["rss_mb"] / figs[v]["rss_mb"] if figs[v]["rss_mb"] else float("nan")
        target = ""
        if v == "tee":
            target = f"CPU <= {TEE_TARGET:g}x: {'ok' if ratios[v] <= TEE_TARGET else 'MISSED'}"
        r.add(f"ours/{v}", ratios[v], rss_ratio, target)
    t.notes.append(
        "CPU and RSS: the router MediaMTX plus the variant's own processes (ours: N FFmpeg; tee: 1 FFmpeg; forward: "
        "none beyond the router; direct: N FFmpeg readers); the source FFmpeg and the receiver MediaMTX are not counted"
    )
    t.notes.append(
        "delivered: bytes the receiver MediaMTX got per destination path during the window (direct: bytes the router "
        "sent, divided by N)"
    )
    res.tables += [t, r]
    return res


def measure(opts: Opts, variant: str, n: int, window: float, warm: float, src: Path) -> dict[str, Any]:
    work = opts.dir(f"{NAME}/{variant}")
    with media.ProcessGroup(logdir=work / "logs") as g:
        rx = mediautil.start_rtsp_receiver(work / "rx", g) if variant != "direct" else None
        dests = [rx.rtsp_url(f"out-{i}") for i in range(n)] if rx else []
        extra = {"forward": [{"dest": d} for d in dests]} if variant == "forward" else None
        router = mediautil.rtsp_router(work / "router", g, path_extra=extra)
        router.start()
        mediautil.loop_source(src, router.ingest_url(), g)
        router.wait_ready(30)
        procs: list[media.ManagedProcess] = []
        if variant == "ours":
            for i in range(n):
                out = mediautil.rendered_output(f"out-{i}", router.name, dests[i], router.rtsp_port, g)
                procs.append(out.start())
        elif variant == "tee":
            slaves = "|".join(f"[f=rtsp:rtsp_transport=tcp]{d}" for d in dests)
            argv = [
                "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "warning",
                "-rtsp_transport", "tcp", "-timeout", "5000000", "-i", router.read_url(),
                "-map", "0:v?", "-map", "0:a?", "-c", "copy", "-f", "tee", slaves,
            ]  # fmt: skip
            procs.append(g.start("tee", argv))
        elif variant == "direct":
            for i in range(n):
                argv = [
                    "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "warning",
                    "-rtsp_transport", "tcp", "-i", router.read_url(), "-map", "0", "-c", "copy", "-f", "null", "-",
                ]  # fmt: skip
                procs.append(g.start(f"reader-{i}", argv))
        # every destination receives (or, direct: every reader is attached)
        if rx:
            missing = mediautil.wait_paths_ready(rx, [f"out-{i}" for i in range(n)], 30 + 2 * n)
            if missing:
                raise RuntimeError(f"{variant}: destinations not receiving: {missing}\n{g.logs()[-3000:]}")
        else:
            mtx = router.mediamtx
            assert mtx is not None

            def attached() -> bool:
                p = mtx.path(router.name)
                return p is not None and p.reader_count >= n

            media.wait_for(attached, 30 + 2 * n, what=f"{n} readers on the router")
        time.sleep(warm)
        pids = [router.process.pid] + [p.pid for p in procs]
        meter = CpuMeter(pids).start()
        router_meter = CpuMeter([router.process.pid]).start()
        rx0 = mediautil.path_bytes(rx) if rx else {}
        assert router.mediamtx is not None
        sent0 = mediautil.path_sent(router.mediamtx).get(router.name, 0)
        rss_sums: list[int] = []
        t_end = time.monotonic() + window
        while time.monotonic() < t_end:
            time.sleep(min(1.0, max(0.0, t_end - time.monotonic())))
            meter.sample()
            rss_sums.append(sum(mem_kb(p).get("VmRSS", 0) for p in pids))
        meter.stop()
        router_meter.stop()
        rx1 = mediautil.path_bytes(rx) if rx else {}
        sent1 = mediautil.path_sent(router.mediamtx).get(router.name, 0)
        alive = router.process.alive() and all(p.alive() for p in procs)
        if rx:
            per = [(rx1.get(f"out-{i}", 0) - rx0.get(f"out-{i}", 0)) * 8 / meter.wall / 1e6 for i in range(n)]
        else:
            per = [(sent1 - sent0) * 8 / meter.wall / 1e6 / n]
    return {
        "processes": 1 + len(procs),
        "cpu_s": meter.total,
        "cpu_per_min": meter.per_minute(),
        "router_cpu_per_min": router_meter.per_minute(),
        "rss_mb": (sum(rss_sums) / len(rss_sums) / 1024) if rss_sums else float("nan"),
        "delivered_min_mbps": min(per) if per else 0.0,
        "delivered_mbps": per,
        "alive": alive,
    }
