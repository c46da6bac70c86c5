"""Parsing of real MediaMTX v1.20 API responses (saved by tests/media/test_mediamtx_api.py
with STREAMDIST_UPDATE_FIXTURES=1) and the pure health computations. No server."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from streamdist.mediamtx import (
    InputHealth,
    PathSample,
    Session,
    bitrate_kbps,
    input_health,
    parse_path,
    parse_path_list,
    parse_sessions,
    parse_time,
    reader_sessions,
    stalled_readers,
)

ROOT = Path(__file__).resolve().parents[2]

FIXTURES = ROOT / "tests" / "fixtures" / "mediamtx"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def sample(**over: Any) -> PathSample:
    base: dict[str, Any] = dict(
        name="in",
        ready=True,
        online=True,
        ready_time=datetime(2026, 1, 1, tzinfo=UTC),
        source_type="rtspSession",
        source_id="x",
        tracks=("H264",),
        bytes_received=0,
        bytes_sent=0,
        readers=(),
        sampled_at=0.0,
    )
    base.update(over)
    return PathSample(**base)


# ------------------------------------------------------------------ real responses


def test_no_publisher_fixture():
    p = parse_path(load("path_get_no_publisher.json"), sampled_at=1.0)
    assert p.name == "in"
    assert (p.ready, p.online, p.tracks, p.readers, p.ready_time) == (False, False, (), (), None)
    assert (p.source_type, p.source_id, p.bytes_received) == (None, None, 0)
    listed = parse_path_list(load("paths_list_no_publisher.json"), sampled_at=1.0)
    assert listed == [p]


def test_publisher_fixture():
    p = parse_path(load("path_get_publisher.json"), sampled_at=5.0)
    assert p.ready and p.online
    assert p.tracks == ("H264", "MPEG-4 Audio")
    assert p.source_type == "rtspSession"
    assert p.bytes_received > 0
    assert p.reader_count == 0
    assert isinstance(p.ready_time, datetime) and p.ready_time.tzinfo is not None
    assert p.sampled_at == 5.0


def test_publisher_with_readers_fixture():
    p = parse_path(load("path_get_publisher_readers.json"), sampled_at=0.0)
    assert p.reader_count == 3
    assert sorted(r.type for r in p.readers) == ["rtmpConn", "rtspSession", "srtConn"]
    assert p.bytes_sent > 0
    listed = parse_path_list(load("paths_list_publisher_readers.json"), sampled_at=0.0)
    assert [x.name for x in listed] == ["in"] and listed[0].reader_count == 3


def test_publisher_gone_fixture():
    gone = parse_path(load("path_get_publisher_gone.json"), sampled_at=9.0)
    assert not gone.ready and gone.tracks == () and gone.ready_time is None
    health = input_health(parse_path(load("path_get_publisher.json"), 1.0), gone)
    assert health == InputHealth(ready=False, tracks=(), bitrate_kbps=None, readers=0, last_source_time=None)


@pytest.mark.parametrize(
    ("fixture", "kind"),
    [
        ("rtspsessions_list_publisher_readers.json", "rtspSession"),
        ("rtmpconns_list_reader.json", "rtmpConn"),
        ("srtconns_list_reader.json", "srtConn"),
    ],
)
def test_session_lists(fixture: str, kind: str):
    sessions = parse_sessions(kind, load(fixture))
    assert sessions, fixture
    for s in sessions:
        assert s.type == kind and s.path == "in" and s.id
        assert s.state in ("read", "publish")
        assert s.remote_addr.startswith("127.0.0.1:")
        assert s.created is not None
    readers = [s for s in sessions if s.state == "read"]
    assert len(readers) == 1 and readers[0].bytes_sent > 0


def test_rtsp_sessions_include_the_publisher():
    sessions = parse_sessions("rtspSession", load("rtspsessions_list_publisher.json"))
    assert [s.state for s in sessions] == ["publish"]
    assert sessions[0].bytes_received > 0
    path = parse_path(load("path_get_publisher.json"), 0.0)
    assert sessions[0].id == path.source_id


def test_reader_sessions_match_path_readers():
    path = parse_path(load("path_get_publisher_readers.json"), 0.0)
    all_sessions = (
        parse_sessions("rtspSession", load("rtspsessions_list_publisher_readers.json"))
        + parse_sessions("rtmpConn", load("rtmpconns_list_reader.json"))
        + parse_sessions("srtConn", load("srtconns_list_reader.json"))
    )
    readers = reader_sessions(path, all_sessions)
    assert sorted(s.type for s in readers) == ["rtmpConn", "rtspSession", "srtConn"]
    assert all(s.state == "read" for s in readers)  # the RTSP publisher is not a reader


def test_info_fixture_is_the_pinned_release():
    versions = dict(
        line.split("=", 1)
        for line in (ROOT / "hack" / "versions.env").read_text().splitlines()
        if line and not line.startswith("#") and "=" in line
    )
    assert load("info.json")["version"] == versions["MEDIAMTX_VERSION"]


# ------------------------------------------------------- older field names fallback


def test_deprecated_field_names_are_understood():
    doc = {
        "name": "cam",
        "ready": True,
        "readyTime": "2024-05-01T10:00:00.123456789+02:00",
        "source": {"type": "srtConn", "id": "a"},
        "tracks": ["H265", "Opus"],
        "readers": [{"type": "rtspSession", "id": "r"}],
        "bytesReceived": 10,
        "bytesSent": 20,
    }
    p = parse_path(doc, 0.0)
    assert p.ready and p.online and p.tracks == ("H265", "Opus")
    assert (p.bytes_received, p.bytes_sent, p.reader_count) == (10, 20, 1)
    assert p.ready_time == datetime(2024, 5, 1, 8, 0, 0, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, None),
        ("", None),
        ("0001-01-01T00:00:00Z", None),
        ("2026-11-24T20:07:52.849289643Z", datetime(2026, 11, 24, 20, 7, 52, 849289, tzinfo=UTC)),
        ("2026-11-24T20:07:52Z", datetime(2026, 11, 24, 20, 7, 52, tzinfo=UTC)),
        ("2026-11-24T20:07:52.5-01:00", datetime(2026, 11, 24, 21, 7, 52, 500000, tzinfo=UTC)),
    ],
)
def test_parse_time(text, expected):
    assert parse_time(text) == expected


# ------------------------------------------------------------------------ bitrate


def test_bitrate_from_two_samples():
    a = sample(bytes_received=1_000_000, sampled_at=10.0)
    b = sample(bytes_received=1_250_000, sampled_at=12.0)
    assert bitrate_kbps(a, b) == pytest.approx(1000.0)  # 250 kB in 2 s = 1 Mbit/s


@pytest.mark.parametrize(
    ("prev", "cur"),
    [
        (None, sample(bytes_received=10, sampled_at=1.0)),
        (sample(bytes_received=10, sampled_at=1.0), sample(bytes_received=20, sampled_at=1.0)),  # no time
        (sample(bytes_received=10, sampled_at=2.0), sample(bytes_received=20, sampled_at=1.0)),  # backwards
        (sample(bytes_received=500, sampled_at=1.0), sample(bytes_received=20, sampled_at=2.0)),  # reset
        (sample(bytes_received=10, sampled_at=1.0), sample(name="other", bytes_received=20, sampled_at=2.0)),
        (sample(bytes_received=10, sampled_at=1.0), sample(ready=False, bytes_received=20, sampled_at=2.0)),
        (  # a new source (new readyTime) whose counter happens to be higher
            sample(bytes_received=10, sampled_at=1.0),
            sample(bytes_received=9_999, sampled_at=2.0, ready_time=datetime(2026, 2, 1, tzinfo=UTC)),
        ),
    ],
)
def test_bitrate_unknown(prev, cur):
    assert bitrate_kbps(prev, cur) is None


def test_bitrate_between_real_samples():
    gone = parse_path(load("path_get_publisher_gone.json"), 10.0)
    live = parse_path(load("path_get_publisher.json"), 5.0)
    assert bitrate_kbps(live, gone) is None


def test_input_health_rounds_and_counts():
    a = sample(bytes_received=0, sampled_at=0.0)
    b = sample(
        bytes_received=123_456,
        sampled_at=1.0,
        tracks=("H264", "MPEG-4 Audio"),
        readers=({"type": "rtspSession", "id": "1"},),
    )  # type: ignore[arg-type]
    h = input_health(a, b)
    assert h == InputHealth(
        ready=True,
        tracks=("H264", "MPEG-4 Audio"),
        bitrate_kbps=987.6,
        readers=1,
        last_source_time=datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_input_health_of_unknown_path():
    assert input_health(None, None).ready is False


# ------------------------------------------------------------------------- stalls


def _sess(id_: str, sent: int, kind: str = "rtspSession") -> Session:
    return Session(
        type=kind,
        id=id_,
        path="in",
        state="read",
        remote_addr="127.0.0.1:1",
        created=None,
        bytes_received=0,
        bytes_sent=sent,
    )


def test_stalled_readers():
    before = [_sess("a", 100), _sess("b", 100), _sess("c", 5, "srtConn")]
    after = [_sess("a", 200), _sess("b", 100), _sess("c", 5, "srtConn"), _sess("new", 0)]
    assert [s.id for s in stalled_readers(before, after)] == ["b", "c"]
