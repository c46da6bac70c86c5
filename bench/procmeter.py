"""What a group of processes costs, counting every process each one runs.

An output's container runs the masking wrapper, which forks FFmpeg: metering the
wrapper's PID alone misses the FFmpeg child that does the work. So each metered unit
is a process *tree* (its root and every descendant, found from the parent PIDs in
/proc), and

* CPU is utime + stime of every live member plus cutime + cstime (what members have
  already reaped), so a child that exits within the window still counts, once;
* memory is PSS (``Pss`` of /proc/<pid>/smaps_rollup): each shared page is split
  between the processes that map it, so twenty FFmpegs' shared libraries count once
  in total, not twenty times as summed RSS would.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Stat:
    """The fields of /proc/<pid>/stat a meter needs."""

    pid: int
    ppid: int
    comm: str
    cpu_s: float  # utime + stime + cutime + cstime


def read_stat(pid: int) -> Stat | None:
    """One process's Stat, None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    head, _, rest = text.rpartition(")")
    comm = head.partition("(")[2]
    f = rest.split()
    # f[0] is field 3 (state); ppid is field 4, utime..cstime fields 14-17
    ticks = int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return Stat(pid=pid, ppid=int(f[1]), comm=comm, cpu_s=ticks / CLK_TCK)


def process_table() -> dict[int, Stat]:
    """Every process on the machine (one pass over /proc)."""
    table: dict[int, Stat] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            st = read_stat(int(entry.name))
            if st is not None:
                table[st.pid] = st
    return table


def tree(root: int, table: Mapping[int, Stat]) -> list[Stat]:
    """``root`` and all its descendants in ``table`` (empty when root is gone)."""
    if root not in table:
        return []
    children: dict[int, list[int]] = {}
    for st in table.values():
        children.setdefault(st.ppid, []).append(st.pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(table[pid])
        todo.extend(children.get(pid, ()))
    return out


def pss_kb(pid: int) -> int | None:
    """Proportional set size of one process in kB (None once gone)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


@dataclass
class Unit:
    """One metered unit: a root process and its descendants."""

    name: str
    root: int
    cpu_first: float | None = None
    cpu_last: float | None = None
    pss_samples: list[int] = field(default_factory=list)
    members: set[str] = field(default_factory=set)  # "comm" of every process seen in the tree
    max_processes: int = 0

    @property
    def cpu_s(self) -> float:
        if self.cpu_first is None or self.cpu_last is None:
            return 0.0
        return self.cpu_last - self.cpu_first

    @property
    def pss_mb(self) -> float:
        return sum(self.pss_samples) / len(self.pss_samples) / 1024 if self.pss_samples else float("nan")


class TreeMeter:
    """CPU seconds and mean PSS of named process trees between ``start()`` and ``stop()``.

    ``sample()`` refreshes CPU (a unit whose root has exited keeps its last reading)
    and, when ``memory`` is true, takes one PSS sample of each tree.
    """

    def __init__(self, roots: Mapping[str, int]) -> None:
        self.units = {name: Unit(name, pid) for name, pid in roots.items()}
        self.t0 = self.t1 = 0.0

    def start(self) -> TreeMeter:
        self.t0 = time.monotonic()
        self._read(first=True, memory=False)
        return self

    def sample(self, memory: bool = True) -> None:
        self._read(first=False, memory=memory)

    def stop(self) -> TreeMeter:
        self._read(first=False, memory=False)
        self.t1 = time.monotonic()
        return self

    def _read(self, *, first: bool, memory: bool) -> None:
        table = process_table()
        for u in self.units.values():
            members = tree(u.root, table)
            if not members:
                continue
            cpu = sum(m.cpu_s for m in members)
            if first:
                u.cpu_first = cpu
            u.cpu_last = cpu
            u.members |= {m.comm for m in members}
            u.max_processes = max(u.max_processes, len(members))
            if memory:
                pss = [pss_kb(m.pid) for m in members]
                u.pss_samples.append(sum(p for p in pss if p is not None))

    @property
    def wall(self) -> float:
        return (self.t1 or time.monotonic()) - self.t0

    def cpu_s(self, names: Sequence[str] | None = None) -> float:
        return sum(u.cpu_s for n, u in self.units.items() if names is None or n in names)

    def per_minute(self, names: Sequence[str] | None = None) -> float:
        return self.cpu_s(names) / self.wall * 60 if self.wall > 0 else float("nan")

    def pss_mb(self, names: Sequence[str] | None = None) -> float:
        return sum(u.pss_mb for n, u in self.units.items() if names is None or n in names)

    def processes(self, names: Sequence[str] | None = None) -> int:
        return sum(u.max_processes for n, u in self.units.items() if names is None or n in names)
