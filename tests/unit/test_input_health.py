"""Live status from real MediaMTX responses (saved fixtures) and pod back-off timing."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from streamdist import mediamtx
from streamdist.handlers.health import next_flow, stalled_for
from streamdist.handlers.memory import Flow, InputObservation
from streamdist.input_plan import health_fields
from streamdist.status import PodView, backoff_overdue, input_phase, quantize_bitrate

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mediamtx"


def _sample(name: str, at: float, bytes_received: int | None = None) -> mediamtx.PathSample:
    doc = json.loads((FIXTURES / name).read_text())
    if bytes_received is not None:
        doc["bytesReceived"] = doc["inboundBytes"] = bytes_received
    return mediamtx.parse_path(doc, at)


def test_live_input_from_real_response():
    first = _sample("path_get_publisher_readers.json", 0.0, 1_000_000)
    second = _sample("path_get_publisher_readers.json", 2.0, 1_500_000)
    health = mediamtx.input_health(first, second)
    seen = InputObservation(health, second)
    fields = health_fields({}, seen)
    assert fields["bitrateKbps"] == 2000
    assert fields["readers"] == health.readers >= 1
    assert fields["tracks"] and all(isinstance(t, str) for t in fields["tracks"])
    assert fields["lastSourceTime"].endswith("Z")
    phase, _ready, recv = input_phase(True, health.ready)
    assert (phase, recv.status) == ("Live", "True")


def test_waiting_input_from_real_response():
    health = mediamtx.input_health(None, _sample("path_get_no_publisher.json", 0.0))
    assert health.ready is False
    assert health_fields({}, InputObservation(health, None))["bitrateKbps"] == 0
    assert input_phase(True, health.ready)[0] == "Waiting"


def test_unreachable_router_writes_no_health():
    assert health_fields({"bitrateKbps": 5}, InputObservation(None, None, error="refused")) == {}
    assert input_phase(True, None)[2].status == "Unknown"


@pytest.mark.parametrize(("previous", "current", "written"),
                         [(None, 5950.4, 5950), (6000, 6300.0, 6000), (6000, 6700.0, 6700), (6000, None, None),
                          (0, 10.0, 10)])
def test_bitrate_written_only_when_it_moved(previous, current, written):
    assert quantize_bitrate(previous, current) == written


def test_flow_measures_bitrate_and_stall():
    f0 = next_flow(None, 1000, 10.0)
    assert f0.bitrate_kbps is None and stalled_for(f0, 30.0) == 0.0
    f1 = next_flow(f0, 1000 + 750_000, 12.0)  # 6 Mbit in 2 s... 750 kB = 6000 kbit
    assert f1.bitrate_kbps == 3000 and f1.grew_at == 12.0
    f2 = next_flow(f1, 1000 + 750_000, 20.0)
    assert f2.bitrate_kbps == 0 and f2.grew_at == 12.0
    assert stalled_for(f2, 27.0) == pytest.approx(15.0)
    # a counter reset (new session) starts over instead of reporting a stall
    assert next_flow(f2, 10, 21.0) == Flow(10, 21.0, 21.0)


def _crashloop(finished: datetime, restarts: int) -> PodView:
    return PodView(name="p", waiting_reason="CrashLoopBackOff", restart_count=restarts, last_finished=finished)


@pytest.mark.parametrize(
    ("waited", "failures", "overdue"),
    [(1.0, 1, False), (4.5, 1, False), (5.5, 1, True), (6.0, 2, False), (7.5, 2, True), (31.0, 9, False),
     (34.0, 9, True)],
)
def test_backoff_overdue_follows_spec(waited, failures, overdue):
    now = datetime(2026, 11, 24, 20, 0, tzinfo=UTC)
    view = _crashloop(now - timedelta(seconds=waited), failures)
    assert backoff_overdue(view, 2, 30, failures, now, grace=3.0) is overdue


def test_backoff_ignores_running_pods():
    now = datetime(2026, 11, 24, 20, 0, tzinfo=UTC)
    view = PodView(name="p", running_since=now, restart_count=4, last_finished=now - timedelta(hours=1))
    assert backoff_overdue(view, 2, 30, 4, now, grace=0) is False


def test_unknown_health_keeps_the_phase_last_written():
    """A replica that just took over has not polled the router yet: a Live input stays
    Live (no SourceLost for nothing), a new one is Waiting; a known answer decides."""
    assert input_phase(True, None, "Live")[0] == "Live"
    assert input_phase(True, None, "Waiting")[0] == "Waiting"
    assert input_phase(True, None, None)[0] == "Waiting"
    assert input_phase(True, None, "Pending")[0] == "Waiting"
    assert input_phase(True, False, "Live")[0] == "Waiting"
    assert input_phase(True, True, "Waiting")[0] == "Live"
    assert input_phase(False, None, "Live")[0] == "Pending"
