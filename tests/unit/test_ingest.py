"""An input's ingest figures from real MediaMTX v1.20.1 responses (tests/fixtures/mediamtx):
parsed, two samples summarised, settled into status.ingest, Degraded decided, and what
plan_input makes of it. Pure.

The SRT fixtures are a publisher on loopback (srtconns_list_publisher.json) and one sending
through 60 ms of added delay and 2 % random loss (srtconns_get_publisher_lossy.json,
path_get_srt_publisher_lossy.json), recorded from the real router."""

import dataclasses
import json
from pathlib import Path

import pytest
from test_input_plan import _cond, _observed, _seen

from streamdist import ingest, mediamtx
from streamdist.handlers.memory import InputObservation
from streamdist.input_plan import plan_input

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mediamtx"


def _set(obj, **changes):
    """A copy with changes, for the parsers' pydantic models and the plain dataclasses alike."""
    return obj.model_copy(update=changes) if hasattr(obj, "model_copy") else dataclasses.replace(obj, **changes)


def _doc(name: str):
    return json.loads((FIXTURES / name).read_text())


CLEAN = mediamtx.parse_srt_conn(_doc("srtconns_list_publisher.json")["items"][0])
LOSSY = mediamtx.parse_srt_conn(_doc("srtconns_get_publisher_lossy.json"))
PATH = mediamtx.parse_path(_doc("paths_list_srt_publisher.json")["items"][0], 0.0)
LOSSY_PATH = mediamtx.parse_path(_doc("path_get_srt_publisher_lossy.json"), 0.0)


def test_srt_publisher_link_as_mediamtx_gives_it():
    assert CLEAN.id == PATH.source_id and PATH.source_type == "srtConn"
    assert (CLEAN.lost, CLEAN.retransmitted, CLEAN.dropped) == (0, 0, 0)
    assert CLEAN.rtt_ms < 1 and CLEAN.received == 1485 and 3 < CLEAN.receive_rate_mbps < 4
    # 2 % loss, 60 ms delay: what the router's SRT receiver counted since the publisher connected
    assert (LOSSY.received, LOSSY.lost, LOSSY.retransmitted, LOSSY.dropped) == (9821, 169, 186, 17)
    assert 60 < LOSSY.rtt_ms < 70


def test_path_gives_frames_in_error_and_track_details_without_a_frame_rate():
    assert PATH.frames_in_error == 0 and LOSSY_PATH.frames_in_error == 0
    video, audio = PATH.track_details
    assert video == mediamtx.TrackDetail(codec="H264", width=640, height=360, profile="Baseline", level="3")
    assert audio == mediamtx.TrackDetail(codec="MPEG-4 Audio", sample_rate=48000, channel_count=2)
    assert [ingest.track_status(t) for t in PATH.track_details] == [
        {"codec": "H264", "width": 640, "height": 360, "profile": "Baseline", "level": "3"},
        {"codec": "MPEG-4 Audio", "sampleRate": 48000, "channelCount": 2},
    ]


@pytest.mark.parametrize(("fixture", "kind", "discarded"), [
    ("rtspsessions_list_publisher_readers.json", "rtspSession", 0),  # outboundRTPPacketsDiscarded
    ("srtconns_list_reader.json", "srtConn", 0),  # outboundFramesDiscarded
])
def test_reader_sessions_carry_what_the_router_discarded(fixture, kind, discarded):
    sessions = mediamtx.parse_sessions(kind, _doc(fixture))
    assert sessions and all(s.discarded == discarded for s in sessions)
    item = dict(_doc(fixture)["items"][0])
    key = "outboundRTPPacketsDiscarded" if kind == "rtspSession" else "outboundFramesDiscarded"
    assert mediamtx.parse_sessions(kind, {"items": [{**item, key: 7}]})[0].discarded == 7


def _reader(discarded: int) -> mediamtx.Session:
    return mediamtx.Session(type="rtspSession", id="r", path="cam", state="read", remote_addr="10.0.0.9:1",
                            created=None, bytes_received=0, bytes_sent=1, discarded=discarded)  # fmt: skip


def _lossy_window() -> tuple[ingest.Sample, ingest.Sample]:
    """Two samples of one connection 25 s apart, as the real lossy run counted them."""
    earlier = _set(LOSSY, received=1688, lost=0, retransmitted=0, dropped=0)
    path = LOSSY_PATH
    return ingest.sample(path, [], earlier), ingest.sample(path, [], LOSSY)


def test_a_window_of_the_lossy_link_gives_rtt_loss_and_resends():
    before, now = _lossy_window()
    summary = ingest.summarize(before, now)
    assert summary.srt and 60 < summary.rtt_ms < 70
    assert summary.loss_percent == pytest.approx(100 * 169 / (9821 - 1688))  # 2.08 %
    assert summary.retransmitted_percent == pytest.approx(100 * 186 / (9821 - 1688))
    assert summary.dropped_packets == 17 and not summary.new_frames_in_error
    assert ingest.degraded(summary, True).reason == "PacketLoss"


