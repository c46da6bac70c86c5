#!/usr/bin/python3
"""streamdist-confidence: is the input's picture black or frozen, is its audio silent,
and what does it look like now. The confidence monitor of a router pod.

One cheap FFmpeg reads the readers' path from MediaMTX on the pod's loopback (RTSP/TCP,
no credential: MediaMTX lets ``any`` read it from 127.0.0.1 only) and:

* decodes keyframes only (``-skip_frame nokey``, one decoder thread) and scales them
  down: the cost of a monitor is one keyframe a GOP at thumbnail size, never the
  stream's full frame rate (bench/RESULTS.md, "confidence monitor");
* ``blackdetect`` (every keyframe's black ratio), ``freezedetect`` (keyframes that do
  not change for ``--hold-seconds`` of media time) and ``silencedetect`` (audio under
  ``--silence-db`` for ``--hold-seconds``); a black picture counts once it has been
  black for ``--hold-seconds`` on this monitor's clock (blackdetect announces the first
  black frame, not a duration);
* encodes every decoded keyframe as a small JPEG on its stdout: the latest one is the
  thumbnail.

HTTP on ``--listen`` (the operator's control-API credential only, checked against the
MediaMTX ``sha256:`` hash in the router's ConfigMap, as the switch does; no credential
file: every request refused): ``GET /metrics`` (Prometheus text), ``GET /v1/state``
(JSON, what the operator's health poll reads) and ``GET /v1/thumbnail.jpg``.

FFmpeg exits when the path has no source (or loses it); it is started again every
``--retry-seconds`` and every detection restarts from nothing (unknown is not black).
Logs: one ``event=... key=value`` line per event on stdout. Stdlib only, Python 3.11:
it runs with Debian's python3 in the FFmpeg image and must not import streamdist.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import IO, Any

from switchlib import net
from switchlib.logfmt import log

KINDS = ("black", "frozen", "silent")
JPEG_END = b"\xff\xd9"
MAX_JPEG = 1 << 20  # a thumbnail past this is not one: the buffer is dropped
NO_AUDIO = "does not contain any stream"

# FFmpeg's log lines this monitor acts on: the metadata filter prints each keyframe's
# detector keys (blackdetect, freezedetect), silencedetect logs its own.
_METADATA = re.compile(r"^\[Parsed_metadata_\d+ @ [^\]]+\] (lavfi\.[\w.]+)=")
_SILENCE = re.compile(r"^\[silencedetect @ [^\]]+\] (silence_start|silence_end):")
_EDGES = {
    "lavfi.black_start": ("black", True),
    "lavfi.black_end": ("black", False),
    "lavfi.freezedetect.freeze_start": ("frozen", True),
    "lavfi.freezedetect.freeze_end": ("frozen", False),
    "silence_start": ("silent", True),
    "silence_end": ("silent", False),
}




def edge(line: str) -> tuple[str, bool] | None:
    """A detector's start or end in one FFmpeg log line: (kind, started)."""
    m = _METADATA.match(line) or _SILENCE.match(line)
    return _EDGES.get(m.group(1)) if m else None


def ffmpeg_argv(args: argparse.Namespace, audio: bool) -> list[str]:
    """The monitor's FFmpeg: keyframes only, one thread, detectors and the thumbnail's
    JPEGs on stdout; audio (mono, for silencedetect) unless the path has none."""
    hold = f"{args.hold_seconds:g}"
    video = (f"scale={args.width}:-2,blackdetect=d=0:pix_th={args.black_pixel}:pic_th={args.black_ratio},"
             f"freezedetect=n={args.freeze_db}dB:d={hold},metadata=mode=print")  # fmt: skip
    argv = [args.ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "info",
            "-threads", "1", "-skip_frame", "nokey", "-rtsp_transport", "tcp", "-timeout", "5000000",
            "-i", f"{args.rtsp.rstrip('/')}/{args.path}",
            "-map", "0:v:0?", "-vf", video, "-c:v", "mjpeg", "-q:v", str(args.jpeg_quality),
            "-f", "image2pipe", "pipe:1"]  # fmt: skip
    if audio:
        argv += ["-map", "0:a:0?", "-af", f"aformat=channel_layouts=mono,silencedetect=n={args.silence_db}dB:d={hold}",
                 "-f", "null", "-"]  # fmt: skip
    return argv


@dataclass
class Detector:
    """One condition as FFmpeg saw it: when its detector started (this monitor's
    clock), None while it has not."""

    since: float | None = None
    hold: float = 0.0  # more time it must last on this clock before it counts

    def active(self, now: float) -> bool:
        return self.since is not None and now - self.since >= self.hold


