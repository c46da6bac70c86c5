"""The output image's entrypoint (images/ffmpeg/streamdist-ffmpeg) on its own: a TERM
sent to it alone (what the kubelet does: PID 1 of the container) reaches FFmpeg, whose
exit status becomes the wrapper's; the destination (the last argument) never appears
in the log, even when FFmpeg names it in a stream of other output; before FFmpeg it
waits, bounded, for the input's router to accept a connection; it costs little memory
beside FFmpeg."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from bench.procmeter import process_table, tree
from streamdist_dev import media
from streamdist_dev.rendered import FFMPEG_IMAGE_DIR

pytestmark = pytest.mark.media
WRAPPER = str(FFMPEG_IMAGE_DIR / "streamdist-ffmpeg")
SECRET_URL = "rtmp://user:CANARYPASS@127.0.0.1:9/app/CANARYKEY"
MASKED = "rtmp://***@127.0.0.1:9/app/***"


def _start(args: list[str], log: Path, **env_extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "STREAMDIST_MASKED_DESTINATION": MASKED, **env_extra}
    with open(log, "wb") as f:
        return subprocess.Popen([WRAPPER, *args], stdin=subprocess.DEVNULL, stdout=f, stderr=f, env=env)


def _ffmpeg_child(wrapper: subprocess.Popen[bytes]) -> int:
    def child() -> int | None:
        kids = [s.pid for s in tree(wrapper.pid, process_table()) if s.comm == "ffmpeg"]
        return kids[0] if kids else None

    pid: int = media.wait_for(child, 10, what="the wrapper's FFmpeg")
    return pid


def test_term_to_the_wrapper_alone_stops_ffmpeg(tmp_path: Path) -> None:
    # -stats prints progress every 0.5 s: the wrapper is blocked reading it when TERM comes
    args = ["-hide_banner", "-nostdin", "-stats", "-re", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=10",
            "-t", "60", "-f", "null", SECRET_URL]  # fmt: skip
    wrapper = _start(args, tmp_path / "log")
    try:
        ffmpeg = _ffmpeg_child(wrapper)
        time.sleep(1.5)
        t0 = time.monotonic()
        wrapper.send_signal(signal.SIGTERM)  # to the wrapper only, not its group
        rc = wrapper.wait(timeout=10)
        assert time.monotonic() - t0 < 5
        # FFmpeg exits 255 on a signal; the wrapper passes that on
        log = (tmp_path / "log").read_text(errors="replace")
        assert rc == 255, (rc, log)
        # what FFmpeg wrote after the signal interrupted the wrapper's read still came through
        assert "received signal 15" in log, log
        assert not Path(f"/proc/{ffmpeg}").exists() or "Z" in Path(f"/proc/{ffmpeg}/stat").read_text().split()[2]
    finally:
        if wrapper.poll() is None:
            wrapper.kill()
            wrapper.wait(timeout=10)


def test_destination_masked_in_a_stream_of_output(tmp_path: Path) -> None:
    # progress lines first (stats on a \r line each), then FFmpeg's error naming the URL
    args = ["-hide_banner", "-nostdin", "-stats", "-re", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=10",
            "-t", "2", "-f", "flv", SECRET_URL]  # fmt: skip
    wrapper = _start(args, tmp_path / "log")
    rc = wrapper.wait(timeout=30)
    log = (tmp_path / "log").read_text(errors="replace")
    assert rc != 0, log  # nothing listens on port 9
    assert "CANARY" not in log
    assert MASKED in log, log


NULL_JOB = ["-hide_banner", "-nostdin", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=10",
            "-t", "2", "-f", "null", "-"]  # fmt: skip
WAIT_S = 3


def _seconds_to_ffmpeg(tmp_path: Path, address: str) -> float:
    """Seconds from the wrapper's start until its FFmpeg runs, with the input address set."""
    t0 = time.monotonic()
    wrapper = _start(NULL_JOB, tmp_path / "log", STREAMDIST_INPUT_ADDRESS=address,
                     STREAMDIST_INPUT_WAIT_SECONDS=str(WAIT_S))  # fmt: skip
    try:
        _ffmpeg_child(wrapper)
        return time.monotonic() - t0
    finally:
        assert wrapper.wait(timeout=30) == 0, (tmp_path / "log").read_text(errors="replace")


def test_router_wait_accepting_refused_and_silent(tmp_path: Path) -> None:
    """An accepting router: FFmpeg starts at once (a name resolves as well as an IP).
    Nothing listening: the wrapper retries for STREAMDIST_INPUT_WAIT_SECONDS, then runs
    FFmpeg anyway. A router that never answers the SYN (here: a listener whose accept
    queue is full, so the kernel drops the SYN): each try is cut after 1 s, so the wait
    stays bounded."""
    with socket.socket() as open_port:
        open_port.bind((media.LOOPBACK, 0))
        open_port.listen(8)
        accepting = _seconds_to_ffmpeg(tmp_path, f"localhost:{open_port.getsockname()[1]}")
    refused = _seconds_to_ffmpeg(tmp_path, f"{media.LOOPBACK}:{media.free_tcp_port()}")
    with socket.socket() as full:
        full.bind((media.LOOPBACK, 0))
        full.listen(0)
        addr = full.getsockname()
        fillers = [socket.create_connection(addr, timeout=2)]  # the one connection a backlog of 0 queues
        try:
            silent = _seconds_to_ffmpeg(tmp_path, f"{addr[0]}:{addr[1]}")
        finally:
            for c in fillers:
                c.close()
    # the deadline counts whole seconds (Perl's time): the wait is WAIT_S - 1 to WAIT_S
    assert accepting < min(refused, silent) - 1, (accepting, refused, silent)
    assert WAIT_S - 1 < refused < WAIT_S + 1.5, refused
    assert WAIT_S - 1 < silent < WAIT_S + 2.5, silent


def _private_dirty_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Private_Dirty:"):
            return int(line.split()[1])
    raise AssertionError("no Private_Dirty in smaps_rollup")


def test_wrapper_memory_beside_ffmpeg(tmp_path: Path) -> None:
    """The wrapper loads no module: its own memory (private dirty pages; shared ones
    depend on what else runs perl) stays under 1 MB, its router wait included. With
    IO::Socket::INET, IO::Handle, Errno and warnings loaded it was 3.0 MB."""
    args = ["-hide_banner", "-nostdin", "-re", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=10",
            "-t", "30", "-f", "null", "-"]  # fmt: skip
    with socket.socket() as router:
        router.bind((media.LOOPBACK, 0))
        router.listen(8)
        wrapper = _start(args, tmp_path / "log", STREAMDIST_INPUT_ADDRESS=f"localhost:{router.getsockname()[1]}")
    try:
        _ffmpeg_child(wrapper)
        time.sleep(0.5)
        kb = _private_dirty_kb(wrapper.pid)
        assert kb < 1024, kb
    finally:
        wrapper.send_signal(signal.SIGTERM)
        wrapper.wait(timeout=10)
