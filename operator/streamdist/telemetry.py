"""What an output pod says about itself, and the small summary status shows: pure.

Every output pod's entrypoint (images/ffmpeg/streamdist-ffmpeg) serves FFmpeg's
progress and, for SRT destinations, libsrt's link statistics as Prometheus metrics
(GET /metrics on render.TELEMETRY_PORT). Prometheus scrapes them (the chart's
PodMonitor); the operator reads the same page every few seconds and keeps two samples
per output: the summary (`link`, `rttMs`, `lossPercent`, `droppedFrames`, `speed`)
and the `Degraded` condition come from them. Status values are held back until they
move past a tolerance (`settle`), so a steady stream writes no status at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from .status import Cond

# Degraded when, over the last poll window: more than LOSS_PERCENT of the SRT packets
# sent were reported lost; FFmpeg kept less than SLOW_SPEED of real time; or nothing
# (no frame, no byte) was muxed at all.
LOSS_PERCENT = 1.0
SLOW_SPEED = 0.9
# How far a figure moves before status shows the new one: (absolute, relative to what
# status shows). SRT's RTT and loss wander a little at every poll of a steady link.
RTT_TOLERANCE = (5.0, 0.2)
LOSS_TOLERANCE = (0.5, 0.25)

FRAMES = "streamdist_ffmpeg_frames_total"
DROPPED = "streamdist_ffmpeg_dropped_frames_total"
BYTES = "streamdist_ffmpeg_output_bytes_total"
SPEED = "streamdist_ffmpeg_speed"
SRT_CONNECTED = "streamdist_srt_connected"
SRT_RTT = "streamdist_srt_rtt_milliseconds"
SRT_SENT = "streamdist_srt_packets_sent_total"
SRT_LOST = "streamdist_srt_packets_lost_total"
SRT_RETRANSMITTED = "streamdist_srt_packets_retransmitted_total"


def parse_exposition(text: str) -> dict[str, float]:
    """Prometheus text format, samples without labels: {name: value}.

    The pods export no labels; a line that does not parse is skipped (a pod's page is
    not trusted to be well formed)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        name, _, value = line.partition(" ")
        if "{" in name:
            continue
        try:
            out[name] = float(value.split(" ", 1)[0])
        except ValueError:
            continue
    return out


@dataclass(frozen=True)
class Sample:
    """One read of one pod's metrics (counters are since that pod's process started)."""

    pod: str
    at: float  # the reader's monotonic clock
    frames: float
    bytes: float
    dropped: float
    speed: float | None
    srt: bool  # the page has SRT statistics (an SRT destination)
    connected: bool = False
    rtt_ms: float | None = None
    sent: float = 0.0  # retransmissions included
    lost: float = 0.0
    retransmitted: float = 0.0


def sample(pod: str, at: float, metrics: dict[str, float]) -> Sample:
    """A Sample from a parsed page."""
    return Sample(
        pod=pod,
        at=at,
        frames=metrics.get(FRAMES, 0.0),
        bytes=metrics.get(BYTES, 0.0),
        dropped=metrics.get(DROPPED, 0.0),
        speed=metrics.get(SPEED),
        srt=SRT_CONNECTED in metrics,
        connected=metrics.get(SRT_CONNECTED, 0.0) >= 1,
        rtt_ms=metrics.get(SRT_RTT),
        sent=metrics.get(SRT_SENT, 0.0),
        lost=metrics.get(SRT_LOST, 0.0),
        retransmitted=metrics.get(SRT_RETRANSMITTED, 0.0),
    )


@dataclass(frozen=True)
class Summary:
    """What status shows of an output's own view of its stream."""

    link: str  # Up, Down (caller not connected, or nothing moves), Listening (no caller yet)
    moving: bool | None  # frames or bytes muxed since the previous sample; None: first sample
    dropped_frames: int
    speed: float | None
    rtt_ms: float | None = None
    loss_percent: float | None = None


