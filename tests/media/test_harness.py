"""Self-test of dev/streamdist_dev/media.py: each piece the media tests build on works
against real MediaMTX and FFmpeg on loopback.

* ingest: the test source publishes over each input protocol (UDP MPEG-TS, SRT with
  and without passphrase, RTMP, RTSP) into a MediaMTX configured as for a
  StreamInput, and what MediaMTX serves over RTSP is recorded and probed: at least
  5 s of decoded H.264 frames plus AAC (or MP2) audio;
* destinations: the receivers (a MediaMTX taking RTMP, RTMPS, RTSP, SRT pushes; UDP
  and SRT listeners; an SRT caller for listener-mode outputs) record a pushed stream.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from streamdist_dev import media

pytestmark = pytest.mark.media

RECORD_SECONDS = 7.5  # readers join mid-GOP: up to 2 s (one GOP) before the first decodable frame
PUSH_RECORD_SECONDS = 8.5  # recorder runs from before the source starts: also covers its start-up


@pytest.fixture
def group(tmp_path):
    media.require_media_tools()
    with media.ProcessGroup(logdir=tmp_path / "logs") as g:
        yield g


def _ingest_router(tmp_path: Path, group: media.ProcessGroup, protocol: str, passphrase: str | None):
    """A MediaMTX as for one StreamInput: ingest on ``protocol``, RTSP for readers."""
    api, rtsp = media.free_tcp_port(), media.free_tcp_port()
    kwargs: dict = {}
    path_conf: dict = {}
    ingest_port = None
    if protocol == "udp":
        ingest_port = media.free_udp_port()
        path_conf["source"] = f"udp+mpegts://{media.LOOPBACK}:{ingest_port}"
    elif protocol == "srt":
        kwargs["srt_port"] = media.free_udp_port()
        if passphrase:
            path_conf["srtPublishPassphrase"] = passphrase
    elif protocol == "rtmp":
        kwargs["rtmp_port"] = media.free_tcp_port()
    cfg = media.mediamtx_config(api_port=api, rtsp_port=rtsp, paths={"in": path_conf}, **kwargs)
    mtx = media.start_mediamtx(cfg, tmp_path / "router", group=group)
    if protocol == "udp":
        url = f"udp://{media.LOOPBACK}:{ingest_port}"
    elif protocol == "srt":
        url = mtx.srt_url("in", "publish", passphrase)
    elif protocol == "rtmp":
        url = mtx.rtmp_url("in")
    else:
        url = mtx.rtsp_url("in")
    return mtx, url


@pytest.mark.parametrize(
    ("protocol", "passphrase", "audio"),
    [
        ("udp", None, "aac"),
        ("udp", None, "mp2"),
        ("srt", None, "aac"),
        ("srt", "correct-horse-battery", "aac"),
        ("rtmp", None, "aac"),
        ("rtsp", None, "aac"),
    ],
    ids=["udp", "udp-mp2", "srt", "srt-passphrase", "rtmp", "rtsp"],
)
def test_ingest_then_read_back(tmp_path, group, protocol, passphrase, audio):
    mtx, url = _ingest_router(tmp_path, group, protocol, passphrase)
    media.start_source(protocol, url, group=group, passphrase=passphrase, audio=audio)
    sample = mtx.wait_path_ready("in", timeout=20)
    expected_audio = "MPEG-4 Audio" if audio == "aac" else "MPEG-1/2 Audio"
    assert sample.tracks == ("H264", expected_audio), sample

    out = tmp_path / "out.ts"
    rec = media.record(mtx.rtsp_url("in"), out, seconds=RECORD_SECONDS, group=group)
    assert rec.wait(RECORD_SECONDS + 20) == 0, group.logs()
    probe = media.ffprobe_streams(out)
    media.assert_h264_aac(probe, min_seconds=5.0, audio_codec=audio)


def test_srt_wrong_passphrase_is_refused(tmp_path, group):
    mtx, _ = _ingest_router(tmp_path, group, "srt", "correct-horse-battery")
    src = media.start_source("srt", mtx.srt_url("in", "publish", "wrong-passphrase-0"), group=group)
    assert src.wait(20) != 0
    sample = mtx.path("in")
    assert sample is not None and not sample.ready


@pytest.fixture
def receiver(tmp_path, group):
    return media.start_receiver_server(tmp_path / "receiver", group=group)


@pytest.mark.parametrize("protocol", ["rtmp", "rtmps", "rtsp", "srt"])
def test_receiver_server_takes_push(tmp_path, group, receiver, protocol):
    url = {
        "rtmp": receiver.rtmp_url,
        "rtmps": receiver.rtmps_url,
        "rtsp": receiver.rtsp_url,
        "srt": receiver.srt_url,
    }[protocol]("out")
    media.start_source(protocol, url, group=group)
    receiver.wait_path_ready("out", timeout=20)
    out = tmp_path / "got.ts"
    rec = receiver.record("out", out, seconds=RECORD_SECONDS, group=group)
    assert rec.wait(RECORD_SECONDS + 20) == 0, group.logs()
    media.assert_h264_aac(media.ffprobe_streams(out), min_seconds=5.0)


def test_receiver_server_srt_passphrase(tmp_path, group):
    receiver = media.start_receiver_server(tmp_path / "rx", group=group, srt_passphrase="sixteen-chars-ok")
    assert "passphrase=sixteen-chars-ok" in receiver.srt_url("out")
    media.start_source("srt", receiver.srt_url("out"), group=group)
    receiver.wait_path_ready("out", timeout=20)


def test_udp_recorder(tmp_path, group):
    port = media.free_udp_port()
    out = tmp_path / "udp.ts"
    rec = media.start_udp_recorder(port, out, seconds=PUSH_RECORD_SECONDS, group=group)
    time.sleep(0.5)  # let it bind
    media.start_source("udp", f"udp://{media.LOOPBACK}:{port}", group=group)
    assert rec.wait(PUSH_RECORD_SECONDS + 25) == 0, group.logs()
    media.assert_h264_aac(media.ffprobe_streams(out), min_seconds=5.0)


@pytest.mark.parametrize("tool", ["ffmpeg", "srt-live-transmit"])
def test_srt_listener_recorder(tmp_path, group, tool):
    """Destination of an SRT caller output."""
    port = media.free_udp_port()
    out = tmp_path / "srt.ts"
    rec = media.start_srt_listener_recorder(
        port, out, passphrase="0123456789abcdef", seconds=PUSH_RECORD_SECONDS, tool=tool, group=group
    )
    time.sleep(0.5)
    media.start_source(
        "srt", f"srt://{media.LOOPBACK}:{port}?mode=caller&pkt_size=1316", passphrase="0123456789abcdef", group=group
    )
    rc = rec.wait(PUSH_RECORD_SECONDS + 25)
    assert rc == 0, group.logs()
    media.assert_h264_aac(media.ffprobe_streams(out), min_seconds=5.0)


def test_srt_caller_recorder_for_listener_output(tmp_path, group):
    """Destination of an SRT listener output: the recorder dials before the output
    listens, and keeps dialling until it does."""
    port = media.free_udp_port()
    out = tmp_path / "srt-caller.ts"
    rec = media.start_srt_caller_recorder(port, out, seconds=PUSH_RECORD_SECONDS + 2, group=group)
    time.sleep(1.0)
    media.start_source("srt", f"srt://{media.LOOPBACK}:{port}?mode=listener&pkt_size=1316", group=group)
    rc = rec.wait(PUSH_RECORD_SECONDS + 25)
    assert rc == 0, group.logs()
    media.assert_h264_aac(media.ffprobe_streams(out), min_seconds=5.0)


def test_process_group_stops_everything(tmp_path):
    media.require_media_tools()
    with media.ProcessGroup(logdir=tmp_path) as g:
        procs = [g.start(f"sleeper{i}", ["sleep", "60"]) for i in range(3)]
        # a process that ignores SIGTERM is killed after the grace period
        stubborn = g.start("stubborn", ["sh", "-c", "trap '' TERM; sleep 60"])
    assert all(not p.alive() for p in [*procs, stubborn])


def test_free_ports_are_distinct():
    tcp = {media.free_tcp_port() for _ in range(20)}
    udp = {media.free_udp_port() for _ in range(20)}
    assert len(tcp) == 20 and len(udp) == 20
