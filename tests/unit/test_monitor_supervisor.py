"""The confidence monitor's supervising `sh` (switch_render.MONITOR_SUPERVISOR), run by
this host's /bin/sh as the router pod runs it: a monitor that cannot start or that ends
leaves the container up (so the router pod stays Ready) and is started again; SIGTERM
reaches the monitor and ends the container at once."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from streamdist.switch_render import MONITOR_SUPERVISOR


@pytest.fixture
def supervised() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=5)


def _start(procs: list[subprocess.Popen[str]], *command: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(["/bin/sh", "-c", MONITOR_SUPERVISOR, *command], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    procs.append(proc)
    return proc


def _stop(proc: subprocess.Popen[str]) -> tuple[int, float, str]:
    """SIGTERM: (exit code, seconds to exit, everything it printed)."""
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=5)
    return proc.returncode, time.monotonic() - t0, out


def test_a_monitor_that_cannot_start_leaves_the_container_up(supervised: list[subprocess.Popen[str]]) -> None:
    proc = _start(supervised, "/nonexistent/streamdist-confidence", "--path", "cam")
    time.sleep(1.0)
    assert proc.poll() is None, "the container must stay up"
    code, took, out = _stop(proc)
    assert code == 0 and took < 2, (code, took)
    assert "event=monitor-exit code=127 restart_in=5s" in out, out


def test_sigterm_reaches_the_monitor(supervised: list[subprocess.Popen[str]]) -> None:
    proc = _start(supervised, "sleep", "30")
    time.sleep(0.5)
    children = subprocess.run(["pgrep", "-P", str(proc.pid), "sleep"], capture_output=True, text=True).stdout.split()
    assert len(children) == 1, children
    code, took, _ = _stop(proc)
    assert code == 0 and took < 2, (code, took)
    assert subprocess.run(["kill", "-0", children[0]], capture_output=True).returncode != 0, "the monitor still runs"


def test_a_monitor_that_ends_is_started_again(supervised: list[subprocess.Popen[str]]) -> None:
    proc = _start(supervised, "echo", "monitor-started")
    time.sleep(6.5)  # one run, the 5 s pause, the second run
    code, _, out = _stop(proc)
    assert code == 0
    assert out.count("monitor-started") == 2, out
    assert "event=monitor-exit code=0 restart_in=5s" in out, out
