"""An output pod's own metrics: the page parsed, two samples summarised, the summary
settled into status, Degraded decided, and what plan_output makes of it. Pure."""

from dataclasses import replace

import pytest
from test_output_plan import RUNNING, _desired, _output, _pod, _seen

from streamdist.output_plan import Flowing, SeenOutput, plan_output
from streamdist.settings import Settings
from streamdist.telemetry import (
    LOSS_PERCENT,
    Sample,
    Summary,
    degraded,
    parse_exposition,
    sample,
    settle,
    status_fields,
    summarize,
)

# What images/ffmpeg/streamdist-ffmpeg served for an SRT caller (tests/media check the real one).
PAGE = """# HELP streamdist_ffmpeg_frames_total Video frames FFmpeg muxed to the destination.
# TYPE streamdist_ffmpeg_frames_total counter
streamdist_ffmpeg_frames_total 152
streamdist_ffmpeg_dropped_frames_total 0
streamdist_ffmpeg_output_bytes_total 1336492
streamdist_ffmpeg_speed 0.976097808764855
streamdist_srt_connected 1
streamdist_srt_rtt_milliseconds 20.765
streamdist_srt_packets_sent_total 1000
streamdist_srt_packets_lost_total 0
streamdist_srt_packets_retransmitted_total 0
"""


def _sample(at=0.0, pod="p1", **kw):
    return replace(sample(pod, at, parse_exposition(PAGE)), **kw)


def test_the_page_parses_into_names_and_values_and_skips_what_is_not_a_sample():
    got = parse_exposition(PAGE + 'with_labels{a="b"} 3\nbroken value\n\n')
    assert got["streamdist_ffmpeg_frames_total"] == 152 and got["streamdist_srt_rtt_milliseconds"] == 20.765
    assert "with_labels{a=\"b\"}" not in got and "broken" not in got
    s = sample("p1", 1.0, got)
    assert (s.frames, s.srt, s.connected, s.sent, s.lost) == (152, True, True, 1000, 0)
    assert not sample("p1", 1.0, {"streamdist_ffmpeg_frames_total": 1}).srt


@pytest.mark.parametrize(("before", "after", "listener", "want"), [
    # first sample: loss since the connection (packets sent again per packet of the stream), no motion known yet
    (None, {"sent": 1030.0, "retransmitted": 30.0, "lost": 60.0}, False,
     Summary("Up", None, 0, 0.976097808764855, 20.765, 3.0)),
    # the window: 20 of 1000 stream packets sent again (libsrt's lost counter, double, is not the measure)
    ({}, {"frames": 200.0, "sent": 2020.0, "retransmitted": 20.0, "lost": 40.0}, False,
     Summary("Up", True, 0, 0.976097808764855, 20.765, 2.0)),
    # nothing muxed over the window
    ({}, {}, False, Summary("Up", False, 0, 0.976097808764855, 20.765, None)),
    # counters went down: another connection (the window starts again from its totals)
    ({"sent": 5000.0, "retransmitted": 50.0}, {"frames": 300.0}, False,
     Summary("Up", True, 0, 0.976097808764855, 20.765, 0.0)),
    # a new pod: no window across pods
    ({"pod": "p0"}, {"frames": 300.0}, False, Summary("Up", None, 0, 0.976097808764855, 20.765, 0.0)),
    # not connected: a caller is Down, a listener is Listening; no RTT, no loss
    (None, {"connected": False}, False, Summary("Down", None, 0, 0.976097808764855, None, None)),
    (None, {"connected": False}, True, Summary("Listening", None, 0, 0.976097808764855, None, None)),
    # not SRT: Up while FFmpeg muxes, Down when nothing moves
    ({"srt": False}, {"srt": False, "bytes": 2e6}, False, Summary("Up", True, 0, 0.976097808764855, None, None)),
    ({"srt": False}, {"srt": False}, False, Summary("Down", False, 0, 0.976097808764855, None, None)),
])  # fmt: skip
def test_two_samples_make_a_summary(before, after, listener, want):
    previous = None if before is None else _sample(**before)
    assert summarize(previous, _sample(at=10.0, **after), listener) == want


@pytest.mark.parametrize(("summary", "status", "reason"), [
    (None, "Unknown", "NoTelemetry"),
    (Summary("Up", True, 0, 1.0, 20.0, 0.0), "False", "Nominal"),
    (Summary("Up", None, 0, None, None, None), "False", "Nominal"),
    (Summary("Up", True, 0, 1.0, 20.0, LOSS_PERCENT + 1), "True", "PacketLoss"),
    (Summary("Up", True, 0, 1.0, 20.0, LOSS_PERCENT), "False", "Nominal"),
    (Summary("Up", True, 0, 0.5, 20.0, 0.0), "True", "SlowerThanRealTime"),
    (Summary("Down", False, 0, 1.0, None, None), "True", "NoFrames"),
    # no frames beats loss: nothing arrives at all
    (Summary("Up", False, 0, 0.5, 20.0, 50.0), "True", "NoFrames"),
])  # fmt: skip
def test_degraded_names_the_worst(summary, status, reason):
    cond = degraded(summary)
    assert (cond.type, cond.status, cond.reason) == ("Degraded", status, reason)


