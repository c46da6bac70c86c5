"""4. Media cost on loopback: what it costs to fan one 1080p30 ~6 Mbit/s H.264 + AAC
source out to N destinations, four ways, one after the other in one run, each for
the same window (N = 20 and 50; 3 with ``--quick``):

* ours: one output per destination, run as its Pod runs: the image's entrypoint (the
  masking wrapper) with the rendered argv, which forks FFmpeg (RTSP/TCP pull from the
  router, ``-c copy``, RTSP/TCP push to the destination);
* tee: one FFmpeg pulling once and pushing to all N with the tee muxer;
* forward: MediaMTX's own push targets (``forward:`` on the path, MediaMTX v1.20.1),
  no FFmpeg at all;
* direct: the N destinations reading MediaMTX themselves (N FFmpeg RTSP readers
  writing to ``-f null``): the readers' cost, what a pull-based design would move to
  the destinations.

Before them, the router alone (the source publishing, no reader) for the same window:
what the router costs per reader is its CPU above that, divided by its readers.

Every variant runs the rendered router MediaMTX (a fresh one each time, counted in
every variant) fed by an FFmpeg looping the pre-encoded file with ``-c copy`` (not
counted), and pushes to a receiver MediaMTX standing in for the destinations (not
counted). Each counted process is metered with every process it runs (bench.procmeter:
the wrapper's FFmpeg child included): CPU from /proc over the window, memory as PSS
averaged over the window. The receiver's byte counters prove each destination got the
stream.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamdist_dev import media

from . import mediautil
from .common import Opts, Result, Table, say
from .procmeter import TreeMeter

NAME = "mediacost"
TITLE = "media cost: one FFmpeg per output vs tee vs MediaMTX forward vs direct readers"
VARIANTS = ("ours", "tee", "forward", "direct")
ROUTER_ONLY = "router only"
# Targets of issue 20, ratios taken within one run.
TEE_TARGET = 2.5  # ours/tee CPU
FORWARD_TARGET = 1.0  # ours/forward CPU
PSS_TARGET_MB = 15.0  # PSS of one output (its wrapper and FFmpeg)
PSS_EVERY_S = 5.0  # PSS walks page tables: sample it less often than CPU


@dataclass(frozen=True)
class Size:
    outputs: int
    window: float
    warm: float


def sizes(quick: bool) -> tuple[Size, ...]:
    if quick:
        return (Size(3, 10.0, 3.0),)
    return (Size(20, 60.0, 8.0), Size(50, 60.0, 10.0))


def run(opts: Opts) -> Result:
    file_s = 10 if opts.quick else 60
    res = Result(NAME, TITLE)
    say(opts, f"{NAME}: encoding/reusing the {file_s}s source")
    src = mediautil.source_file(file_s)
    mbps, desc = mediautil.probe_bitrate(src)
    res.figures = {"source_mbps": mbps, "sizes": {}}
    for size in sizes(opts.quick):
        figs = measure_size(opts, size, src)
        res.figures["sizes"][size.outputs] = figs
        res.tables += tables(size, figs, desc, mbps)
    res.notes += NOTES
    return res


def measure_size(opts: Opts, size: Size, src: Path) -> dict[str, Any]:
    n = size.outputs
    say(opts, f"{NAME}: {ROUTER_ONLY}, {size.window:.0f}s")
    figs: dict[str, Any] = {ROUTER_ONLY: measure(opts, ROUTER_ONLY, n, size, src)}
    for variant in VARIANTS:
        say(opts, f"{NAME}: {variant} x{n}, {size.window:.0f}s")
        figs[variant] = measure(opts, variant, n, size, src)
    idle = figs[ROUTER_ONLY]["router_cpu_per_min"]
    for variant in VARIANTS:
        f = figs[variant]
        f["router_cpu_per_reader"] = (f["router_cpu_per_min"] - idle) / f["readers"]
    ours = figs["ours"]["cpu_per_min"]
    figs["ratios"] = {v: ours / figs[v]["cpu_per_min"] for v in VARIANTS[1:]}
    return figs


def tables(size: Size, figs: dict[str, Any], desc: str, mbps: float) -> list[Table]:
    n = size.outputs
    t = Table(
        f"{n} outputs of one {desc} source at {mbps:.1f} Mbit/s, {size.window:.0f} s per variant",
        ["variant", "processes", "CPU s/min", "router CPU s/min", "router CPU s/min per reader", "CPU s/min/output",
         "PSS MB", "PSS MB/output", "delivered Mbit/s/output (min)", "interruptions", "all alive"],
    )  # fmt: skip
    for v in (ROUTER_ONLY, *VARIANTS):
        f = figs[v]
        per_output = f["cpu_per_min"] / n if f["readers"] else None
        own_pss = f["own_pss_mb"] / n if f["own_pss_mb"] else None
        t.add(v, f["processes"], f["cpu_per_min"], f["router_cpu_per_min"], f.get("router_cpu_per_reader"),
              per_output, f["pss_mb"], own_pss, f["delivered_min_mbps"], f["interruptions"], f["alive"])  # fmt: skip
    r = Table(f"{n} outputs: ours against each, and the targets", ["figure", "value", "target"])
    for v, target in (("tee", TEE_TARGET), ("forward", FORWARD_TARGET), ("direct", None)):
        ratio = figs["ratios"][v]
        r.add(f"CPU ours/{v}", ratio, f"<= {target:g}: {'ok' if ratio <= target else 'MISSED'}" if target else "")
    # what no change to the outputs can beat: N FFmpeg RTSP readers that push nothing
    for v in ("tee", "forward"):
        r.add(f"floor: CPU direct/{v}", figs["direct"]["cpu_per_min"] / figs[v]["cpu_per_min"],
              "the readers alone: an output that pulls RTSP with FFmpeg costs at least this")  # fmt: skip
    pss = figs["ours"]["own_pss_mb"] / n
    r.add("PSS MB per output (ours)", pss, f"<= {PSS_TARGET_MB:g}: {'ok' if pss <= PSS_TARGET_MB else 'MISSED'}")
    return [t, r]


NOTES = [
    "CPU and PSS: the router MediaMTX plus the variant's own processes, each with every process it runs (ours: N "
    "wrappers and their FFmpeg children; tee: 1 FFmpeg; forward: none beyond the router; direct: N FFmpeg readers); "
    "the source FFmpeg and the receiver MediaMTX are not counted. PSS splits shared pages (FFmpeg's libraries) "
    "between the processes mapping them; PSS MB/output is the variant's own processes (not the router) over N",
    "router CPU per reader: the router's CPU above its CPU with no reader (row 'router only': the source publishing), "
    "divided by its readers (ours, direct: N; tee: 1; forward: its N pushes)",
    "delivered: bytes the receiver MediaMTX got per destination path during the window (direct: bytes the router "
    "sent, divided by N); interruptions: destination paths that went away or restarted their byte count within the "
    "window (their publisher reconnected), summed over the N destinations (sampled every second)",
]


def measure(opts: Opts, variant: str, n: int, size: Size, src: Path) -> dict[str, Any]:
    work = opts.dir(f"{NAME}/{n}/{variant}")
    with media.ProcessGroup(logdir=work / "logs") as g:
        rx = mediautil.start_rtsp_receiver(work / "rx", g) if variant not in ("direct", ROUTER_ONLY) else None
        dests = [rx.rtsp_url(f"out-{i}") for i in range(n)] if rx else []
        extra = {"forward": [{"dest": d} for d in dests]} if variant == "forward" else None
        router = mediautil.rtsp_router(work / "router", g, path_extra=extra)
        router.start()
        mediautil.loop_source(src, router.ingest_url(), g)
        router.wait_ready(30)
        procs = start_variant(variant, n, router, dests, g)
        wait_delivering(variant, n, router, rx, g)
        time.sleep(size.warm)
        return meter_window(variant, n, size.window, router, procs, rx)


def start_variant(
    variant: str, n: int, router: Any, dests: list[str], g: media.ProcessGroup
) -> list[media.ManagedProcess]:
    """The variant's own processes (none for forward and the router alone)."""
    if variant == "ours":
        return [mediautil.rendered_output(f"out-{i}", router.name, dests[i], router.rtsp_port, g).start()
                for i in range(n)]  # fmt: skip
    if variant == "tee":
        slaves = "|".join(f"[f=rtsp:rtsp_transport=tcp]{d}" for d in dests)
        argv = [
            "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "warning",
            "-rtsp_transport", "tcp", "-timeout", "5000000", "-i", router.read_url(),
            "-map", "0:v?", "-map", "0:a?", "-c", "copy", "-f", "tee", slaves,
        ]  # fmt: skip
        return [g.start("tee", argv)]
    if variant == "direct":
        argv = [
            "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "warning",
            "-rtsp_transport", "tcp", "-i", router.read_url(), "-map", "0", "-c", "copy", "-f", "null", "-",
        ]  # fmt: skip
        return [g.start(f"reader-{i}", argv) for i in range(n)]
    return []


