"""The output pods' metrics pages, for KWOK's pods (which run nothing): one local server
answering for every pod address, so that the operator's telemetry poll does on a KWOK
cluster the work it does on a real one (connect, read, parse, summarise every output
pod every 10 s).

KWOK hands out pod IPs from the CIDR it is given; with 127.1.0.0/16 every pod address
is a loopback address of this machine (Linux routes all of 127.0.0.0/8 to `lo`), so a
server listening on every address at one port is reached at each pod's IP. The page is
the one an RTMP output's entrypoint serves (images/ffmpeg/streamdist-ffmpeg: its FFmpeg
metric table, read from the script), for a healthy 30 fps, 6 Mbit/s stream whose
counters advance with time since that pod's first read. The server listens on every
interface (a socket bound to one address is not reached at another): it serves these
made-up pages only, for the length of one benchmark.
"""

from __future__ import annotations

import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .common import REPO_ROOT

POD_CIDR = "127.1.0.1/16"
ENTRYPOINT = REPO_ROOT / "images" / "ffmpeg" / "streamdist-ffmpeg"
FPS = 30.0
BYTES_PER_SECOND = 6_000_000 / 8


def ffmpeg_metrics() -> list[tuple[str, str, str]]:
    """(name, type, help) of the entrypoint's FFmpeg metrics, in its order."""
    table = ENTRYPOINT.read_text().split("my @FFMPEG_METRICS", 1)[1].split(");", 1)[0]
    rows = re.findall(r"=> '(streamdist_\w+)', '(counter|gauge)', '([^']*)'", table)
    if not rows:
        raise RuntimeError(f"no FFmpeg metric table in {ENTRYPOINT}")
    return rows


def page(metrics: list[tuple[str, str, str]], seconds: float) -> str:
    """The exposition an RTMP output's pod serves `seconds` after FFmpeg started."""
    values = {
        "streamdist_ffmpeg_frames_total": int(FPS * seconds),
        "streamdist_ffmpeg_dropped_frames_total": 0,
        "streamdist_ffmpeg_duplicated_frames_total": 0,
        "streamdist_ffmpeg_output_bytes_total": int(BYTES_PER_SECOND * seconds),
        "streamdist_ffmpeg_output_time_seconds": round(seconds, 6),
        "streamdist_ffmpeg_speed": 1.0,
        "streamdist_ffmpeg_fps": FPS,
    }
    out = []
    for name, kind, help_text in metrics:
        if name in values:  # as the entrypoint: what FFmpeg has not reported is left out
            out.append(f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n{name} {values[name]}\n")
    return "".join(out)


class _Server(ThreadingHTTPServer):
    # every pod has its own listener; here one stands in for all of them, so its
    # backlog must hold what the operator's parallel reads open at once
    request_queue_size = 1024

    def handle_error(self, request: Any, client_address: Any) -> None:
        # the operator gave up on a late answer (its deadline is 1 s): counted, not printed
        self.late = getattr(self, "late", 0) + 1


class PodPages:
    def __init__(self) -> None:
        self.metrics = ffmpeg_metrics()
        self.started: dict[str, float] = {}  # pod IP -> first read
        self.served = 0
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                ip = self.connection.getsockname()[0]
                now = time.monotonic()
                with owner.lock:
                    start = owner.started.setdefault(ip, now - 10.0)
                    owner.served += 1
                body = page(owner.metrics, now - start).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = _Server(("0.0.0.0", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])

    @property
    def late(self) -> int:
        """Answers the operator no longer waited for (since the start)."""
        return int(getattr(self.server, "late", 0))

    def start(self) -> PodPages:
        threading.Thread(target=self.server.serve_forever, name="pod-pages", daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