def test_a_first_sample_or_a_new_connection_counts_since_the_connection():
    first = ingest.summarize(None, ingest.sample(LOSSY_PATH, [], LOSSY))
    assert first.loss_percent == pytest.approx(100 * 169 / 9821)
    other = _set(ingest.sample(LOSSY_PATH, [], LOSSY), source="another")
    assert ingest.summarize(other, ingest.sample(LOSSY_PATH, [], LOSSY)).loss_percent == first.loss_percent
    # a counter that went back (a new connection under the same id) is not a window either
    back = ingest.sample(LOSSY_PATH, [], _set(LOSSY, received=99999))
    assert ingest.summarize(back, ingest.sample(LOSSY_PATH, [], LOSSY)).loss_percent == first.loss_percent


def test_a_link_of_another_connection_than_the_source_is_ignored():
    assert ingest.sample(PATH, [], LOSSY).link is None
    assert not ingest.summarize(None, ingest.sample(PATH, [], LOSSY)).srt


def test_a_clean_srt_link_is_nominal_and_non_srt_sources_have_no_link_figures():
    clean = ingest.summarize(None, ingest.sample(PATH, [_reader(3)], CLEAN))
    assert (clean.loss_percent, clean.retransmitted_percent, clean.discarded) == (0.0, 0.0, 3)
    assert ingest.degraded(clean, True).status == "False"
    udp = _set(PATH, source_type="mpegtsSource", source_id="")
    fields = ingest.status_fields({}, ingest.summarize(None, ingest.sample(udp, [], None)))["ingest"]
    assert set(fields) == {"framesInError", "framesDiscarded", "tracks"}


def test_frames_in_error_growing_is_degraded_for_that_window_only():
    base = ingest.sample(PATH, [], CLEAN)
    errored = _set(base, frames_in_error=4)
    assert ingest.degraded(ingest.summarize(base, errored), True).reason == "FramesInError"
    assert ingest.degraded(ingest.summarize(errored, errored), True).reason == "Nominal"
    # a new source starting with errors already counted (no window): not judged on them
    assert not ingest.summarize(_set(base, source="x"), errored).new_frames_in_error


@pytest.mark.parametrize(("summary", "receiving", "status", "reason"), [
    (None, False, "Unknown", "NotReceiving"),
    (None, True, "Unknown", "HealthUnknown"),
    (ingest.Summary(0, True, 0, (), loss_percent=5.0), True, "True", "FramesInError"),  # the worse news first
    (ingest.Summary(0, False, 0, (), loss_percent=ingest.LOSS_PERCENT + 0.1), True, "True", "PacketLoss"),
    (ingest.Summary(0, False, 0, (), loss_percent=ingest.LOSS_PERCENT), True, "False", "Nominal"),
])
def test_degraded_table(summary, receiving, status, reason):
    cond = ingest.degraded(summary, receiving)
    assert (cond.status, cond.reason) == (status, reason)
    assert "%" not in cond.message or str(ingest.LOSS_PERCENT).rstrip("0").rstrip(".") in cond.message


def test_status_is_settled_so_a_steady_link_writes_nothing():
    before, now = _lossy_window()
    shown = ingest.status_fields({}, ingest.summarize(before, now))
    assert shown["ingest"]["rttMs"] in range(60, 71) and shown["ingest"]["lossPercent"] == 2.1
    assert shown["ingest"]["retransmittedPercent"] == 2.3 and shown["ingest"]["droppedPackets"] == 17
    # the next window wanders a little: status keeps what it shows
    wander = _set(now.link, rtt_ms=now.link.rtt_ms + 3, received=now.link.received + 8000,
                                 lost=now.link.lost + 180, retransmitted=now.link.retransmitted + 190, dropped=18)
    again = ingest.status_fields(shown, ingest.summarize(now, _set(now, link=wander)))
    assert again == shown
    # the loss really moves: the new figure is written
    worse = _set(wander, lost=now.link.lost + 800)
    moved = ingest.status_fields(shown, ingest.summarize(now, _set(now, link=worse)))
    assert moved["ingest"]["lossPercent"] == 10.0


def test_counters_are_written_when_they_grow_by_a_tenth_or_go_back():
    summary = ingest.summarize(None, ingest.sample(PATH, [], CLEAN))
    shown = {"ingest": {"framesInError": 100, "framesDiscarded": 0}}
    same = ingest.status_fields(shown, _set(summary, frames_in_error=105))
    assert same["ingest"]["framesInError"] == 100
    grew = ingest.status_fields(shown, _set(summary, frames_in_error=110))
    assert grew["ingest"]["framesInError"] == 110
    reset = ingest.status_fields(shown, _set(summary, frames_in_error=0))
    assert reset["ingest"]["framesInError"] == 0


