"""The switch's timeline: which source is on air, and when and with which timestamps
each of its frames goes out. Pure: the caller hands in frames and the time.

How a switch works, and why:

* Every ingest is read all the time, and its frames since its latest video keyframe are
  kept (``Cache``): a stream copy can only start at a keyframe, and with the standby's
  latest one at hand a switch starts at once instead of waiting up to a GOP.
* A frame of the source on air goes out at its arrival time plus the source's
  ``delay``; a switch sets the delay so that the new source's keyframe goes out now
  (so the delay is the age of that keyframe, at most a GOP, and it does not add up over
  switches: each switch sets it anew).
* Output timestamps are the source's plus an ``offset`` set at the switch so that they
  go on from the last frame out by the wall time that passed: monotonic across every
  switch, and a receiver's clock is never pushed ahead or behind (a gap in pictures is
  a gap in timestamps of the same length, not a growing delay).
* A source that is lost (nothing for ``loss_after`` seconds) is replaced at once by the
  best one still healthy: primary, else backup, else the slate. Frames of the lost
  source already queued still go out first (they cover part of the detection time).
* A source that comes back (or the primary, while the backup is on air) takes over when
  its keyframe is fresh (within ``FRESH_KEY`` seconds): the cut then costs no delay, and
  frames of the old source not yet out are dropped.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .ts import Frame

HZ = 90_000
PRIMARY, BACKUP, SLATE = "primary", "backup", "slate"
SOURCES = (PRIMARY, BACKUP)
# A keyframe this young is "now": switching to it adds no delay worth waiting for.
FRESH_KEY = 0.1
# Timestamps of the source on air further than this from where the wall clock says
# they should be are a discontinuity of the source (a restarted encoder): re-anchored.
JUMP = HZ
DEFAULT_STEP = HZ // 25
MIN_STEP = HZ // 1000  # video frames closer than 1 ms: not a real frame rate
FIRST_DTS = 10 * HZ
# A source whose frames come this much earlier than they go out (beyond the delay set at
# the cut) runs a slow clock: the queue is brought back rather than let grow.
DRIFT = 1.0
# Room for the jitter of frames still to come after a cut (see ready_at).
LATE_MARGIN = 0.03
SKEW_FRAMES = 100  # audio frames the skew is taken over (about 2 s)


class Cache:
    """A source's frames since its latest keyframe: the GOP a switch starts with.

    With a video track the cache restarts at each video keyframe; an audio-only source
    can start anywhere, so it keeps only its latest frame. Bounded by ``limit`` frames
    (a source without keyframes for that long has none to offer)."""

    def __init__(self, limit: int = 3000) -> None:
        self.frames: list[Frame] = []
        self.limit = limit

    def add(self, frame: Frame, has_video: bool) -> None:
        if frame.key and (frame.kind == "video" or not has_video):
            self.frames = [frame]
        elif self.frames and len(self.frames) < self.limit:
            self.frames.append(frame)
        elif self.frames:
            self.frames = []

    def clear(self) -> None:
        self.frames = []

    @property
    def key(self) -> Frame | None:
        return self.frames[0] if self.frames else None


@dataclass
class Source:
    """What the switch knows of one ingest: its cache and when it last sent anything."""

    role: str
    cache: Cache = field(default_factory=Cache)
    last_at: float | None = None
    has_video: bool = True
    last_video_dts: int | None = None
    anomalies: int = 0
    video_lag: float | None = None  # arrival minus dts of the latest video frame
    skews: deque[float] = field(default_factory=lambda: deque(maxlen=SKEW_FRAMES))

    @property
    def skew(self) -> float:
        """How much later than its video the audio arrives, at most, lately (>= 0)."""
        return max(0.0, max(self.skews, default=0.0))

    def add(self, frame: Frame) -> None:
        """A frame of the source. Video timestamps that do not move on by a plausible
        step (FFmpeg clamps ones that go back to +1/90000 s) make the cached GOP
        unusable: it starts again at the next keyframe."""
        self.last_at = frame.arrived
        lag = frame.arrived - frame.dts / HZ
        if frame.kind == "video":
            self.video_lag = lag
        elif self.video_lag is not None:
            self.skews.append(lag - self.video_lag)
        if frame.kind == "video":
            last, self.last_video_dts = self.last_video_dts, frame.dts
            if last is not None and frame.dts - last < MIN_STEP:
                self.anomalies += 1
                self.cache.clear()
                return
        self.cache.add(frame, self.has_video)

    def healthy(self, now: float, loss_after: float) -> bool:
        """Sent within ``loss_after`` and has a keyframe to start from."""
        return self.last_at is not None and now - self.last_at <= loss_after and self.cache.key is not None

    def lose(self) -> None:
        """The source went silent (or its reader ended): its GOP is stale, never to be
        put on air."""
        self.cache.clear()
        self.last_at = None
        self.last_video_dts = None
        self.video_lag = None
        self.skews.clear()


@dataclass(frozen=True)
class Slate:
    """A pre-encoded slate clip that loops: video frames from a keyframe, audio frames,
    and the step (90 kHz) of each. Timestamps of the clip itself do not matter."""

    video: tuple[Frame, ...]
    audio: tuple[Frame, ...]
    video_step: float  # 90 kHz ticks per frame, fractional (30000/1001 fps, 44.1 kHz audio)
    audio_step: float


@dataclass(frozen=True)
class SwitchRecord:
    seq: int
    source: str | None  # what was on air before (None: nothing yet)
    to: str
    gap_ms: int | None  # output time without frames at the cut; None for the first
    at: float  # monotonic time of the cut
    reason: str  # start | lost | returned


def ready_at(frames: Sequence[Frame], skew: float) -> float:
    """The earliest time the cut's keyframe may go out so that no frame of the source
    goes out late (after arriving), cached or still to come: a late frame shifts that
    track's timing against the wall clock, which MediaMTX's readers see as a jump."""
    if not frames:
        return 0.0
    key = frames[0]
    cached = max(f.arrived - (f.dts - key.dts) / HZ for f in frames)
    return max(cached, key.arrived + skew) + LATE_MARGIN


def choose(healthy: Mapping[str, bool], slate_ready: bool) -> str | None:
    """What should be on air: the primary, else the backup, else the slate (if ready)."""
    for role in SOURCES:
        if healthy.get(role):
            return role
    return SLATE if slate_ready else None


def cut_now(on_air: str | None, on_air_alive: bool, wanted: str, key_age: float | None) -> bool:
    """Whether to switch to ``wanted`` now: nothing (alive) on air, the slate on air, or
    ``wanted``'s keyframe is fresh. Otherwise wait for its next keyframe."""
    if wanted == SLATE or on_air is None or on_air == SLATE or not on_air_alive:
        return True
    return key_age is not None and key_age <= FRESH_KEY


