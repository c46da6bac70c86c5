"""What an input's router says about the stream coming in, and the small summary status
shows (``status.ingest``) with the ``Degraded`` condition: pure, table-tested.

MediaMTX (v1.20.1) gives, on the health poll the operator already makes:

* for every source, the path's ``inboundFramesInError`` (frames it could not process)
  and ``tracks2`` (codec, and for video width, height, profile and level; for audio
  sample rate and channels; no frame rate);
* for every reader session, what it discarded because the reader fell behind
  (``outboundFramesDiscarded``; RTSP sessions, which output pods are, count RTP packets:
  ``outboundRTPPacketsDiscarded``);
* for an SRT publisher only, its connection's link statistics (``/v3/srtconns/get/{id}``):
  RTT, packets received, lost, retransmitted and dropped. RTMP and RTSP/TCP publishers
  ride TCP (no loss to see); a UDP source (``mpegtsSource``) has no session at all.

Observe (handlers.health keeps one ``Reading`` per input), decide (``summarize``,
``degraded``, ``status_fields``), act (input_plan writes status and Events). Figures are
held back with the output side's tolerances (telemetry.settle, settle_count), so a
steady stream writes no status.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from . import telemetry
from .mediamtx import PathSample, Session, SRTLink, TrackDetail
from .status import Cond

# Degraded when, over the last poll window: the router counted a frame in error, or more
# than LOSS_PERCENT of the SRT publisher's packets were found lost (the output side's bar).
LOSS_PERCENT = telemetry.LOSS_PERCENT
REASONS = ("FramesInError", "PacketLoss")


@dataclass(frozen=True)
class Sample:
    """One poll of what the router counts for an input's ingest (counters are since the
    source connected, or since each reader did)."""

    source: str | None  # MediaMTX's id of the source (a new publisher counts from zero)
    frames_in_error: int
    discarded: int  # summed over the readers' sessions
    tracks: tuple[TrackDetail, ...]
    link: SRTLink | None = None  # an SRT publisher's link statistics


def sample(path: PathSample, readers: list[Session], link: SRTLink | None) -> Sample:
    """A Sample from the ingest path, its readers' sessions and (SRT) its publisher's link."""
    return Sample(
        source=path.source_id if path.online else None,
        frames_in_error=path.frames_in_error,
        discarded=sum(r.discarded for r in readers),
        tracks=path.track_details if path.online else (),
        link=link if link is not None and link.id == path.source_id else None,
    )


@dataclass(frozen=True)
class Summary:
    """What status shows of the ingest, for the window between two samples."""

    frames_in_error: int
    new_frames_in_error: bool  # more than in the previous sample of the same source
    discarded: int
    tracks: tuple[TrackDetail, ...]
    srt: bool = False
    rtt_ms: float | None = None
    loss_percent: float | None = None
    retransmitted_percent: float | None = None
    dropped_packets: int | None = None


@dataclass(frozen=True)
class Reading:
    """The latest sample and its window's summary: what the input's memory keeps."""

    sample: Sample
    summary: Summary


def read(previous: Reading | None, current: Sample) -> Reading:
    """The next Reading from the last one (None: the first sample)."""
    return Reading(current, summarize(previous.sample if previous else None, current))


def summarize(previous: Sample | None, current: Sample) -> Summary:
    """The summary of the window between two samples (of the same source: counters of
    another source are not comparable, and a first sample's window is since it connected)."""
    before = previous if previous is not None and previous.source == current.source else None
    grew = before is not None and current.frames_in_error > before.frames_in_error
    summary = Summary(current.frames_in_error, grew, current.discarded, current.tracks)
    link = current.link
    if link is None:
        return summary
    old = before.link if before is not None and before.link is not None and before.link.id == link.id else None
    received, lost, again = _window(old, link)
    return replace(
        summary,
        srt=True,
        rtt_ms=link.rtt_ms,
        dropped_packets=link.dropped,
        loss_percent=100.0 * lost / received if received > 0 else None,
        retransmitted_percent=100.0 * again / received if received > 0 else None,
    )


def _window(old: SRTLink | None, now: SRTLink) -> tuple[int, int, int]:
    """(received, lost, retransmitted) over the window: the deltas, or since the
    connection when there is no earlier sample of it (or a counter went back)."""
    counters = ("received", "lost", "retransmitted")
    if old is not None and all(getattr(now, c) >= getattr(old, c) for c in counters):
        return now.received - old.received, now.lost - old.lost, now.retransmitted - old.retransmitted
    return now.received, now.lost, now.retransmitted


def degraded(summary: Summary | None, receiving: bool | None) -> Cond:
    """The input's Degraded condition: the worst thing the window shows, or nominal.

    Unknown while nothing can be judged: no source (the Receiving condition's news) or
    no poll yet."""
    if not receiving:
        return Cond("Degraded", "Unknown", "NotReceiving", "no source to judge")
    if summary is None:
        return Cond("Degraded", "Unknown", "HealthUnknown", "the router has not been read yet")
    if summary.new_frames_in_error:
        return Cond("Degraded", "True", "FramesInError",
                    "the router counted frames in error since the last poll (status.ingest.framesInError)")  # fmt: skip
    if summary.loss_percent is not None and summary.loss_percent > LOSS_PERCENT:
        return Cond("Degraded", "True", "PacketLoss",
                    f"the SRT ingest lost more than {LOSS_PERCENT:g} % of its packets since the last poll")  # fmt: skip
    return Cond("Degraded", "False", "Nominal", "no frame in error and the ingest link is healthy")


def carried(previous: list[dict[str, Any]] | None) -> Cond | None:
    """Degraded as last written, for an input whose router has not been polled yet (an
    operator replica that just started or took over): Unknown until the first poll would
    post a Recovered and a new Warning for a link that stayed lossy all along."""
    cond = next((c for c in previous or [] if c.get("type") == "Degraded"), None)
    if cond is None:
        return None
    return Cond("Degraded", *(str(cond.get(k) or "") for k in ("status", "reason", "message")))


def status_fields(previous: dict[str, Any], summary: Summary | None) -> dict[str, Any]:
    """``status.ingest``, each figure settled against what status shows now (the output
    side's tolerances); empty while there is no summary."""
    if summary is None:
        return {}
    shown = previous.get("ingest")
    before: dict[str, Any] = shown if isinstance(shown, dict) else {}
    fields: dict[str, Any] = {
        "framesInError": _counted(before, "framesInError", summary.frames_in_error),
        "framesDiscarded": _counted(before, "framesDiscarded", summary.discarded),
        "tracks": [track_status(t) for t in summary.tracks],
    }
    if not summary.srt:
        return {"ingest": fields}
    rtt = _held(before.get("rttMs"), summary.rtt_ms, telemetry.RTT_TOLERANCE)
    loss = _held(before.get("lossPercent"), summary.loss_percent, telemetry.LOSS_TOLERANCE)
    again = _held(before.get("retransmittedPercent"), summary.retransmitted_percent, telemetry.LOSS_TOLERANCE)
    fields.update(
        rttMs=None if rtt is None else round(rtt),
        lossPercent=None if loss is None else round(loss, 1),
        retransmittedPercent=None if again is None else round(again, 1),
        droppedPackets=_counted(before, "droppedPackets", summary.dropped_packets or 0),
    )
    return {"ingest": fields}


def _counted(shown: dict[str, Any], key: str, now: int) -> int:
    """A counter settled against what status shows (written when it grows by a tenth)."""
    return telemetry.settle_count(telemetry.number(shown.get(key)), now)


def _held(shown: object, current: float | None, tolerance: tuple[float, float]) -> float | None:
    """A link figure settled against what status shows; a window that received no packet
    says nothing new (None), so what status shows holds."""
    before = telemetry.number(shown)
    return before if current is None else telemetry.settle(before, current, *tolerance)


_TRACK_KEYS = (("width", "width"), ("height", "height"), ("profile", "profile"), ("level", "level"),
               ("sample_rate", "sampleRate"), ("channel_count", "channelCount"))  # fmt: skip


def track_status(track: TrackDetail) -> dict[str, Any]:
    """One track as status shows it: the codec and the properties MediaMTX gave."""
    out: dict[str, Any] = {"codec": track.codec}
    for attr, key in _TRACK_KEYS:
        value = getattr(track, attr)
        if value is not None:
            out[key] = value
    return out