def wait_delivering(variant: str, n: int, router: Any, rx: media.MediaMTX | None, g: media.ProcessGroup) -> None:
    """Every destination receives (direct: every reader is attached)."""
    if rx:
        missing = mediautil.wait_paths_ready(rx, [f"out-{i}" for i in range(n)], 30 + 2 * n)
        if missing:
            raise RuntimeError(f"{variant}: destinations not receiving: {missing}\n{g.logs()[-3000:]}")
    elif variant == "direct":
        mtx = router.mediamtx

        def attached() -> bool:
            p = mtx.path(router.name)
            return p is not None and p.reader_count >= n

        media.wait_for(attached, 30 + 2 * n, what=f"{n} readers on the router")


def meter_window(
    variant: str, n: int, window: float, router: Any, procs: list[media.ManagedProcess], rx: media.MediaMTX | None
) -> dict[str, Any]:
    roots = {"router": router.process.pid, **{f"p{i}": p.pid for i, p in enumerate(procs)}}
    meter = TreeMeter(roots).start()
    own = [name for name in roots if name != "router"]
    delivery = mediautil.Delivery(rx, [f"out-{i}" for i in range(n)]) if rx else None
    sent0 = mediautil.path_sent(router.mediamtx).get(router.name, 0)
    t_end = time.monotonic() + window
    next_pss = time.monotonic()
    while time.monotonic() < t_end:
        time.sleep(min(1.0, max(0.0, t_end - time.monotonic())))
        take_pss = time.monotonic() >= next_pss
        meter.sample(memory=take_pss)
        if delivery:
            delivery.sample()
        next_pss += PSS_EVERY_S if take_pss else 0
    meter.stop()
    sent1 = mediautil.path_sent(router.mediamtx).get(router.name, 0)
    if delivery:
        delivery.sample()
        per = [b * 8 / meter.wall / 1e6 for b in delivery.total.values()]
    elif variant == "direct":
        per = [(sent1 - sent0) * 8 / meter.wall / 1e6 / n]
    else:
        per = []
    return {
        "processes": meter.processes(),
        "members": sorted({m for u in meter.units.values() for m in u.members}),
        "readers": {"ours": n, "direct": n, "tee": 1, "forward": n}.get(variant, 0),
        "cpu_s": meter.cpu_s(),
        "cpu_per_min": meter.per_minute(),
        "router_cpu_per_min": meter.per_minute(["router"]),
        "pss_mb": meter.pss_mb(),
        "own_pss_mb": meter.pss_mb(own) if own else 0.0,
        "delivered_min_mbps": min(per) if per else None,
        "delivered_mbps": per,
        "interruptions": sum(delivery.interruptions.values()) if delivery else None,
        "alive": router.process.alive() and all(p.alive() for p in procs),
    }