def summarize(previous: Sample | None, current: Sample, listener: bool) -> Summary:
    """The summary of the window between two samples of the same pod."""
    before = previous if previous is not None and previous.pod == current.pod else None
    moving = None
    if before is not None:
        moving = current.frames > before.frames or current.bytes > before.bytes
    loss = _loss_percent(before, current) if current.srt else None
    if current.srt:
        link = "Up" if current.connected else ("Listening" if listener else "Down")
    else:
        link = "Down" if moving is False else "Up"
    rtt = current.rtt_ms if current.srt and current.connected else None
    return Summary(link, moving, int(current.dropped), current.speed, rtt, loss)


def _loss_percent(before: Sample | None, current: Sample) -> float | None:
    """Packets sent again per packet of the stream, over the window (since the
    connection for a first sample).

    libsrt resends each packet its receiver reports lost, once (unless the resend is
    lost too): retransmissions count the losses. Its own lost counter does not: libsrt
    1.5 counts each loss report twice (measured through 2 % random loss: 328 lost, 162
    retransmitted, 166 dropped by the kernel)."""
    if not current.connected:
        return None
    sent, again = current.sent, current.retransmitted
    if before is not None and before.connected and sent >= before.sent and again >= before.retransmitted:
        sent, again = sent - before.sent, again - before.retransmitted
    if sent - again <= 0:
        return None
    return 100.0 * again / (sent - again)


def degraded(summary: Summary | None) -> Cond:
    """The Degraded condition: the worst thing the summary shows, or nominal."""
    if summary is None:
        return Cond("Degraded", "Unknown", "NoTelemetry", "the output pod's metrics have not been read yet")
    if summary.moving is False:
        return Cond("Degraded", "True", "NoFrames", "FFmpeg muxed no frame and no byte since the last look")
    if summary.loss_percent is not None and summary.loss_percent > LOSS_PERCENT:
        return Cond("Degraded", "True", "PacketLoss",
                    f"the SRT receiver reports more than {LOSS_PERCENT:g} % of the packets lost")  # fmt: skip
    if summary.speed is not None and summary.speed < SLOW_SPEED:
        return Cond("Degraded", "True", "SlowerThanRealTime",
                    f"FFmpeg keeps less than {SLOW_SPEED:g}x real time")  # fmt: skip
    return Cond("Degraded", "False", "Nominal", "the output keeps up and its link is healthy")


def settle(previous: float | None, current: float | None, absolute: float, relative: float) -> float | None:
    """`previous` while `current` stays within max(absolute, relative x previous) of it:
    status moves only when the figure really does (no patch per poll)."""
    if current is None or previous is None:
        return current
    if abs(current - previous) < max(absolute, relative * abs(previous)):
        return previous
    return current


def status_fields(previous: dict[str, object], summary: Summary | None) -> dict[str, object]:
    """status.link/rttMs/lossPercent/droppedFrames/speed, each settled against what
    status shows now; nothing while no summary exists."""
    if summary is None:
        return {}
    fields: dict[str, object] = {"link": summary.link, "droppedFrames": _settled_count(previous, summary)}
    speed = settle(number(previous.get("speed")), summary.speed, 0.1, 0.0)
    if speed is not None:
        fields["speed"] = round(speed, 2)
    rtt = settle(number(previous.get("rttMs")), summary.rtt_ms, *RTT_TOLERANCE)
    fields["rttMs"] = None if rtt is None else round(rtt)
    loss = settle(number(previous.get("lossPercent")), summary.loss_percent, *LOSS_TOLERANCE)
    fields["lossPercent"] = None if loss is None else round(loss, 1)
    return fields


def _settled_count(previous: dict[str, object], summary: Summary) -> int:
    """droppedFrames: written when it goes down (a new pod) or grows by a tenth."""
    return settle_count(number(previous.get("droppedFrames")), summary.dropped_frames)


def settle_count(before: float | None, now: int) -> int:
    """A counter as status shows it: `now` when it went down (a new process or source
    counts from zero) or grew by a tenth (at least 1), else what status shows: a counter
    that keeps creeping up costs a status write per tenth, not one per poll."""
    if before is None or now < before or now >= before + max(1.0, before / 10):
        return now
    return int(before)


def number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
