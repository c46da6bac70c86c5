"""streamdist benchmarks: how fast, how big and how cheap, measured side by side.

=============  ================================================================
scale          control plane at 1x20, 10x20, 50x20 outputs on a real apiserver
steady         status patches and operator CPU of 200 quiet outputs
restart        kill -9 of the operator with 1,000 outputs: re-adoption time
mediacost      CPU/PSS of one FFmpeg per output vs tee, MediaMTX forward, readers
mediaprofile   where an output's and the router's CPU goes: syscalls, perf, callgrind
nodecost       the same outputs on the local real node: each pod's cgroup CPU and working set
recovery       destination down and up again: time to frames vs reconnect delay
latency        delay added by the relay, per output protocol
schedule       1,000 scheduled outputs: windows opening/closing at the same second
telemetry      1,000 settled outputs: operator CPU, RSS, status writes, pods read vs not
failover       receiver's gap at each switch between primary and backup source
confidence     the confidence monitor's CPU and memory per input at 1080p30 6 Mbit/s
=============  ================================================================

Run ``python -m bench`` (``make bench``); ``--only NAME`` for one, ``--quick`` for
the smallest sizes (what tests/bench/test_bench_smoke.py runs), ``--write-results``
to record the run in bench/RESULTS.md.
"""

from __future__ import annotations

import re
import time
import traceback
from pathlib import Path
from typing import TextIO

from . import (
    common,
    confidence,
    failover,
    latency,
    mediacost,
    mediaprofile,
    nodecost,
    recovery,
    restart,
    scale,
    schedule,
    steady,
    telemetry,
)
from .common import Opts, Result

BENCHMARKS = (scale, steady, restart, mediacost, mediaprofile, nodecost, recovery, latency, schedule, telemetry,
              failover, confidence)


def by_name(name: str):  # type: ignore[no-untyped-def]
    for mod in BENCHMARKS:
        if name == mod.NAME:
            return mod
    raise KeyError(name)


def run_one(name: str, opts: Opts) -> Result:
    """Run one benchmark; a failure becomes ``Result.error`` (with what it measured so far)."""
    mod = by_name(name)
    before = common.loadavg()
    started = common.machine()["date"]
    t0 = time.monotonic()
    try:
        res = mod.run(opts)
    except Exception as exc:
        res = Result(mod.NAME, mod.TITLE, error=f"{type(exc).__name__}: {exc}")
        common.say(opts, traceback.format_exc())
    res.seconds = time.monotonic() - t0
    res.load_before, res.load_after = before, common.loadavg()
    res.started = started
    return res


def run_benchmarks(names: list[str], opts: Opts, stream: TextIO | None = None) -> list[Result]:
    results = []
    if stream:
        m = common.machine()
        print(f"machine: {m['nproc']} x {m['cpu']}, {m['memory']}, kernel {m['kernel']}; {m['date']}", file=stream)
        print(f"mode: {'quick' if opts.quick else 'full'}; load average now {common.loadavg()}\n", file=stream)
    for name in names:
        res = run_one(name, opts)
        results.append(res)
        if stream:
            print(res.text() + "\n", file=stream, flush=True)
    return results


HEADER = """# streamdist benchmark results

Written by `python -m bench --write-results` (`make bench` prints the same tables
without writing). A run rewrites the sections of the benchmarks it ran and keeps the
others, so each section says when, how (full or `--quick`) and on what it was measured.
The machine is shared with other work: each section gives the load average before and
after; figures taken under load are noisy (CPU seconds least, latencies most).
"""


def _section(r: Result, opts: Opts) -> str:
    m = common.machine()
    head = (
        f"Measured {r.started or m['date']}, {'--quick (smallest sizes)' if opts.quick else 'full sizes'}, on "
        f"{m['nproc']} CPUs ({m['cpu']}), {m['memory']} RAM, Linux {m['kernel']}."
    )
    body = r.markdown()
    title, _, rest = body.partition("\n")
    return f"<!-- bench:{r.name} -->\n{title}\n\n{head}\n{rest}<!-- /bench:{r.name} -->\n"


def write_results(path: Path, results: list[Result], opts: Opts) -> None:
    """Replace (or add) the sections of ``results`` in ``path``; keep the others, and
    keep each hand-written ``<!-- note:NAME -->`` block after the section it is about
    (what a reader must know beside the figures: findings, floors, rejected changes)."""
    old = path.read_text() if path.exists() else ""
    sections: dict[str, str] = {}
    notes: dict[str, str] = {}
    for mod in BENCHMARKS:
        for kind, found in (("bench", sections), ("note", notes)):
            m = re.search(rf"<!-- {kind}:{mod.NAME} -->.*?<!-- /{kind}:{mod.NAME} -->\n?", old, re.S)
            if m:
                found[mod.NAME] = m.group(0)
    for r in results:
        sections[r.name] = _section(r, opts)
    parts = [HEADER]
    for mod in BENCHMARKS:
        parts += [d[mod.NAME] for d in (sections, notes) if mod.NAME in d]
    path.write_text("\n".join(parts))
