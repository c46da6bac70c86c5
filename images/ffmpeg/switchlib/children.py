"""The switch's child processes (FFmpeg, ffprobe) with non-blocking pipes for one
selector loop, and their CPU time when they end.

One thread only: ``preexec_fn`` (which asks the kernel to SIGTERM a child when the
switch dies, even by SIGKILL) is unsafe with threads. Children are reaped with
``os.wait4`` so their CPU seconds can be logged (and the slate's cost measured).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import selectors
import signal
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO

STOP_GRACE_SECONDS = 2.0
PR_SET_PDEATHSIG = 1
_LIBC: ctypes.CDLL | None
try:  # loaded once here: the child between fork and exec only calls into it
    _LIBC = ctypes.CDLL(None, use_errno=True)
except OSError:
    _LIBC = None


def _die_with_parent(parent: int) -> Callable[[], None]:
    """A preexec_fn: the kernel SIGTERMs the child when the switch dies."""

    def preexec() -> None:
        if _LIBC is not None:
            _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


Sink = Callable[[bytes], None]


@dataclass
class Child:
    """One child process: bytes written to its stdin without blocking, its stdout
    handed to ``on_stdout`` as it comes, its stderr either ours or collected."""

    name: str
    proc: subprocess.Popen[bytes]
    started_at: float
    on_stdout: Sink | None = None
    stdout: bytearray | None = None  # collected stdout (collect_stdout)
    stderr: bytearray | None = None
    pending: bytearray = field(default_factory=bytearray)
    stop_sent_at: float | None = None
    cpu_seconds: float | None = None
    closing: bool = False  # close stdin once pending is written
    max_pending: int = 8 << 20

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def exited(self) -> bool:
        return self.proc.returncode is not None

    def write(self, data: bytes) -> bool:
        """Queue ``data`` for stdin; False when the child cannot take it (gone, or so far
        behind that its queue is full: it is then stopped)."""
        if self.proc.stdin is None or self.proc.stdin.closed or self.exited:
            return False
        if len(self.pending) + len(data) > self.max_pending:
            self.stop(0.0, force=True)
            return False
        self.pending += data
        return True

    def stop(self, now: float, force: bool = False) -> None:
        """SIGINT (FFmpeg closes cleanly), or SIGKILL with ``force``."""
        if self.exited:
            return
        if force:
            self.proc.kill()
        elif self.stop_sent_at is None:
            self.stop_sent_at = now
            self.proc.send_signal(signal.SIGINT)


class Children:
    """Every child of the switch, on one selector."""

    def __init__(self, selector: selectors.BaseSelector) -> None:
        self.selector = selector
        self.live: list[Child] = []

    def start(self, name: str, argv: Sequence[str], now: float, *, stdin: bool = False,
              on_stdout: Sink | None = None, collect_stdout: bool = False,
              collect_stderr: bool = False) -> Child | None:  # fmt: skip
        """Start a child; None (and a reason on the caller's log) when it cannot be."""
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE if on_stdout or collect_stdout else subprocess.DEVNULL,
                stderr=subprocess.PIPE if collect_stderr else None,
                preexec_fn=_die_with_parent(os.getpid()),  # one thread: safe here
            )
        except OSError:
            return None
        child = Child(name, proc, now, on_stdout, bytearray() if collect_stdout else None,
                      bytearray() if collect_stderr else None)
        for stream, events in ((proc.stdout, selectors.EVENT_READ), (proc.stderr, selectors.EVENT_READ)):
            if stream is not None:
                os.set_blocking(stream.fileno(), False)
                self.selector.register(stream, events, (child, "out" if stream is proc.stdout else "err"))
        if proc.stdin is not None:
            os.set_blocking(proc.stdin.fileno(), False)
        self.live.append(child)
        return child

    def want_write(self) -> None:
        """Register stdin of children with bytes to write (and unregister the others)."""
        for child in self.live:
            stdin = child.proc.stdin
            if stdin is None or stdin.closed:
                continue
            registered = self._registered(stdin)
            if (child.pending or child.closing) and not registered:
                self.selector.register(stdin, selectors.EVENT_WRITE, (child, "in"))
            elif not child.pending and not child.closing and registered:
                self.selector.unregister(stdin)

    def _registered(self, stream: object) -> bool:
        try:
            self.selector.get_key(stream)  # type: ignore[arg-type]
        except (KeyError, ValueError):  # ValueError: the pipe is closed already
            return False
        return True

    def handle(self, child: Child, which: str) -> None:
        """The selector says ``which`` pipe of ``child`` is ready."""
        if which == "in":
            self._write(child)
            return
        stream = child.proc.stdout if which == "out" else child.proc.stderr
        assert stream is not None
        try:
            data = os.read(stream.fileno(), 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.selector.unregister(stream)
            stream.close()
            return
        if which == "out":
            if child.on_stdout is not None:
                child.on_stdout(data)
            if child.stdout is not None and len(child.stdout) < 1 << 20:
                child.stdout += data
        elif child.stderr is not None and len(child.stderr) < 1 << 20:
            child.stderr += data

    def _write(self, child: Child) -> None:
        stdin = child.proc.stdin
        assert stdin is not None
        try:
            if child.pending:
                written = os.write(stdin.fileno(), child.pending)
                del child.pending[:written]
        except BlockingIOError:
            return
        except OSError:  # the child is gone (EPIPE): nothing more will be read
            child.pending.clear()
            child.closing = True
        if not child.pending and child.closing:
            self._close_stdin(child)

    def _close_stdin(self, child: Child) -> None:
        self._close(child.proc.stdin)

    def _close(self, stream: IO[bytes] | None) -> None:
        """Off the selector, closed; a pipe already closed is left as it is."""
        if stream is None or stream.closed:
            return
        if self._registered(stream):
            self.selector.unregister(stream)
        with contextlib.suppress(OSError):
            stream.close()

    def close_stdin(self, child: Child) -> None:
        """End the child's input once what is queued is written."""
        child.closing = True
        if not child.pending:
            self._close_stdin(child)

    def reap(self, now: float) -> list[Child]:
        """Children that exited since the last call (CPU seconds filled in); SIGKILL for
        those that ignored SIGINT for STOP_GRACE_SECONDS."""
        gone = []
        for child in list(self.live):
            if child.exited or self._wait(child):
                self._forget(child)
                gone.append(child)
            elif child.stop_sent_at is not None and now - child.stop_sent_at >= STOP_GRACE_SECONDS:
                child.proc.kill()
        return gone

    def _wait(self, child: Child) -> bool:
        try:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        except ChildProcessError:
            child.proc.returncode = child.proc.returncode if child.proc.returncode is not None else -1
            return True
        if pid == 0:
            return False
        child.proc.returncode = os.waitstatus_to_exitcode(status)
        child.cpu_seconds = usage.ru_utime + usage.ru_stime
        return True

    def _forget(self, child: Child) -> None:
        """Read what is left of its stdout/stderr, then close every pipe."""
        for stream in (child.proc.stdout, child.proc.stderr):
            if stream is not None and not stream.closed:
                self._drain(child, stream)
        for stream in (child.proc.stdout, child.proc.stderr, child.proc.stdin):
            self._close(stream)
        self.live.remove(child)

    def _drain(self, child: Child, stream: object) -> None:
        which = "out" if stream is child.proc.stdout else "err"
        for _ in range(1024):
            if not self._registered(stream):
                return
            self.handle(child, which)

    def shutdown(self, now: float) -> list[Child]:
        """Stop every child (SIGINT, SIGKILL after the grace) and reap them all."""
        import time

        for child in self.live:
            self._close_stdin(child)
            child.stop(now)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        gone: list[Child] = []
        while self.live and time.monotonic() < deadline:
            gone += self.reap(time.monotonic())
            time.sleep(0.02)
        for child in self.live:
            child.proc.kill()
        while self.live:
            gone += self.reap(time.monotonic())
            time.sleep(0.01)
        return gone
