"""What every benchmark shares: options, tables, machine facts, /proc readings.

A benchmark module exposes ``NAME``, ``TITLE`` and ``run(opts) -> Result``. It bounds
its own duration, cleans up everything it started (even when it fails), and returns
its figures as tables plus a flat ``figures`` dict (what the smoke test asserts on).
"""

from __future__ import annotations

import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streamdist_dev.wait import wait_for

REPO_ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def cache_dir() -> Path:
    """Where generated media (the pre-encoded source) is kept between runs."""
    base = Path(os.environ.get("STREAMDIST_CACHE", Path.home() / ".cache" / "streamdist"))
    d = base / "bench"
    d.mkdir(parents=True, exist_ok=True)
    return d


@dataclass
class Opts:
    quick: bool = False
    workdir: Path = Path("/tmp/streamdist-bench")
    verbose: bool = True

    def dir(self, name: str) -> Path:
        d = self.workdir / name
        d.mkdir(parents=True, exist_ok=True)
        return d


def say(opts: Opts, msg: str) -> None:
    """Progress on stderr (tables go to stdout)."""
    if opts.verbose:
        print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def measured(opts: Opts, name: str, title: str, what: str, measure: Callable[[], dict[str, Any]]) -> Result:
    """A benchmark's Result holding the figures ``measure()`` returns (``what`` is said first)."""
    say(opts, f"{name}: {what}")
    return Result(name, title, figures=measure())


# ----------------------------------------------------------------------- tables


@dataclass
class Table:
    title: str
    columns: Sequence[str]
    rows: list[Sequence[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *row: Any) -> None:
        self.rows.append(row)

    def _cells(self) -> list[list[str]]:
        return [[cell(v) for v in r] for r in self.rows]

    def text(self) -> str:
        cells = self._cells()
        widths = [len(c) for c in self.columns]
        for r in cells:
            for i, v in enumerate(r):
                widths[i] = max(widths[i], len(v))
        lines = [self.title]
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(self.columns, widths, strict=True)).rstrip())
        lines.append("  " + "  ".join("-" * w for w in widths))
        for r in cells:
            lines.append("  " + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def markdown(self) -> str:
        out = [f"**{self.title}**", ""]
        out.append("| " + " | ".join(self.columns) + " |")
        out.append("|" + "|".join("---" for _ in self.columns) + "|")
        for r in self._cells():
            out.append("| " + " | ".join(v.replace("|", "\\|") for v in r) + " |")
        if self.notes:
            out.append("")
            out += [f"- {n}" for n in self.notes]
        return "\n".join(out)


def cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        if abs(v) >= 100:
            return f"{v:.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.2f}"
    return str(v)


def verdict(value: float | None, limit: float, *, below: bool = True) -> str:
    """'ok' / 'MISSED' of a figure against a target (None: not measured)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    good = value < limit if below else value > limit
    return "ok" if good else "MISSED"


@dataclass
class Result:
    name: str
    title: str
    tables: list[Table] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    load_before: str = ""
    load_after: str = ""
    seconds: float = 0.0
    error: str = ""
    started: str = ""  # UTC date and time the benchmark started

    def text(self) -> str:
        head = (
            f"== {self.name}: {self.title} ({self.seconds:.0f} s; "
            f"loadavg before {self.load_before}, after {self.load_after})"
        )
        parts = [head]
        if self.error:
            parts.append(f"  ERROR: {self.error}")
        parts += [t.text() for t in self.tables]
        parts += [f"  {n}" for n in self.notes]
        return "\n".join(parts)

    def markdown(self) -> str:
        parts = [f"### {self.name}: {self.title}", ""]
        parts.append(
            f"Ran {self.seconds:.0f} s; load average (1/5/15 min) before {self.load_before}, after {self.load_after}."
        )
        parts.append("")
        if self.error:
            parts += [f"**ERROR**: `{self.error}`", ""]
        for t in self.tables:
            parts += [t.markdown(), ""]
        parts += [f"- {n}" for n in self.notes]
        return "\n".join(parts).rstrip() + "\n"


# ------------------------------------------------------------------ machine, load


def counts(d: dict[str, int]) -> str:
    """"a 1, b 2" of a {what: count} dict, sorted by what."""
    return ", ".join(f"{k} {v}" for k, v in sorted(d.items()))


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def machine() -> dict[str, str]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "memory": mem,
        "kernel": platform.release(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


# ----------------------------------------------------------------------- /proc


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (all its threads), in seconds; None once gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    # fields[0] is state (field 3); utime is field 14, stime field 15
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def mem_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in kB ({} once gone)."""
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1])
    except OSError:
        return {}
    return out


# ----------------------------------------------------------------------- stats


def percentile(values: Sequence[float], p: float) -> float:
    """Linear-interpolated percentile (p in 0..100); nan for no values."""
    if not values:
        return float("nan")
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    k = (len(xs) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def summary(values: Sequence[float]) -> tuple[float, float, float]:
    """(p50, p95, max)."""
    return percentile(values, 50), percentile(values, 95), (max(values) if values else float("nan"))


def wait_until(pred: Any, timeout: float, interval: float = 0.2) -> Any:
    """Poll ``pred`` until truthy; returns the value, or None at the deadline."""
    try:
        return wait_for("a benchmark's condition", pred, timeout, interval)
    except TimeoutError:
        return None
