"""5. Where the media path's CPU goes: the ``ours`` setup of the media-cost benchmark
(the rendered router, N outputs run as their Pods run them, one 1080p30 6 Mbit/s
source), looked at three ways while it runs:

* system calls and context switches of one output's FFmpeg and of the router, per
  second and per RTP packet (``perf stat`` on syscall tracepoints: counts, not
  samples, so they hold on a busy machine); packets from MediaMTX's own counters;
* ``perf record`` CPU-clock samples of every output's FFmpeg and of the router, with
  kernel symbols: the top entries of each;
* ``valgrind --tool=callgrind`` on one more output's FFmpeg for a fixed number of
  frames: user-space instructions (repeatable on a noisy machine), split into the
  dynamic linker at start, set-up, stream probing and the relay itself.

Needs perf (Debian linux-perf) allowed to trace (root, or perf_event_paranoid <= 1)
and valgrind; hack/install-debs.sh installs both.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamdist_dev import media

from . import mediacost, mediautil
from .common import Opts, Result, Table, say
from .procmeter import process_table, tree

NAME = "mediaprofile"
TITLE = "where the media path's CPU goes: system calls, CPU samples, instructions"
SYSCALLS = ("poll", "recvfrom", "sendto", "read", "write", "futex", "epoll_pwait", "nanosleep")
TOP = 12


@dataclass(frozen=True)
class Size:
    outputs: int
    window: float
    frames: int  # callgrind: video frames the extra output relays


def size(quick: bool) -> Size:
    return Size(3, 5.0, 60) if quick else Size(20, 20.0, 600)


def run(opts: Opts) -> Result:
    for tool in ("perf", "valgrind", "callgrind_annotate"):
        if not _which(tool):
            raise FileNotFoundError(f"{tool} not installed (hack/install-debs.sh installs linux-perf and valgrind)")
    probe = subprocess.run(["perf", "stat", "-e", "raw_syscalls:sys_enter", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        raise PermissionError(f"perf may not trace here (root, or perf_event_paranoid <= 1): {probe.stderr[-500:]}")
    sz = size(opts.quick)
    res = Result(NAME, TITLE)
    src = mediautil.source_file(10 if opts.quick else 60)
    work = opts.dir(NAME)
    with media.ProcessGroup(logdir=work / "logs") as g:
        rx = mediautil.start_rtsp_receiver(work / "rx", g)
        router = mediautil.rtsp_router(work / "router", g)
        router.start()
        mediautil.loop_source(src, router.ingest_url(), g)
        router.wait_ready(30)
        dests = [rx.rtsp_url(f"out-{i}") for i in range(sz.outputs + 1)]
        outs = mediacost.start_variant("ours", sz.outputs, router, dests, g)
        mediacost.wait_delivering("ours", sz.outputs, router, rx, g)
        time.sleep(3)
        ffmpegs = [_ffmpeg_of(p.pid) for p in outs]
        say(opts, f"{NAME}: perf stat on one output and the router, {sz.window:.0f}s")
        counts = syscall_counts(ffmpegs[0], router, sz.window)
        say(opts, f"{NAME}: perf record of {sz.outputs} outputs and the router, {sz.window:.0f}s")
        samples = perf_samples([*ffmpegs, router.process.pid], sz.window, work / "perf.data")
        say(opts, f"{NAME}: callgrind of one more output, {sz.frames} frames")
        instr = callgrind_output(router, dests[-1], sz.frames, work, g)
    res.figures = {"syscalls": counts, "perf": samples, "callgrind": instr, "outputs": sz.outputs}
    res.tables = [syscall_table(counts, sz), *perf_tables(samples, sz), *callgrind_tables(instr, sz)]
    return res


def _which(tool: str) -> bool:
    return subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode == 0


def _ffmpeg_of(wrapper_pid: int) -> int:
    """The FFmpeg the output's entrypoint forked."""

    def find() -> int | None:
        kids = [s.pid for s in tree(wrapper_pid, process_table()) if s.comm == "ffmpeg"]
        return kids[0] if kids else None

    pid: int = media.wait_for(find, 10, what="the output's FFmpeg")
    return pid


# ------------------------------------------------------------------ system calls


def perf_stat(pid: int, seconds: float) -> subprocess.Popen[str]:
    """``perf stat`` counting syscall tracepoints and context switches of ``pid`` (all
    its threads) for ``seconds``; read with ``_stat_result``."""
    events = ["raw_syscalls:sys_enter", "context-switches", "task-clock"]
    events += [f"syscalls:sys_enter_{s}" for s in SYSCALLS]
    argv = ["perf", "stat", "-x", ",", "-p", str(pid)]
    for e in events:
        argv += ["-e", e]
    return subprocess.Popen([*argv, "--", "sleep", str(seconds)], stderr=subprocess.PIPE, text=True)


