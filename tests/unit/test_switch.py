"""The backup switch's program (images/ffmpeg/streamdist_switch.py): command lines, the
publisher's program, and one short real run of its loop against a fake control API
and a stand-in FFmpeg (fake_ffmpeg.py), with its state endpoint read as the operator
reads it. The real thing, with MediaMTX and FFmpeg, is tests/media/test_backup.py."""

import base64
import itertools
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from switchlib_import import SWITCH, SWITCH_DIR, net, sw, ts

FAKE = Path(__file__).with_name("fake_ffmpeg.py")
ADTS = bytes([0xFF, 0xF1, 0x4C, 0x80, 0x01, 0x5F, 0xFC]) + b"\x21\x10\x04"
AAC = ts.Track("audio", "aac", 0x0F, 0xC0, b"")
MP2 = ts.Track("audio", "mp2", 0x03, 0xC0, b"")


def test_reader_and_publisher_command_lines():
    reader = sw.reader_argv("ffmpeg", "rtsp://127.0.0.1:8554/", "cam-primary")
    assert reader[reader.index("-i") + 1] == "rtsp://127.0.0.1:8554/cam-primary" and reader[-1] == "pipe:1"
    assert reader[reader.index("-omit_video_pes_length") + 1] == "0" and "-flush_packets" in reader
    publisher = sw.publisher_argv("ffmpeg", "rtsp://127.0.0.1:8554", "cam", "aac")
    assert publisher[-1] == "rtsp://127.0.0.1:8554/cam?streamdist=switch" and "aac_adtstoasc" in publisher
    assert "aac_adtstoasc" not in sw.publisher_argv("ffmpeg", "rtsp://127.0.0.1:8554", "cam", "mp2")


@pytest.mark.parametrize(("track", "header", "signature"), [
    (AAC, ADTS, (1, 3, 2)),
    (AAC, b"\x00" * 8, None),
    (MP2, bytes([0xFF, 0xFD, 0x48, 0xC4, 0, 0, 0]), (14, 2, 3)),
    (None, ADTS, None),
])  # fmt: skip
def test_audio_signature(track, header, signature):
    assert sw.audio_signature(track, header) == signature


def test_a_program_change_is_what_restarts_the_publisher():
    video = ts.Track("video", "h264", 0x1B, 0xE0, b"")
    one = sw.make_program(video, AAC, ADTS)
    assert one.aac_config == ts.adts_config(ADTS) and sw.signature_known(one)
    assert one.key == sw.make_program(video, ts.Track("audio", "aac", 0x0F, 0xC1, b"\x0a"), ADTS).key
    mono = bytes([0xFF, 0xF1, 0x4C, 0x40, 0x01, 0x5F, 0xFC])
    assert one.key != sw.make_program(video, AAC, mono).key
    assert not sw.signature_known(sw.make_program(video, AAC, b""))  # wait for the first audio frame


def test_parse_args_defaults_and_declared_format():
    args = sw.parse_args(["--path", "cam"])
    assert (args.primary, args.backup, args.loss_after_ms) == ("cam-primary", "cam-backup", 300)
    assert sw.declared_format(args) is None
    args = sw.parse_args(["--path", "cam", "--width", "1280", "--height", "720", "--fps", "30000/1001", "--audio", "none"])
    assert sw.declared_format(args).describe() == "h264 1280x720@30000/1001 yuv420p, no audio"
    for bad in (["--loss-after-ms", "0"], ["--fps", "x"], ["--audio", "flac"]):
        with pytest.raises(SystemExit):
            sw.parse_args(["--path", "cam", *bad])


# ------------------------------------------------------- one real run, fake servers


class _FakeApi:
    """A /v3/paths/list where both ingests are available."""

    def __init__(self):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                items = [{"name": n, "available": True} for n in ("cam", "cam-primary", "cam-backup")]
                body = json.dumps({"pageCount": 1, "items": items}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class _Lines:
    def __init__(self, stream):
        self.q: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=lambda: [self.q.put(ln.rstrip("\n")) for ln in stream], daemon=True).start()

    def wait(self, pattern, timeout=10.0):
        while True:
            try:
                line = self.q.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r}; seen: {self.seen}") from None
            self.seen.append(line)
            if re.search(pattern, line):
                return line


