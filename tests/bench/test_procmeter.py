"""The media-cost meter counts every process a metered process runs: CPU a child
spends (alive at the end, or already exited and reaped), a child's memory, and the
FFmpeg the output image's wrapper forks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.procmeter import TreeMeter, process_table, pss_kb, tree
from streamdist_dev import media
from streamdist_dev.rendered import FFMPEG_IMAGE_DIR

# A child that burns CPU_S of its own CPU time (bounded by 30 s of wall time), then
# either exits (the parent reaps it and sleeps on) or stays until killed.
CPU_S = 0.6
CHILD = f"""
import time
t_end = time.monotonic() + 30
while time.process_time() < {CPU_S} and time.monotonic() < t_end:
    pass
print("burnt", flush=True)
"""
PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1]], stdout=sys.stdout)
if sys.argv[2] == "reap":
    child.wait()
time.sleep(60)
"""
# A child holding MEM_MB of memory it has written to (so the pages are resident).
MEM_MB = 64
MEM_CHILD = f"""
import time
b = bytearray({MEM_MB} << 20)
for i in range(0, len(b), 4096):
    b[i] = 1
print("filled", flush=True)
time.sleep(60)
"""


def _start_parent(child: str, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", PARENT, child, mode], stdout=subprocess.PIPE, text=True)


def _own_cpu(pid: int) -> float:
    """utime + stime of the process alone (what the benchmark used to count)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("mode", ["alive", "reap"])
def test_tree_meter_counts_a_child_cpu(mode: str) -> None:
    parent = _start_parent(CHILD, mode)
    try:
        meter = TreeMeter({"parent": parent.pid}).start()
        assert parent.stdout is not None
        assert parent.stdout.readline().strip() == "burnt"
        if mode == "reap":  # the child is gone: only the parent's cutime holds its CPU
            assert media.wait_for(lambda: len(tree(parent.pid, process_table())) == 1, 10, what="child reaped")
        meter.stop()
        unit = meter.units["parent"]
        assert unit.cpu_s >= CPU_S * 0.9, (mode, unit)
        assert _own_cpu(parent.pid) < CPU_S / 2  # the parent alone did not spend it
        if mode == "alive":
            assert unit.max_processes == 2
    finally:
        parent.kill()
        parent.wait(timeout=10)


def test_tree_meter_counts_a_child_memory() -> None:
    parent = _start_parent(MEM_CHILD, "alive")
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline().strip() == "filled"
        meter = TreeMeter({"parent": parent.pid}).start()
        meter.sample(memory=True)
        meter.stop()
        assert meter.pss_mb() >= MEM_MB, meter.units
        parent_kb = pss_kb(parent.pid)
        assert parent_kb is not None and parent_kb < MEM_MB * 1024 / 4  # the child holds it
    finally:
        parent.kill()
        parent.wait(timeout=10)


@pytest.mark.media
def test_tree_meter_counts_the_wrappers_ffmpeg(tmp_path: Path) -> None:
    """The output image's entrypoint forks FFmpeg: the meter sees FFmpeg's CPU under it."""
    media.require_media_tools()
    argv = [
        str(FFMPEG_IMAGE_DIR / "streamdist-ffmpeg"), "-hide_banner", "-nostdin", "-loglevel", "warning",
        "-re", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25", "-t", "20",
        "-c:v", "mpeg2video", "-f", "null", "-",
    ]  # fmt: skip
    with media.ProcessGroup(logdir=tmp_path) as g:
        wrapper = g.start("wrapper", argv)
        media.wait_for(lambda: len(tree(wrapper.pid, process_table())) == 2, 10, what="the wrapper's FFmpeg")
        meter = TreeMeter({"output": wrapper.pid}).start()
        wrapper_cpu0 = _own_cpu(wrapper.pid)
        time.sleep(3)
        meter.sample(memory=True)
        wrapper_cpu = _own_cpu(wrapper.pid) - wrapper_cpu0
        meter.stop()
        unit = meter.units["output"]
        assert unit.members == {"streamdist-ffmp", "ffmpeg"}, unit.members  # comm is cut at 15 characters
        assert unit.cpu_s > 0.1 and unit.cpu_s > 10 * wrapper_cpu, (unit.cpu_s, wrapper_cpu)
        assert unit.pss_mb > 5, unit.pss_mb
        assert wrapper.alive(), g.logs()