def _stat_result(proc: subprocess.Popen[str]) -> dict[str, float]:
    _, err = proc.communicate(timeout=120)
    out: dict[str, float] = {}
    for line in err.splitlines():
        parts = line.split(",")
        if len(parts) > 2 and parts[0].replace(".", "", 1).isdigit():
            name = parts[2].removeprefix("syscalls:sys_enter_").removeprefix("raw_syscalls:sys_enter")
            out[name or "all syscalls"] = float(parts[0])
    if "all syscalls" not in out:
        raise RuntimeError(f"perf stat gave no syscall counts:\n{err[-2000:]}")
    return out


def _packets_sent(router: Any) -> dict[str, int]:
    """outboundRTPPackets of each RTSP session of the router, by session id."""
    doc = router.mediamtx.api().get_json("/v3/rtspsessions/list", {"itemsPerPage": 1000})
    return {s["id"]: int(s.get("outboundRTPPackets") or 0) for s in doc.get("items", [])}


def syscall_counts(ffmpeg_pid: int, router: Any, window: float) -> dict[str, Any]:
    t0 = time.monotonic()
    p0 = _packets_sent(router)
    stats = {"output FFmpeg": perf_stat(ffmpeg_pid, window), "router": perf_stat(router.process.pid, window)}
    counts = {k: _stat_result(p) for k, p in stats.items()}
    wall = time.monotonic() - t0
    p1 = _packets_sent(router)
    per_reader = sorted(p1[k] - p0.get(k, 0) for k in p1 if p1[k] > p0.get(k, 0))
    pps = per_reader[len(per_reader) // 2] / wall if per_reader else float("nan")
    return {"window_s": wall, "packets_per_s": pps, "readers": len(per_reader), "counts": counts}


def syscall_table(c: dict[str, Any], sz: Size) -> Table:
    pps, readers = c["packets_per_s"], c["readers"]
    t = Table(
        f"system calls and context switches per second, and per RTP packet the router sends one reader "
        f"({pps:.0f}/s; {readers} readers)",
        ["process", "CPU ms/s", "context switches/s", "syscalls/s", "syscalls/packet", "context switches/packet",
         *[f"{s}/s" for s in SYSCALLS]],
    )  # fmt: skip
    for who, k in c["counts"].items():
        w = c["window_s"]
        n_pkt = pps * (readers if who == "router" else 1)
        t.add(who, k.get("task-clock", 0) / w, k.get("context-switches", 0) / w, k["all syscalls"] / w,
              k["all syscalls"] / w / n_pkt, k.get("context-switches", 0) / w / n_pkt,
              *[k.get(s, 0) / w for s in SYSCALLS])  # fmt: skip
    t.notes.append(
        "per packet: the output's counts over the packets its session received; the router's over the packets it "
        "sent all readers together (so its write/s over packet/s is the writes per packet and reader)"
    )
    return t


# ------------------------------------------------------------------ CPU samples

_PERF_LINE = re.compile(r"^\s*([\d.]+)%\s+(\S+)\s+\[([.k])\]\s+(.+?)\s*$")


def perf_samples(pids: list[int], window: float, data: Path) -> dict[str, list[tuple[float, str, str]]]:
    """(percent of that command's samples, DSO, symbol) of each command, largest first."""
    argv = ["perf", "record", "-q", "-e", "cpu-clock", "-F", "999", "-g", "-o", str(data),
            "-p", ",".join(map(str, pids)), "--", "sleep", str(window)]  # fmt: skip
    subprocess.run(argv, check=True, capture_output=True, timeout=window + 120)
    out: dict[str, list[tuple[float, str, str]]] = {}
    for comm in ("ffmpeg", "mediamtx"):
        rep = subprocess.run(
            ["perf", "report", "-i", str(data), "--stdio", "--no-children", "--comm", comm, "--percentage",
             "relative", "--sort", "dso,sym", "-g", "none", "--percent-limit", "0"],
            capture_output=True, text=True, check=True, timeout=300,
        )  # fmt: skip
        rows = []
        for line in rep.stdout.splitlines():
            m = _PERF_LINE.match(line)
            if m:
                rows.append((float(m.group(1)), m.group(2), m.group(4)))
        out[comm] = sorted(rows, reverse=True)
    return out


def perf_tables(samples: dict[str, list[tuple[float, str, str]]], sz: Size) -> list[Table]:
    tables = []
    for comm, who in (("ffmpeg", f"the {sz.outputs} outputs' FFmpeg"), ("mediamtx", "the router")):
        rows = samples[comm]
        kernel = sum(p for p, dso, _ in rows if dso.startswith("[kernel"))
        by_dso: dict[str, float] = {}
        for p, dso, _ in rows:
            by_dso[dso] = by_dso.get(dso, 0.0) + p
        t = Table(
            f"perf cpu-clock samples of {who}: top {TOP} symbols (% of its samples; kernel {kernel:.0f}%)",
            ["%", "where", "symbol"],
        )
        for p, dso, sym in rows[:TOP]:
            t.add(p, dso, sym)
        biggest = sorted(by_dso.items(), key=lambda x: -x[1])[:6]
        t.notes.append("by object: " + ", ".join(f"{d} {p:.0f}%" for d, p in biggest))
        tables.append(t)
    return tables


# ------------------------------------------------------------------ instructions


def callgrind_output(router: Any, dest: str, frames: int, work: Path, g: media.ProcessGroup) -> dict[str, Any]:
    """Instructions of one more output's FFmpeg (rendered argv, without the wrapper)
    relaying ``frames`` video frames under callgrind; the counters are dumped once
    probing ends, so the relay's own functions are counted apart from the start."""
    out = mediautil.rendered_output("out-callgrind", router.name, dest, router.rtsp_port, g)
    argv = ["ffmpeg", *out.argv[1:-1], "-frames:v", str(frames), out.argv[-1]]
    data = work / "callgrind.out"
    grind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={data}", "--dump-after=avformat_find_stream_info"]
    proc = g.start("callgrind", [*grind, *argv], env=out.env)
    rc = proc.wait(600 + frames)
    if rc != 0:
        raise RuntimeError(f"FFmpeg under callgrind exited {rc}:\n{proc.tail()}")
    start = _annotate(data.with_name(data.name + ".1"), inclusive=True)
    main = _find(start, "???:main [/usr/bin/ffmpeg]")
    probe = _find(start, "avformat_find_stream_info")
    relay = _annotate(data, inclusive=False)
    total = relay["PROGRAM TOTALS"]
    # the frames on the stack when the counters were dumped show the whole total: not own cost
    top = sorted(((v, k) for k, v in relay.items() if v < 0.9 * total), reverse=True)[:TOP]
    return {
        "frames": frames,
        "loader": start["PROGRAM TOTALS"] - main,
        "setup": main - probe,
        "probe": probe,
        "relay": relay["PROGRAM TOTALS"],
        "top": top,
    }


def _annotate(data: Path, inclusive: bool) -> dict[str, int]:
    argv = ["callgrind_annotate", f"--inclusive={'yes' if inclusive else 'no'}", "--threshold=100", str(data)]
    text = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=300).stdout
    out: dict[str, int] = {}
    for line in text.splitlines():
        m = re.match(r"^\s*([\d,]+)\s+(?:\([\s\d.]+%\)\s+)?(.+?)\s*$", line)
        if m and m.group(2) not in out:
            out[m.group(2)] = int(m.group(1).replace(",", ""))
    return out