@pytest.mark.parametrize(("previous", "current", "absolute", "relative", "want"), [
    (20.0, 22.0, 5.0, 0.2, 20.0),
    (20.0, 26.0, 5.0, 0.2, 26.0),
    (100.0, 115.0, 5.0, 0.2, 100.0),
    (100.0, 121.0, 5.0, 0.2, 121.0),
    (None, 3.0, 5.0, 0.2, 3.0),
    (3.0, None, 5.0, 0.2, None),
])  # fmt: skip
def test_settle_keeps_the_written_value_within_the_tolerance(previous, current, absolute, relative, want):
    assert settle(previous, current, absolute, relative) == want


def test_a_steady_stream_gives_the_same_status_fields_poll_after_poll():
    """Jitter of RTT, loss and speed within the tolerances writes nothing."""
    first = status_fields({}, Summary("Up", True, 0, 1.01, 20.4, 0.0))
    assert first == {"link": "Up", "droppedFrames": 0, "speed": 1.01, "rttMs": 20, "lossPercent": 0.0}
    for rtt, loss, speed in ((22.9, 0.2, 0.97), (17.5, 0.4, 1.05), (21.0, 0.0, 0.99)):
        assert status_fields(first, Summary("Up", True, 0, speed, rtt, loss)) == first
    moved = status_fields(first, Summary("Up", True, 0, 0.7, 60.0, 2.0))
    assert (moved["speed"], moved["rttMs"], moved["lossPercent"]) == (0.7, 60, 2.0)


@pytest.mark.parametrize(("before", "now", "want"), [(None, 0, 0), (0, 0, 0), (0, 1, 1), (100, 105, 100),
                                                     (100, 110, 110), (100, 3, 3)])
def test_dropped_frames_move_by_a_tenth_or_when_a_new_pod_starts_again(before, now, want):
    previous = {} if before is None else {"droppedFrames": before}
    assert status_fields(previous, Summary("Up", True, now, 1.0))["droppedFrames"] == want


# --- through plan_output ---------------------------------------------------------------


def _streaming(summary, previous=None, url="srt://h.example:9000?mode=caller"):
    seen = _seen(_output(url), flow=Flowing(5000, 0.0), telemetry=summary, previous=previous or {})
    pod = _pod(_desired(seen)["metadata"]["name"], state=RUNNING)
    return plan_output(SeenOutput(**{**seen.__dict__, "pods": (pod,)}))


def _cond(status, kind="Degraded"):
    return next((c for c in status["conditions"] if c["type"] == kind), None)


def test_a_streaming_output_shows_its_summary_and_degraded():
    decision = _streaming(Summary("Up", True, 0, 1.0, 20.0, 0.0))
    status = decision.status
    assert (status["link"], status["rttMs"], status["lossPercent"], status["speed"]) == ("Up", 20, 0.0, 1.0)
    assert _cond(status)["status"] == "False" and not [e for e in decision.events if e.reason == "Recovered"]


def test_degraded_posts_a_warning_then_recovered_once_each():
    healthy = _streaming(Summary("Up", True, 0, 1.0, 20.0, 0.0)).status
    lossy = _streaming(Summary("Up", True, 0, 1.0, 20.0, 2.0), healthy)
    assert _cond(lossy.status)["reason"] == "PacketLoss"
    assert [(e.type, e.reason) for e in lossy.events] == [("Warning", "PacketLoss")]
    again = _streaming(Summary("Up", True, 0, 1.0, 20.0, 2.1), lossy.status)
    assert not again.events and again.status == lossy.status  # nothing to write
    back = _streaming(Summary("Up", True, 0, 1.0, 20.0, 0.0), lossy.status)
    assert [(e.type, e.reason) for e in back.events] == [("Normal", "Recovered")]
    assert _cond(back.status)["status"] == "False"


def test_no_telemetry_setting_no_summary_and_no_degraded():
    seen = _seen(flow=Flowing(5000, 0.0), telemetry=Summary("Up", True, 0, 1.0), settings=Settings(telemetry=False))
    pod = _pod(_desired(seen)["metadata"]["name"], state=RUNNING)
    status = plan_output(SeenOutput(**{**seen.__dict__, "pods": (pod,)})).status
    assert "link" not in status and _cond(status) is None


def test_not_streaming_shows_no_degraded():
    seen = _seen(telemetry=Summary("Up", True, 0, 1.0))
    pod = _pod(_desired(seen)["metadata"]["name"], state={"waiting": {"reason": "ContainerCreating"}})
    status = plan_output(SeenOutput(**{**seen.__dict__, "pods": (pod,)})).status
    assert status["phase"] == "Connecting" and _cond(status) is None and "link" not in status


def test_sample_is_frozen():
    with pytest.raises(AttributeError):
        _sample().frames = 3  # type: ignore[misc]
    assert isinstance(_sample(), Sample)