def _state(port, password="derived-pass"):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/state")
    req.add_header("Authorization", "Basic " + base64.b64encode(f"streamdist:{password}".encode()).decode())
    with urllib.request.urlopen(req, timeout=2) as resp:
        return json.loads(resp.read())


def test_real_run_cuts_on_loss_returns_at_a_keyframe_plays_the_slate_and_stops_everything(tmp_path):
    api = _FakeApi()
    cred = tmp_path / "cred.json"
    cred.write_text(json.dumps({"user": "streamdist", "pass": net.hashed("derived-pass")}))
    env = {**os.environ, "FAKE_DIR": str(tmp_path), "PYTHONPATH": str(SWITCH_DIR), "http_proxy": "http://127.0.0.1:1"}
    proc = subprocess.Popen(
        [sys.executable, str(SWITCH), "--path", "cam", "--api", api.url, "--ffmpeg", str(FAKE), "--ffprobe",
         str(FAKE), "--state-address", "127.0.0.1:0", "--state-credential", str(cred),
         "--workdir", str(tmp_path), "--slate-text", "back soon"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    lines = _Lines(proc.stdout)
    try:
        port = int(re.search(r"state_port=(\d+)", lines.wait(r"^event=started "))[1])
        lines.wait(r"^event=switch from=none to=(primary|backup) ")
        lines.wait(r"^event=slate-ready ")
        if _state(port)["onAir"] != "primary":
            lines.wait(r"^event=switch from=backup to=primary gap_ms=\d+ reason=returned")
        with pytest.raises(urllib.error.HTTPError) as denied:
            _state(port, password="guess")
        assert denied.value.code == 401
        (tmp_path / "silent-cam-primary").touch()  # the primary goes quiet
        cut = lines.wait(r"^event=switch from=primary to=backup ")
        assert 250 <= int(re.search(r"gap_ms=(\d+)", cut)[1]) <= 700 and cut.endswith("reason=lost")
        (tmp_path / "silent-cam-primary").unlink()  # ... and comes back: at its keyframe, nearly no gap
        back = lines.wait(r"^event=switch from=backup to=primary ")
        assert int(re.search(r"gap_ms=(\d+)", back)[1]) < 200 and back.endswith("reason=returned")
        (tmp_path / "silent-cam-backup").touch()  # the backup goes first (the primary is on air: no switch)
        lines.wait(r"^event=source-lost role=backup ")
        (tmp_path / "silent-cam-primary").touch()  # ... then the primary: nothing left but the slate
        lines.wait(r"^event=switch from=primary to=slate ")
        state = _state(port)
        assert state["onAir"] == "slate" and state["slate"]["ready"] and state["slate"]["format"]["width"] == 640
        assert [s["to"] for s in state["switches"]][-3:] == ["backup", "primary", "slate"]
        assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", s["at"]) for s in state["switches"])
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        lines.wait(r"^event=stopped$")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        api.server.shutdown()
    assert (tmp_path / "slate-text.txt").read_text() == "back soon"
    for pid, _ in (ln.split(" ", 1) for ln in (tmp_path / "calls").read_text().splitlines()):
        status = Path(f"/proc/{pid}/status")
        assert not status.exists() or "zombie" in status.read_text(), f"child {pid} outlived the switch"
    demux = ts.Demuxer()
    out = demux.feed((tmp_path / "published.ts").read_bytes(), 0.0) + demux.flush(0.0)
    video = [f for f in out if f.kind == "video"]
    assert len(video) > 50 and video[0].key
    assert all(b.dts > a.dts for a, b in itertools.pairwise(video)), "the publisher's timestamps went back"
    audio = [f.dts for f in out if f.kind == "audio"]
    assert all(b > a for a, b in itertools.pairwise(audio))