@dataclass
class Monitor:
    """What the HTTP side serves; written by the FFmpeg readers, under ``lock``."""

    hold_seconds: float
    clock: Callable[[], float] = time.monotonic
    lock: threading.Lock = field(default_factory=threading.Lock)
    running: bool = False
    restarts: int = 0
    thumbnail: bytes = b""
    thumbnail_at: float | None = None
    started: float = field(default_factory=time.monotonic)
    detectors: dict[str, Detector] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    last_failure: str = ""  # FFmpeg's last words when it last exited without reading

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """A new FFmpeg knows nothing yet: no condition holds until it sees one."""
        with self.lock:
            # blackdetect flags the first black keyframe; freezedetect and silencedetect
            # flag a state that has already lasted hold_seconds of media time.
            self.detectors = {"black": Detector(hold=self.hold_seconds), "frozen": Detector(), "silent": Detector()}

    def on_edge(self, kind: str, started: bool) -> None:
        with self.lock:
            det = self.detectors[kind]
            if started and det.since is None:
                det.since = self.clock()
            elif not started:
                det.since = None
        log("detector", kind=kind, state="start" if started else "end")

    def on_jpeg(self, data: bytes) -> None:
        with self.lock:
            self.thumbnail, self.thumbnail_at = data, self.clock()

    def snapshot(self) -> dict[str, Any]:
        """The state as the operator reads it (``GET /v1/state``)."""
        now = self.clock()
        with self.lock:
            age = None if self.thumbnail_at is None else round(now - self.thumbnail_at, 3)
            doc: dict[str, Any] = {"running": self.running, "restarts": self.restarts, "thumbnailAgeSeconds": age,
                                   "holdSeconds": self.hold_seconds}  # fmt: skip
            active = {kind: self.running and det.active(now) for kind, det in self.detectors.items()}
            # A black picture does not change either: one fault, one alarm (Black).
            active["frozen"] = active["frozen"] and not active["black"]
            for kind, det in self.detectors.items():
                on = active[kind]
                doc[kind] = {"active": on, "forSeconds": round(now - det.since, 1) if on and det.since else None}
        return doc

    def metrics(self) -> str:
        """Prometheus text: one gauge per condition, the thumbnail's age, FFmpeg up."""
        doc = self.snapshot()
        lines = []
        for kind in KINDS:
            lines += [f"# HELP streamdist_input_{kind} 1 while the input is {kind} for longer than the hold time.",
                      f"# TYPE streamdist_input_{kind} gauge",
                      f"streamdist_input_{kind} {int(doc[kind]['active'])}"]  # fmt: skip
        lines += ["# HELP streamdist_input_monitor_up 1 while the confidence monitor's FFmpeg reads the input.",
                  "# TYPE streamdist_input_monitor_up gauge", f"streamdist_input_monitor_up {int(doc['running'])}",
                  "# HELP streamdist_input_monitor_restarts_total FFmpeg starts after the first.",
                  "# TYPE streamdist_input_monitor_restarts_total counter",
                  f"streamdist_input_monitor_restarts_total {doc['restarts']}"]  # fmt: skip
        if doc["thumbnailAgeSeconds"] is not None:
            lines += ["# HELP streamdist_input_thumbnail_age_seconds Seconds since the latest keyframe was decoded.",
                      "# TYPE streamdist_input_thumbnail_age_seconds gauge",
                      f"streamdist_input_thumbnail_age_seconds {doc['thumbnailAgeSeconds']}"]  # fmt: skip
        return "\n".join(lines) + "\n"


def split_jpegs(stream: IO[bytes], sink: Callable[[bytes], None]) -> None:
    """FFmpeg's image2pipe of MJPEG: each picture ends with the EOI marker (FF D9),
    which never occurs inside entropy-coded data (an FF there is stuffed with 00)."""
    buf = b""
    while chunk := stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536):
        buf += chunk
        while (end := buf.find(JPEG_END)) >= 0:
            picture, buf = buf[: end + 2], buf[end + 2 :]
            if picture.startswith(b"\xff\xd8"):
                sink(picture)
        if len(buf) > MAX_JPEG:
            buf = b""


