"""streamdist.mediamtx against a real MediaMTX (the pinned release) on loopback.

A publisher is FFmpeg's lavfi test pattern (H.264 + AAC, 2 s GOP) over RTSP;
readers are FFmpeg pulling over RTSP, RTMP and SRT, as output pods and other
clients would. Asserts the health values the operator puts into a StreamInput's
status.

With ``STREAMDIST_UPDATE_FIXTURES=1`` the real API responses seen here are written
to tests/fixtures/mediamtx/, which the unit tests parse.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from streamdist import mediamtx as api
from streamdist_dev import media

pytestmark = pytest.mark.media

ROOT = Path(__file__).resolve().parents[2]

FIXTURES = ROOT / "tests" / "fixtures" / "mediamtx"
UPDATE = os.environ.get("STREAMDIST_UPDATE_FIXTURES") == "1"
PATH = "in"


def save(name: str, doc: object) -> None:
    """Write a real API response as a fixture (only when asked to)."""
    if UPDATE:
        FIXTURES.mkdir(parents=True, exist_ok=True)
        (FIXTURES / name).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


@pytest.fixture
def group(tmp_path):
    media.require_media_tools()
    with media.ProcessGroup(logdir=tmp_path / "logs") as g:
        yield g


@pytest.fixture
def router(tmp_path, group):
    """A MediaMTX as the operator runs one per input: one configured path, API on,
    RTSP for readers, plus RTMP and SRT so readers of those kinds can be seen."""
    cfg = media.mediamtx_config(
        api_port=media.free_tcp_port(),
        rtsp_port=media.free_tcp_port(),
        rtmp_port=media.free_tcp_port(),
        srt_port=media.free_udp_port(),
        paths={PATH: {}},
    )
    return media.start_mediamtx(cfg, tmp_path / "mtx", group=group)


def test_info_reports_pinned_version(router):
    info = router.api().get_json("/v3/info")
    save("info.json", info)
    assert info["version"] == media.read_versions_env()["MEDIAMTX_VERSION"]


def test_no_publisher(router):
    client = router.api()
    save("paths_list_no_publisher.json", client.get_json("/v3/paths/list"))
    save("path_get_no_publisher.json", client.get_json(f"/v3/paths/get/{PATH}"))

    first = client.path(PATH)
    assert first is not None
    assert (first.ready, first.online, first.tracks, first.reader_count) == (False, False, (), 0)
    assert first.ready_time is None and first.source_type is None
    time.sleep(0.5)
    health, _ = client.health(PATH, first)
    assert health == api.InputHealth(ready=False, tracks=(), bitrate_kbps=None, readers=0, last_source_time=None)
    assert [p.name for p in client.paths()] == [PATH]
    # a path the router does not know is None, not an error
    assert client.path("unknown") is None
    # servers switched off answer 404: no sessions of that kind
    assert client.sessions("webRTCSession") == []


def test_unreachable_router_raises_with_no_status():
    port = media.free_tcp_port()
    client = api.MediaMTXClient(f"http://127.0.0.1:{port}", timeout=1.0)
    with pytest.raises(api.MediaMTXAPIError) as err:
        client.path(PATH)
    assert err.value.status is None


def test_publisher_then_readers_then_gone(router, group, tmp_path):
    client = router.api()
    t_start = datetime.now(UTC)
    source = media.start_source("rtsp", router.rtsp_url(PATH), group=group)
    first = router.wait_path_ready(PATH, timeout=20)

    # --- publisher only
    time.sleep(3.0)
    health, second = client.health(PATH, first)
    save("path_get_publisher.json", client.get_json(f"/v3/paths/get/{PATH}"))
    save("rtspsessions_list_publisher.json", client.get_json("/v3/rtspsessions/list"))
    assert health.ready is True
    assert health.tracks == ("H264", "MPEG-4 Audio")
    assert health.readers == 0
    assert health.last_source_time is not None
    assert t_start - timedelta(seconds=5) <= health.last_source_time <= datetime.now(UTC)
    # 800 kbit/s video + 128 kbit/s audio, plus RTP/RTSP framing
    assert health.bitrate_kbps is not None and 400 < health.bitrate_kbps < 3000, health
    assert second.source_type == "rtspSession"

    # --- three readers, one per protocol an output could pull with
    def reader(name: str, *input_args: str) -> media.ManagedProcess:
        """FFmpeg reading the path and throwing the packets away, as an output would pull."""
        argv = ["ffmpeg", "-nostdin", "-loglevel", "warning", *input_args, "-c", "copy", "-f", "null", "-"]
        return group.start(name, argv)

    readers = [
        reader("reader-rtsp", "-rtsp_transport", "tcp", "-i", router.rtsp_url(PATH)),
        reader("reader-rtmp", "-i", router.rtmp_url(PATH)),
        reader("reader-srt", "-i", router.srt_url(PATH, mode="read")),
    ]
    with_readers = media.wait_for(
        lambda: (s := client.path(PATH)) and s.reader_count == 3 and s,
        timeout=20,
        what="3 readers",
    )
    sessions_before = client.readers_of(with_readers)
    time.sleep(2.0)
    health, after = client.health(PATH, with_readers)
    sessions_after = client.readers_of(after)
    save("path_get_publisher_readers.json", client.get_json(f"/v3/paths/get/{PATH}"))
    save("paths_list_publisher_readers.json", client.get_json("/v3/paths/list"))
    save("rtspsessions_list_publisher_readers.json", client.get_json("/v3/rtspsessions/list"))
    save("rtmpconns_list_reader.json", client.get_json("/v3/rtmpconns/list"))
    save("srtconns_list_reader.json", client.get_json("/v3/srtconns/list"))

    assert all(r.alive() for r in readers), group.logs()
    assert health.readers == 3
    assert sorted(r.type for r in after.readers) == ["rtmpConn", "rtspSession", "srtConn"]
    assert sorted(s.type for s in sessions_after) == ["rtmpConn", "rtspSession", "srtConn"]
    assert all(s.state == "read" and s.path == PATH for s in sessions_after)
    assert all(s.bytes_sent > 0 for s in sessions_after)
    # every reader is being fed: none stalled between the two samples
    assert api.stalled_readers(sessions_before, sessions_after) == []
    assert after.bytes_sent > with_readers.bytes_sent

    # --- a reader leaves
    readers[1].stop()
    media.wait_for(lambda: client.path(PATH).reader_count == 2, timeout=15, what="2 readers")

    # --- the publisher goes away: not ready, no tracks, no rate
    source.stop()
    gone = media.wait_for(lambda: (s := client.path(PATH)) and not s.ready and s, timeout=15, what="path not ready")
    save("path_get_publisher_gone.json", client.get_json(f"/v3/paths/get/{PATH}"))
    health = api.input_health(after, gone)
    assert (health.ready, health.tracks, health.bitrate_kbps, health.last_source_time) == (False, (), None, None)


def test_republish_resets_counter_and_time(router, group):
    """A new publisher starts a new byte counter and a new readyTime: the rate across
    the change is unknown (None), never negative or huge."""
    client = router.api()
    src = media.start_source("rtsp", router.rtsp_url(PATH), group=group, name="src-a")
    a = router.wait_path_ready(PATH, timeout=20)
    time.sleep(2.5)
    a2 = client.path(PATH)
    src.stop()
    media.wait_for(lambda: not client.path(PATH).ready, timeout=15, what="unpublish")
    media.start_source("rtsp", router.rtsp_url(PATH), group=group, name="src-b")
    b = router.wait_path_ready(PATH, timeout=20)
    assert b.ready_time is not None and a.ready_time is not None and b.ready_time > a.ready_time
    assert api.bitrate_kbps(a2, b) is None