def _find(costs: dict[str, int], needle: str) -> int:
    hits = [v for k, v in costs.items() if needle in k]
    if not hits:
        raise RuntimeError(f"callgrind_annotate has no {needle!r}")
    return max(hits)


def callgrind_tables(c: dict[str, Any], sz: Size) -> list[Table]:
    f = c["frames"]
    parts = (("dynamic linker at start", "loader"), ("options, RTSP set-up", "setup"),
             ("probing the input (decodes frames)", "probe"), (f"relay of {f} frames, and exit", "relay"))  # fmt: skip
    total = sum(c[k] for _, k in parts)
    t = Table("user-space instructions of one output's FFmpeg (callgrind)", ["part", "instructions (M)", "share"])
    for part, key in parts:
        t.add(part, c[key] / 1e6, f"{100 * c[key] / total:.0f}%")
    t.add("relay, per video frame (k)", c["relay"] / f / 1e3, "")
    top = Table(f"top {TOP} functions of the relay by own instructions (callgrind)", ["instructions (M)", "function"])
    for v, k in c["top"]:
        top.add(v / 1e6, _short(k))
    top.notes.append("Debian's FFmpeg libraries carry no symbols for their internal functions: those show as addresses")
    return [t, top]


def _short(name: str) -> str:
    """``file:function [object]`` without the source path."""
    fn, _, obj = name.partition(" [")
    return f"{fn.rsplit(':', 1)[-1]} ({Path(obj.rstrip(']')).name})" if obj else fn