def _polled(summary: ingest.Summary | None) -> InputObservation:
    seen = _observed(True)
    reading = ingest.Reading(ingest.sample(PATH, [], CLEAN), summary) if summary else None
    return _set(seen, ingest=reading)


LOSSY_SUMMARY = ingest.summarize(*_lossy_window())


def test_plan_input_writes_ingest_and_degraded_only_with_telemetry():
    plain = plan_input(_seen(observation=_polled(LOSSY_SUMMARY))).status
    assert "ingest" not in plain and "Degraded" not in {c["type"] for c in plain["conditions"]}
    status = plan_input(_seen(observation=_polled(LOSSY_SUMMARY), telemetry=True)).status
    assert status["ingest"]["lossPercent"] == 2.1 and _cond(status, "Degraded")["reason"] == "PacketLoss"


def test_degraded_events_once_each_way_and_nothing_while_steady():
    first = plan_input(_seen(observation=_polled(LOSSY_SUMMARY), telemetry=True, previous={"phase": "Live"}))
    assert [(e.type, e.reason) for e in first.events] == [("Warning", "PacketLoss")]
    steady = plan_input(_seen(observation=_polled(LOSSY_SUMMARY), telemetry=True, previous=first.status))
    assert steady.events == () and steady.status == first.status
    clean = ingest.summarize(None, ingest.sample(PATH, [], CLEAN))
    healed = plan_input(_seen(observation=_polled(clean), telemetry=True, previous=first.status))
    assert [(e.type, e.reason, e.message) for e in healed.events] == [
        ("Normal", "Recovered", "the input is no longer degraded")]


def test_no_source_drops_status_ingest_and_a_replica_that_has_not_polled_keeps_degraded():
    lossy = plan_input(_seen(observation=_polled(LOSSY_SUMMARY), telemetry=True, previous={"phase": "Live"}))
    gone = plan_input(_seen(observation=_observed(False), telemetry=True, previous=lossy.status)).status
    assert gone["ingest"] is None and _cond(gone, "Degraded")["status"] == "Unknown"
    kept = plan_input(_seen(observation=None, telemetry=True, previous=lossy.status))
    assert _cond(kept.status, "Degraded") == _cond(lossy.status, "Degraded") and kept.events == ()
    assert "ingest" not in kept.status  # not polled: what status shows holds


def test_a_window_that_received_nothing_holds_what_status_shows():
    _, now = _lossy_window()
    shown = ingest.status_fields({}, ingest.summarize(*_lossy_window()))
    empty = ingest.summarize(now, now)  # no packet between the two samples
    assert empty.loss_percent is None and empty.retransmitted_percent is None
    assert ingest.status_fields(shown, empty) == shown


def _scrape(paused: bool) -> dict[str, float]:
    from types import SimpleNamespace

    from prometheus_client import CollectorRegistry, generate_latest

    from streamdist import metrics
    from streamdist.handlers.context import Indexes
    from streamdist.handlers.memory import InputKey, Memory

    memory = Memory()
    reading = ingest.read(None, ingest.sample(LOSSY_PATH, [_reader(2)], LOSSY))
    memory.input(InputKey("live", "cam")).observation = InputObservation(None, LOSSY_PATH, ingest=reading)
    memory.input(InputKey("live", "gone")).observation = InputObservation(None, LOSSY_PATH, ingest=reading)
    status = {"conditions": [{"type": "Degraded", "status": "True", "reason": "PacketLoss"}]}
    idx = Indexes(inputs={("live", "cam"): [{"metadata": {"name": "cam"}, "status": status}]})
    registry = CollectorRegistry()
    registry.register(metrics.StatusCollector(SimpleNamespace(paused=paused, idx=idx, memory=memory)))
    lines = generate_latest(registry).decode().splitlines()
    return {ln.rsplit(" ", 1)[0]: float(ln.rsplit(" ", 1)[1]) for ln in lines if ln.startswith("streamdist_input_")
            and ("degraded" in ln or "srt" in ln or "frames" in ln)}  # fmt: skip


def test_metrics_carry_the_raw_ingest_figures_of_the_acting_replica_only():
    acting = _scrape(paused=False)
    cam = 'input="cam",namespace="live"'
    assert acting[f"streamdist_input_srt_packets_lost_total{{{cam}}}"] == 169
    assert acting[f"streamdist_input_srt_packets_received_total{{{cam}}}"] == 9821
    assert acting[f"streamdist_input_frames_discarded{{{cam}}}"] == 2
    assert acting[f'streamdist_input_degraded{{{cam},reason="PacketLoss"}}'] == 1
    assert not any('input="gone"' in k for k in acting), "an input kopf no longer lists is not exported"
    standby = _scrape(paused=True)
    assert list(standby) == [f'streamdist_input_degraded{{{cam},reason="PacketLoss"}}']
