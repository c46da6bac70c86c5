"""The one way the dev tools start and stop processes.

``spawn`` starts a child with its output appended to a log file, in a session of its
own (a Ctrl-C in the terminal reaches the test or demo process only) and, by default,
with PR_SET_PDEATHSIG: when the starting thread dies without cleaning up (SIGKILL, a
crash) the kernel signals the child instead of leaving it behind. ``reap`` stops one:
SIGTERM, a grace period, SIGKILL.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Self

LOG_TAIL_LINES = 40
_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A preexec_fn (runs in the child between fork and exec) that asks for ``sig``
    when the parent thread dies."""

    def preexec() -> None:
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)

    return preexec


def spawn(
    args: Sequence[str],
    log: Path,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    death_signal: int | None = signal.SIGTERM,
    new_session: bool = True,
    append: bool = True,
) -> subprocess.Popen[bytes]:
    """Starts ``args`` with stdin from /dev/null and stdout+stderr into ``log``.

    ``death_signal=None`` leaves the child running when its parent thread ends (a
    child started from a short-lived thread must not die with that thread).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab" if append else "wb") as out:
        return subprocess.Popen(
            list(map(str, args)),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            start_new_session=new_session,
            preexec_fn=die_with_parent(death_signal) if death_signal is not None else None,
        )


def reap(proc: subprocess.Popen | None, grace: float = 10.0, *, group: bool = False) -> int | None:
    """Stops ``proc`` (its whole process group with ``group``): SIGTERM, ``grace``
    seconds, SIGKILL. Returns the exit code (None if it would not die)."""
    if proc is None:
        return None

    def send(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)

    if proc.poll() is None:
        send(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            send(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
    return proc.poll()


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (all held open while choosing)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a log file (what a failure message shows)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        return f"(no log: {e})"
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


class StartStop:
    """A context manager of something with start() and stop(): stop() also when start()
    fails half-way (whatever it started is stopped), and on exit."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_timed(steps: Mapping[str, Callable[[], object]], timings: dict[str, float], announce: str = "") -> None:
    """Runs the steps in order, each one's seconds into ``timings`` under its name;
    with ``announce``, says "<announce>: <step> ..." on stderr before each."""
    for name, step in steps.items():
        t0 = time.monotonic()
        if announce:
            print(f"{announce}: {name} ...", file=sys.stderr, flush=True)
        step()
        timings[name] = round(time.monotonic() - t0, 2)