class Handler(BaseHTTPRequestHandler):
    monitor: Monitor
    credential: net.Credential | None

    def do_GET(self) -> None:
        # Only the operator: no credential file means nobody (fail closed).
        if self.credential is None or not self.credential.allows(self.headers.get("Authorization")):
            self.reply(401, b"unauthorized\n", "text/plain", {"WWW-Authenticate": 'Basic realm="streamdist"'})
        elif self.path == "/metrics":
            self.reply(200, self.monitor.metrics().encode(), "text/plain; version=0.0.4")
        elif self.path == "/v1/state":
            self.reply(200, json.dumps(self.monitor.snapshot()).encode(), "application/json")
        elif self.path == "/v1/thumbnail.jpg":
            with self.monitor.lock:
                picture = self.monitor.thumbnail
            if picture:
                self.reply(200, picture, "image/jpeg", {"Cache-Control": "no-store"})
            else:
                self.reply(404, b"no keyframe yet\n", "text/plain")
        else:
            self.reply(404, b"not found\n", "text/plain")

    def reply(self, code: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per scrape would drown the detector events


def serve(args: argparse.Namespace, monitor: Monitor) -> ThreadingHTTPServer:
    host, _, port = args.listen.rpartition(":")
    credential = net.Credential.load(Path(args.credential)) if args.credential else None
    if credential is None:
        log("credential-missing", path=args.credential)
    handler = type("BoundHandler", (Handler,), {"monitor": monitor, "credential": credential})
    server = ThreadingHTTPServer((host.strip("[]") or "0.0.0.0", int(port)), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    log("listening", address=args.listen)
    return server


def run_once(args: argparse.Namespace, monitor: Monitor, audio: bool, stopping: threading.Event) -> tuple[int, bool]:
    """One FFmpeg until it exits; returns its code and whether it said the path has
    no audio (then the next one runs without the audio output)."""
    monitor.reset()
    proc = monitor.proc = subprocess.Popen(ffmpeg_argv(args, audio), stdin=subprocess.DEVNULL,
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    jpegs = threading.Thread(target=split_jpegs, args=(proc.stdout, monitor.on_jpeg), daemon=True)
    jpegs.start()
    no_audio = False
    last = ""
    for raw in proc.stderr:
        line = raw.decode(errors="replace").rstrip()
        if found := edge(line):
            monitor.on_edge(*found)
        elif not monitor.running and line.startswith("Output #0"):
            with monitor.lock:
                monitor.running = True
            log("reading", path=args.path, audio=audio)
        if NO_AUDIO in line:
            no_audio = True
        if line and not line.startswith("["):
            last = line
    code = proc.wait()
    jpegs.join(timeout=2)
    with monitor.lock:
        was, monitor.running = monitor.running, False
    # Without a source FFmpeg fails every --retry-seconds: its failure is logged when it
    # changes (or after a run), not every time.
    if (was or last != monitor.last_failure) and not stopping.is_set():
        log("ffmpeg-exit", code=code, was_reading=was, last=last[-200:])
    monitor.last_failure = "" if was else last
    return code, no_audio


def run(args: argparse.Namespace) -> int:
    monitor = Monitor(args.hold_seconds)
    stopping = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        # FFmpeg goes first: its stderr ending ends run_once, then the loop.
        stopping.set()
        if monitor.proc is not None and monitor.proc.poll() is None:
            monitor.proc.terminate()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = serve(args, monitor)
    audio = True
    try:
        while not stopping.is_set():
            _, no_audio = run_once(args, monitor, audio, stopping)
            # A path without audio makes the audio output empty: FFmpeg refuses it.
            audio = audio and not no_audio
            with monitor.lock:
                monitor.restarts += 1
            stopping.wait(args.retry_seconds)
    finally:
        server.shutdown()
    return 0


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, not {text!r}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="streamdist-confidence", description=__doc__.split("\n\n")[0])
    p.add_argument("--path", required=True, help="the readers' path to watch")
    p.add_argument("--rtsp", default="rtsp://127.0.0.1:8554", help="MediaMTX RTSP base URL (default: %(default)s)")
    p.add_argument("--listen", default=":9995", help="HOST:PORT of the HTTP endpoints (default: %(default)s)")
    p.add_argument("--credential", default="", help="JSON {user, pass: sha256:...} every request must carry")
    p.add_argument("--ffmpeg", default="ffmpeg", help="FFmpeg executable (default: %(default)s)")
    p.add_argument("--hold-seconds", type=_positive, default=5.0,
                   help="black, frozen or silent this long counts (default: %(default)s)")  # fmt: skip
    p.add_argument("--width", type=int, default=320, help="thumbnail and detector width (default: %(default)s)")
    p.add_argument("--jpeg-quality", type=int, default=6, help="MJPEG -q:v, 2 best to 31 (default: %(default)s)")
    p.add_argument("--black-pixel", type=float, default=0.10, help="blackdetect pix_th (default: %(default)s)")
    p.add_argument("--black-ratio", type=float, default=0.98, help="blackdetect pic_th (default: %(default)s)")
    p.add_argument("--freeze-db", type=float, default=-50.0, help="freezedetect noise, dB (default: %(default)s)")
    p.add_argument("--silence-db", type=float, default=-60.0, help="silencedetect noise, dB (default: %(default)s)")
    p.add_argument("--retry-seconds", type=_positive, default=2.0,
                   help="wait before starting FFmpeg again (default: %(default)s)")  # fmt: skip
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