@dataclass(order=True)
class Scheduled:
    due: float
    seq: int
    role: str = field(compare=False)
    frame: Frame = field(compare=False)


class Timeline:
    """The output: frames scheduled by due time with output timestamps, and the log of
    switches. ``switch`` starts a source (from its cache, or the slate), ``live`` adds a
    frame of the source on air, ``pop`` takes what is due."""

    def __init__(self) -> None:
        self.on_air: str | None = None
        self.records: list[SwitchRecord] = []
        self.notes: list[tuple[str, int]] = []  # (what, ms): corrections the caller logs
        self._queue: list[Scheduled] = []
        self._seq = 0
        self._offset = 0
        self._delay = 0.0
        self._anchor = "video"  # the track whose timing the cut and jump checks follow
        self._base = (FIRST_DTS, 0.0)  # (output dts, due) of the cut: frames go out by their dts from there
        self._last: dict[str, tuple[int, float]] = {}  # kind -> (dts, due) of the last frame scheduled
        self._emitted: dict[str, tuple[int, float]] = {}  # kind -> (dts, due) of the last frame out
        self._step = DEFAULT_STEP
        self._slate: Slate | None = None
        self._slate_next: dict[str, tuple[int, int, float]] = {}  # kind -> (next index, dts and due of index 0)

    # ----------------------------------------------------------------- switching

    def switch(self, role: str, now: float, frames: Sequence[Frame] = (), slate: Slate | None = None,
               keep_queued: bool = True, reason: str = "lost", skew: float = 0.0) -> SwitchRecord:  # fmt: skip
        """Put ``role`` on air at ``now``: ``frames`` (its cache, keyframe first) or the
        ``slate``. ``keep_queued`` lets frames already scheduled go out first. ``skew``:
        how much later than its video the source's audio arrives (``Source.skew``)."""
        if not keep_queued:
            self._drop_after(now)
        if frames:  # a clean cut: nothing of the new source from before its keyframe
            frames = [f for f in frames if f.dts >= frames[0].dts]
        anchor = "video" if (slate and slate.video) or (frames and frames[0].kind == "video") else "audio"
        self._anchor = anchor
        last = self._last.get(anchor)
        earliest = max(now, ready_at(frames, skew))
        if last is None:
            out0, due0, gap = FIRST_DTS, earliest, None
        else:
            due0 = max(earliest, last[1])
            out0 = last[0] + max(self._step, round((due0 - last[1]) * HZ))
            due0 = last[1] + (out0 - last[0]) / HZ
            gap = round((out0 - last[0]) / 90)
        record = SwitchRecord(len(self.records) + 1, self.on_air, role, gap, now, reason)
        self.records.append(record)
        self.on_air = role
        self._slate, self._slate_next = None, {}
        self._base = (out0, due0)
        if slate is not None:
            self._start_slate(slate, out0, due0)
        elif frames:
            self._offset = out0 - frames[0].dts
            self._delay = due0 - frames[0].arrived
            for frame in frames:
                self._schedule_paced(role, frame.shifted(self._offset))
        return record

    def live(self, role: str, frame: Frame) -> None:
        """A new frame of a source: scheduled when that source is on air."""
        if role != self.on_air or self._slate is not None:
            return
        out = frame.shifted(self._offset)
        if frame.kind == self._anchor:
            expected = self._base[0] + round((frame.arrived + self._delay - self._base[1]) * HZ)
            if abs(out.dts - expected) > JUMP:  # the source's clock jumped: re-anchor (the other track follows)
                self.notes.append(("clock-jump", round((out.dts - expected) / 90)))
                self._offset += expected - out.dts
                out = frame.shifted(self._offset)
            held = self._due(out) - frame.arrived
            if held > self._delay + DRIFT:  # the source's clock runs slow: do not let the queue grow
                self.notes.append(("queue-trimmed", round((held - self._delay) * 1000)))
                self._base = (self._base[0], self._base[1] - (held - self._delay))
        self._schedule_paced(role, out)

    # ------------------------------------------------------------------ output

    def pop(self, now: float) -> list[Scheduled]:
        """Every frame due by ``now``, in order (the slate's generated as needed)."""
        self._feed_slate(now)
        out = []
        while self._queue and self._queue[0].due <= now:
            item = heapq.heappop(self._queue)
            self._emitted[item.frame.kind] = (item.frame.dts, item.due)
            out.append(item)
        return out

    def next_due(self) -> float | None:
        """When the next frame is due (for the caller's sleep)."""
        times = [s.due for s in self._queue[:1]]
        slate = self.slate_due()
        return min([*times, slate] if slate is not None else times) if times or slate is not None else None

    # ---------------------------------------------------------------- internals

    def _due(self, frame: Frame) -> float:
        """When a frame with these output timestamps goes out: one clock for every
        track, anchored at the cut, so each track's timestamps keep one relation to the
        wall clock across cuts (MediaMTX re-times a track whose packets come early, and
        its readers see that as a jump)."""
        return self._base[1] + (frame.dts - self._base[0]) / HZ

    def _schedule_paced(self, role: str, frame: Frame) -> None:
        self._schedule(role, frame, self._due(frame))

    def _schedule(self, role: str, frame: Frame, due: float) -> None:
        last = self._last.get(frame.kind)
        if last is not None and frame.dts <= last[0]:
            return  # overlaps what went out before the cut: dropped
        if frame.kind == "video" and last is not None:
            self._step = min(HZ, max(1, frame.dts - last[0]))
        self._last[frame.kind] = (frame.dts, due)
        self._seq += 1
        heapq.heappush(self._queue, Scheduled(due, self._seq, role, frame))

    def _drop_after(self, now: float) -> None:
        """Forget frames not yet out; the last-scheduled marks go back to what stays."""
        kept = [s for s in self._queue if s.due <= now]
        if len(kept) == len(self._queue):
            return
        self._queue = kept
        heapq.heapify(self._queue)
        for kind in ("video", "audio"):
            left = [s for s in kept if s.frame.kind == kind]
            last = max(((s.frame.dts, s.due) for s in left), default=self._emitted.get(kind))
            if last is None:
                self._last.pop(kind, None)
            else:
                self._last[kind] = last

    def _start_slate(self, slate: Slate, out0: int, due0: float) -> None:
        self._slate = slate
        if slate.video:
            self._slate_next["video"] = (0, out0, due0)
        if slate.audio:
            last = self._last.get("audio")
            dts = out0 if last is None else max(out0, last[0] + round(slate.audio_step))
            self._slate_next["audio"] = (0, dts, due0 + (dts - out0) / HZ)
        self._step = round(slate.video_step) or self._step

    def _feed_slate(self, now: float) -> None:
        """Schedule the slate's frames due by ``now``: the clip over and over, each
        frame's timestamps counted from the start (no rounding drift)."""
        slate = self._slate
        if slate is None:
            return
        for kind, clip, step in (("video", slate.video, slate.video_step), ("audio", slate.audio, slate.audio_step)):
            if kind not in self._slate_next:
                continue
            index, dts0, due0 = self._slate_next[kind]
            while True:
                dts = dts0 + round(index * step)
                due = due0 + (dts - dts0) / HZ
                if due > now:
                    break
                source = clip[index % len(clip)]
                frame = Frame(kind, dts + (source.pts - source.dts), dts, source.data, source.key, due)
                self._schedule(SLATE, frame, due)
                index += 1
            self._slate_next[kind] = (index, dts0, due0)

    def slate_due(self) -> float | None:
        """When the slate's next frame is due (None: no slate on air)."""
        if self._slate is None:
            return None
        dues = []
        for kind, step in (("video", self._slate.video_step), ("audio", self._slate.audio_step)):
            if kind in self._slate_next:
                index, _, due0 = self._slate_next[kind]
                dues.append(due0 + round(index * step) / HZ)
        return min(dues) if dues else None
