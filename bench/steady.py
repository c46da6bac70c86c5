"""2. Steady state: quiet outputs, settled, then watched for a fixed window.

Nothing changes during the window, so every status patch in it is one too many
(target: none). The operator runs as shipped (resync every 5 s) with MediaMTX health
polling off, as on any KWOK cluster: the routers are not real, so their control APIs
cannot be polled; on a real cluster a poll that finds changed input health may
rightly patch that input.
"""

from __future__ import annotations

import time
from typing import Any

from . import cluster, podpages
from .cluster import OPERATOR_USER, RssSampler, Watcher
from .common import Opts, Result, Table, counts, cpu_seconds, measured, wait_until

NAME = "steady"
TITLE = "steady state: status patches and CPU of quiet outputs"


def run(opts: Opts) -> Result:
    inputs, per, window = (1, 20, 30.0) if opts.quick else (10, 20, 60.0)
    res = measured(opts, NAME, TITLE, f"{inputs}x{per}, window {window:.0f}s",
                   lambda: measure(opts, inputs, per, window))
    fig = res.figures
    t = Table(
        f"{fig['outputs']} settled outputs ({inputs}x{per}) watched for {window:.0f} s",
        ["status patches/min (metrics)", "operator writes/min (audit)", "operator CPU s/min", "reconciles/min",
         "RSS MB", "non-watch reads/min", "target: 0 patches"],
    )  # fmt: skip
    t.add(
        fig["status_patches_per_min"],
        fig["writes_per_min"],
        fig["cpu_per_min"],
        fig["reconciles_per_min"],
        fig["rss_mb"],
        fig["reads_per_min"],
        "ok" if fig["status_patches"] == 0 else "MISSED",
    )
    t.notes.append(
        "status patches: apiserver_request_total PATCH on streamoutputs/status and streaminputs/status during the "
        "window; writes: every create/patch/update/delete by the operator's identity (audit log)"
    )
    if fig["by_what"]:
        t.notes.append("operator requests in the window: " + counts(fig["by_what"]))
    for line in fig["patch_bodies"]:
        t.notes.append(f"status patch in the window: {line}")
    t.notes.append("health polling off (KWOK: no real routers to poll); resync period 5 s as shipped")
    res.tables.append(t)
    return res


def _reconciles(port: int) -> float:
    """Reconciles the operator has run (inputs and outputs), from its own /metrics."""
    return cluster.metric_sum(cluster.operator_metrics(port), "streamdist_reconcile_duration_seconds_count")


def measure(opts: Opts, inputs: int, per: int, window: float, telemetry: bool = False) -> dict[str, Any]:
    """telemetry: the operator reads every output pod's metrics page every 10 s, as on a
    real cluster; KWOK's pods get loopback addresses (127.1.0.0/16) where one local
    server answers for all of them with the page an RTMP output's entrypoint serves
    (bench/podpages.py). Off: as on any KWOK cluster, nothing to read."""
    outputs = inputs * per
    work = opts.dir(f"{NAME}-{inputs}x{per}" + ("-telemetry" if telemetry else ""))
    pages = podpages.PodPages().start() if telemetry else None
    env = {"STREAMDIST_TELEMETRY": "true", "STREAMDIST_TELEMETRY_PORT": str(pages.port)} if pages else {}
    try:
        with cluster.scenario(work, inputs, per, podpages.POD_CIDR if pages else None, env) as sc:
            cl, op, pid, watcher = sc.cl, sc.op, sc.pid, sc.watcher
            cl.apply(sc.ns, sc.manifest())
            if not sc.settled(60 + outputs * 0.4):
                raise RuntimeError(f"only {watcher.streaming_count()}/{outputs} outputs Streaming")
            # every output's status holds its pod's telemetry before the window opens
            if pages and not wait_until(lambda: _with_link(watcher) >= outputs, 120):
                raise RuntimeError(f"only {_with_link(watcher)}/{outputs} outputs show their pod's telemetry")
            cl.wait_quiet(OPERATOR_USER, 2 * cluster.RESYNC_SECONDS, timeout=120)
            rss = RssSampler(pid)
            rss.start()
            r0 = _reconciles(op.metrics_port)
            p0 = pages.served if pages else 0
            m0, a0, c0, t0 = cl.metrics(), cl.audit.offset(), cpu_seconds(pid) or 0.0, time.monotonic()
            time.sleep(window)
            m1, a1, c1, t1 = cl.metrics(), cl.audit.offset(), cpu_seconds(pid) or 0.0, time.monotonic()
            p1 = pages.served if pages else 0
            late = pages.late if pages else 0
            r1 = _reconciles(op.metrics_port)
            rss.stop()
            watcher.stop()
            reqs = cl.audit.requests(OPERATOR_USER, a0, a1)
            streaming_after = watcher.streaming_count()
            degraded = _degraded(watcher)
    finally:
        if pages:
            pages.stop()
    minutes = (t1 - t0) / 60
    delta = m1 - m0
    patches = sum(v for (verb, r, sub), v in delta.items() if verb == "PATCH" and sub == "status"
                  and r in ("streamoutputs", "streaminputs"))  # fmt: skip
    writes = [r for r in reqs if r.write]
    reads = [r for r in reqs if not r.write and r.verb != "watch"]
    return {
        "outputs": outputs,
        "window_s": t1 - t0,
        "status_patches": patches,
        "status_patches_per_min": patches / minutes,
        "writes": len(writes),
        "writes_per_min": len(writes) / minutes,
        "reads_per_min": len(reads) / minutes,
        "cpu_s": c1 - c0,
        "cpu_per_min": (c1 - c0) / minutes,
        "reconciles_per_min": (r1 - r0) / minutes,
        "rss_mb": rss.peak_kb / 1024,
        "by_what": dict(cluster.count_by_what(reqs)),
        "patch_bodies": cluster.status_patches(reqs),
        "patch_changes": dict(cluster.patch_changes(reqs)),
        "streaming_after": streaming_after,
        "telemetry": telemetry,
        "pages_per_min": (p1 - p0) / minutes,
        "pages_late": late,
        "degraded": degraded,
    }


def _with_link(watcher: Watcher) -> int:
    with watcher.lock:
        return sum(1 for s in watcher.outputs.values() if s.status.get("link"))


def _degraded(watcher: Watcher) -> int:
    """Outputs whose Degraded condition is True (a healthy page must make none)."""
    with watcher.lock:
        return sum(1 for s in watcher.outputs.values()
                   if any(c.get("type") == "Degraded" and c.get("status") == "True"
                          for c in s.status.get("conditions") or []))  # fmt: skip
