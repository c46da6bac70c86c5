#!/usr/bin/python3
"""streamdist-switch: put the freshest ingest on the readers' path, from its latest
keyframe, with timestamps that never go back, and a slate in the source's own format.

A StreamInput with a backup ingest gets three MediaMTX paths in its router pod:
``<path>`` (what the output pods read; only this sidecar publishes there, from the
pod's loopback), ``<path>-primary`` and ``<path>-backup`` (the ingests). MediaMTX has
no switch of its own; this sidecar is one:

* a *reader* per ingest (FFmpeg, RTSP/TCP on 127.0.0.1, stream copy to MPEG-TS on a
  pipe) runs whenever MediaMTX says the ingest has a source, so the standby's latest
  GOP is always at hand (switchlib.splice.Cache);
* an ingest that sends nothing for ``--loss-after-ms`` is lost: the switch cuts at once
  to the primary, else the backup, else the slate; a source that comes back takes over
  at its next keyframe (switchlib.splice);
* one *publisher* (FFmpeg, MPEG-TS on its stdin, RTSP/TCP to ``<path>``) carries every
  source and the slate with one timeline, so readers see one stream whose timestamps
  only go forward; it is restarted only when the audio or video codec setup changes;
* the slate is one GOP encoded in the format learned from the sources (ffprobe on
  their cached GOP) or named by ``spec.fallback``, looped (switchlib.slate);
* ``GET /v1/state`` (operator's credential only) says what is on air and every switch
  with its gap (switchlib.net): the operator's health poll reads it.

Logs: one ``event=... key=value`` line per event on stdout; FFmpeg's stderr is ours.
Stdlib only, Python 3.11: it runs with Debian's python3 in the FFmpeg image
(``/usr/local/bin/streamdist-switch``) and must not import streamdist.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import selectors
import signal
import sys
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from switchlib import net, slate, splice, ts
from switchlib.children import Child, Children
from switchlib.logfmt import log
from switchlib.splice import SLATE, SOURCES

API_INTERVAL = 0.2
READER_RETRY = 0.5
SETTLE = 0.5
HANDOVER = 5.0
PROBE_FRAMES = 12  # video frames of a new session ffprobe gets to learn its format
MAX_RECORDS = 50




# ------------------------------------------------------------------ command lines


def reader_argv(ffmpeg: str, rtsp_base: str, path: str) -> list[str]:
    """FFmpeg copying an ingest path's first video and audio to MPEG-TS on stdout: PES
    lengths so each frame is complete at once, one PES per audio frame, no mux delay."""
    return [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "warning", "-rtsp_transport", "tcp",
            "-analyzeduration", "500000", "-i", f"{rtsp_base.rstrip('/')}/{path}",
            "-map", "0:v:0?", "-map", "0:a:0?", "-c", "copy", "-f", "mpegts", "-omit_video_pes_length", "0",
            "-pes_payload_size", "0", "-muxdelay", "0", "-muxpreload", "0", "-flush_packets", "1",
            "-max_interleave_delta", "1", "pipe:1"]  # fmt: skip


def publisher_argv(ffmpeg: str, rtsp_base: str, path: str, audio: str | None) -> list[str]:
    """FFmpeg taking the switch's MPEG-TS on stdin and publishing it to the readers'
    path. RTSP wants AAC's config out of band: ADTS headers become it (aac_adtstoasc).
    ``?streamdist=switch`` names the session in MediaMTX's API. ``-max_interleave_delta
    1``: the switch sends in timestamp order already; FFmpeg's interleaving would hold
    video back until audio comes, and packets held back by varying amounts look to
    MediaMTX like a clock that jumps (it re-times the track, its readers see a jump)."""
    bsf = ["-bsf:a", "aac_adtstoasc"] if audio == "aac" else []
    return [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "warning", "-analyzeduration", "100000",
            "-f", "mpegts", "-i", "pipe:0", "-map", "0", "-c", "copy", *bsf, "-max_interleave_delta", "1",
            "-f", "rtsp", "-rtsp_transport", "tcp", f"{rtsp_base.rstrip('/')}/{path}?streamdist=switch"]  # fmt: skip


def audio_signature(track: ts.Track | None, data: bytes) -> tuple[int, ...] | None:
    """What a publisher's SDP fixes about the audio, from a frame's header: AAC's
    object type, sampling index and channels (ADTS), MPEG audio's version, layer, rate
    and mode, AC-3's rate and channel mode. None for other codecs or no header."""
    if track is None or len(data) < 7:
        return None
    if track.codec == "aac" and data[0] == 0xFF and data[1] & 0xF0 == 0xF0:
        return (data[2] >> 6, (data[2] >> 2) & 0x0F, (data[2] & 1) << 2 | data[3] >> 6)
    if track.codec in ("mp2", "mp3") and data[0] == 0xFF and data[1] & 0xE0 == 0xE0:
        return ((data[1] >> 1) & 0x0F, (data[2] >> 2) & 0x03, data[3] >> 6)
    if track.codec == "ac3" and data[:2] == b"\x0b\x77":
        return (data[4] >> 6, data[6] >> 5)
    return None


@dataclass(frozen=True)
class Program:
    """The tracks a publisher carries; a switch to another program restarts it."""

    video: ts.Track | None
    audio: ts.Track | None
    signature: tuple[int, ...] | None

    aac_config: bytes | None = None  # AudioSpecificConfig, for the publisher's PMT

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.video and self.video.stream_type, self.audio and self.audio.stream_type, self.signature)


def program_of(video: ts.Track | None, audio: ts.Track | None, frames: Sequence[ts.Frame]) -> Program:
    first_audio = next((f.data for f in frames if f.kind == "audio"), b"")
    return make_program(video, audio, first_audio)


def make_program(video: ts.Track | None, audio: ts.Track | None, audio_header: bytes) -> Program:
    config = ts.adts_config(audio_header) if audio is not None and audio.codec == "aac" else None
    return Program(video, audio, audio_signature(audio, audio_header), config)


def signature_known(program: Program) -> bool:
    """An audio track whose codec has a signature must show it before a cut (its first
    frame comes within tens of milliseconds of the keyframe)."""
    return program.audio is None or program.audio.codec not in SIGNED or program.signature is not None


SIGNED = ("aac", "mp2", "mp3", "ac3")


# ------------------------------------------------------------------------ state


@dataclass
class Ingest:
    """One ingest path: its reader, demuxer, cache and learned format."""

    role: str
    path: str
    source: splice.Source
    demux: ts.Demuxer = field(default_factory=ts.Demuxer)
    reader: Child | None = None
    available: bool = False
    retry_at: float = 0.0
    format: slate.Format | None = None
    probe: Child | None = None
    probed: bool = False  # this session's format asked already
    probe_frames: list[ts.Frame] = field(default_factory=list)  # what the probe gets, from a keyframe
    audio_header: bytes = b""  # the latest audio frame's first bytes (audio_signature)
    settled_at: float | None = None  # the reader's frames are used from then on (set by the first)
    data_at: float | None = None  # when its reader last gave a frame (used or not)

    def program(self) -> Program:
        return make_program(self.demux.video, self.demux.audio, self.audio_header)


@dataclass
class SlateJob:
    fmt: slate.Format
    child: Child
    demux: ts.Demuxer
    frames: list[ts.Frame]


@dataclass
class ReadySlate:
    clip: splice.Slate
    program: Program
    cpu_seconds: float | None


class Switch:
    """Everything the loop acts on; every process it starts it also stops."""

    def __init__(self, args: argparse.Namespace, selector: selectors.BaseSelector) -> None:
        self.args = args
        self.loss_after = args.loss_after_ms / 1000
        self.children = Children(selector)
        self.ingests = {role: Ingest(role, getattr(args, role), splice.Source(role)) for role in SOURCES}
        self.timeline = splice.Timeline()
        self.publisher: Child | None = None
        self.old_publishers: list[Child] = []
        self.muxer: ts.Muxer | None = None
        self.program: Program | None = None
        self.declared: slate.Format | None = declared_format(args)
        self.look = slate.Look(args.slate_color, write_text(args), args.slate_image, args.font)
        self.slates: dict[slate.Format, ReadySlate] = {}
        self.slate_jobs: dict[slate.Format, SlateJob] = {}
        self.last_on_air: str | None = None
        self.api_error: str | None = None
        self.wall_offset = time.time() - time.monotonic()
        if args.slate_image is not None and not args.slate_image.is_file():
            log("slate-image-missing", path=args.slate_image)  # its ConfigMap or key is missing: the plain colour
        if self.declared is not None:
            self.want_slate(self.declared, time.monotonic())

    # ---------------------------------------------------------------- readers

    def on_api(self, doc: Any, error: str | None) -> None:
        """MediaMTX's path list: which ingests have a source (readers start then)."""
        if error is not None:
            if self.api_error is None:
                log("api-error", api=self.args.api, error=error)
            self.api_error = error
            return
        if self.api_error is not None:
            log("api-recovered", api=self.args.api)
        self.api_error = None
        items = doc.get("items") if isinstance(doc, Mapping) else None
        found = {str(i.get("name")): i for i in items or [] if isinstance(i, Mapping)}
        for ingest in self.ingests.values():
            item = found.get(ingest.path) or {}
            available = item.get("available", item.get("ready"))
            ingest.available = available is True

    def start_readers(self, now: float) -> None:
        for ingest in self.ingests.values():
            if ingest.available and ingest.reader is None and now >= ingest.retry_at:
                ingest.retry_at = now + READER_RETRY
                ingest.demux = ts.Demuxer()
                ingest.source.lose()  # a new session: nothing of the old one is used
                ingest.settled_at = None
                argv = reader_argv(self.args.ffmpeg, self.args.rtsp, ingest.path)
                ingest.reader = self.children.start(f"reader-{ingest.role}", argv, now, on_stdout=self.sink(ingest))
                if ingest.reader is not None:
                    log("reader-start", role=ingest.role, pid=ingest.reader.pid, source=ingest.path)

    def sink(self, ingest: Ingest) -> Callable[[bytes], None]:
        """What a reader's stdout goes to: its demuxer, then the timeline; nothing of
        the first SETTLE seconds of its frames (FFmpeg's RTSP timestamps settle once
        the router's first RTCP sender reports are in, and may jump before)."""

        def on_data(data: bytes) -> None:
            now = time.monotonic()
            frames = ingest.demux.feed(data, now)
            if frames:
                ingest.data_at = now
            if frames and ingest.settled_at is None:
                ingest.settled_at = now + SETTLE
            if ingest.settled_at is not None and now >= ingest.settled_at:
                self.on_frames(ingest, frames, now)

        return on_data

    def on_frames(self, ingest: Ingest, frames: list[ts.Frame], now: float) -> None:
        source = ingest.source
        source.has_video = ingest.demux.video is not None
        back = source.cache.key is None
        for frame in frames:
            source.add(frame)
            if frame.kind == "audio":
                ingest.audio_header = frame.data[:8]
            self.timeline.live(ingest.role, frame)
        if back and source.cache.key is not None:
            log("source-ready", role=ingest.role)
            ingest.probed, ingest.probe_frames = False, []
        self.maybe_probe(ingest, frames, now)
        self.decide(now)

    def check_loss(self, now: float) -> None:
        """An ingest silent for ``loss_after`` is lost: its cache is never used again,
        and its reader starts afresh. Why a new reader: MediaMTX keeps a UDP ingest's
        path (and a reader's session) for 10 s of silence; an encoder that comes back
        within them restarts its clock, and FFmpeg answers timestamps that go back by
        clamping them for as long as the jump (frames 1/90000 s apart)."""
        for ingest in self.ingests.values():
            last = ingest.data_at
            if last is None or now - last <= self.loss_after:
                continue
            ingest.data_at = None
            if ingest.source.last_at is not None:
                log("source-lost", role=ingest.role, silent_ms=round((now - last) * 1000))
            ingest.source.lose()
            if ingest.reader is not None:  # blocked on a silent socket, it would not heed SIGINT
                ingest.reader.stop(now, force=True)

    # ----------------------------------------------------------------- format

    def maybe_probe(self, ingest: Ingest, frames: Sequence[ts.Frame], now: float) -> None:
        """Once per source session: ffprobe its first frames from a keyframe (at least
        PROBE_FRAMES video frames: enough for the frame rate) for the slate's format."""
        if ingest.probed or ingest.probe is not None:
            return
        for frame in frames:
            if ingest.probe_frames or (frame.kind == "video" and frame.key):
                ingest.probe_frames.append(frame)
        if sum(1 for f in ingest.probe_frames if f.kind == "video") < PROBE_FRAMES:
            return
        ingest.probed = True
        muxer = ts.Muxer(ingest.demux.video, ingest.demux.audio)
        data = b"".join(muxer.frame(f, 0.0) for f in ingest.probe_frames)
        ingest.probe_frames = []
        argv = slate.probe_argv(self.args.ffprobe)
        ingest.probe = self.children.start(f"probe-{ingest.role}", argv, now, stdin=True, collect_stdout=True)
        if ingest.probe is not None:
            ingest.probe.write(data)
            self.children.close_stdin(ingest.probe)

    def probe_done(self, ingest: Ingest, child: Child) -> None:
        ingest.probe = None
        fmt = slate.parse_probe(bytes(child.stdout or b""), self.declared or slate.Format())
        if fmt is None:
            log("format-unknown", role=ingest.role, code=child.proc.returncode)
            return
        if fmt != ingest.format:
            log("format", role=ingest.role, format=fmt.describe())
        ingest.format = fmt
        self.want_slate(fmt, time.monotonic())

    # ------------------------------------------------------------------ slate

    def want_slate(self, fmt: slate.Format, now: float, encode_as: slate.Format | None = None) -> None:
        """Encode the slate in ``fmt`` unless it is (being) done. ``encode_as``: the
        same without a level the encoder refused (kept under ``fmt``)."""
        if (fmt in self.slates or fmt in self.slate_jobs) and encode_as is None:
            return
        demux, frames = ts.Demuxer(), []
        argv = slate.encode_argv(self.args.ffmpeg, encode_as or fmt, self.look)
        child = self.children.start("slate", argv, now, on_stdout=lambda data: frames.extend(demux.feed(data, 0.0)))
        if child is None:
            log("slate-error", format=fmt.describe(), error="cannot start ffmpeg")
            return
        self.slate_jobs[fmt] = SlateJob(encode_as or fmt, child, demux, frames)

    def slate_done(self, key: slate.Format, job: SlateJob, child: Child) -> None:
        del self.slate_jobs[key]
        frames = [*job.frames, *job.demux.flush(0.0)]
        clip = slate.clip(frames, job.fmt) if child.proc.returncode == 0 else None
        if clip is None:
            log("slate-error", format=job.fmt.describe(), code=child.proc.returncode)
            if job.fmt.level is not None:  # e.g. a level the encoder finds too low for the size and rate
                self.want_slate(key, time.monotonic(), encode_as=dataclasses.replace(job.fmt, level=None))
            return
        program = program_of(job.demux.video, job.demux.audio, frames)
        self.slates[key] = ReadySlate(clip, program, child.cpu_seconds)
        log("slate-ready", format=job.fmt.describe(), frames=len(clip.video), cpu_s=f"{child.cpu_seconds or 0:.3f}")

    def slate_format(self) -> slate.Format | None:
        """The slate takes the format of the source last on air (so the resolution
        stays), else the other's, else what spec.fallback names."""
        order = [self.last_on_air] + [r for r in SOURCES if r != self.last_on_air]
        for role in order:
            if role in self.ingests and self.ingests[role].format is not None:
                return self.ingests[role].format
        return self.declared

    def current_slate(self) -> ReadySlate | None:
        fmt = self.slate_format()
        return self.slates.get(fmt) if fmt is not None else None

    # --------------------------------------------------------------- switching

    def decide(self, now: float) -> None:
        """Put the best source on air if it is not (see switchlib.splice)."""
        healthy = {r: i.source.healthy(now, self.loss_after) for r, i in self.ingests.items()}
        ready = self.current_slate()
        wanted = splice.choose(healthy, ready is not None)
        on_air = self.timeline.on_air
        if wanted is None or wanted == on_air:
            return
        alive = on_air == SLATE or (on_air in healthy and healthy[on_air])
        key = self.ingests[wanted].source.cache.key if wanted in self.ingests else None
        if not splice.cut_now(on_air, alive, wanted, now - key.arrived if key else None):
            return
        if wanted == SLATE:
            assert ready is not None
            self.cut(wanted, now, ready.program, alive, slate_clip=ready.clip)
        else:
            ingest = self.ingests[wanted]
            program = ingest.program()
            if signature_known(program):
                self.cut(wanted, now, program, alive, frames=ingest.source.cache.frames)

    def cut(self, role: str, now: float, program: Program, alive: bool, *, frames: Sequence[ts.Frame] = (),
            slate_clip: splice.Slate | None = None) -> None:  # fmt: skip
        restarted = self.ensure_publisher(program, now)
        before = self.timeline.on_air
        reason = "start" if before is None else ("returned" if alive else "lost")
        skew = self.ingests[role].source.skew if role in self.ingests else 0.0
        record = self.timeline.switch(role, now, frames, slate_clip, keep_queued=not alive and not restarted,
                                      reason=reason, skew=skew)  # fmt: skip
        del self.timeline.records[:-MAX_RECORDS]
        if role in SOURCES:
            self.last_on_air = role
        log("switch", **{"from": before, "to": role, "gap_ms": record.gap_ms, "reason": reason})

    def ensure_publisher(self, program: Program, now: float) -> bool:
        """A publisher for ``program``; True when a new one was started (what was queued
        for the old one is then dropped)."""
        current = self.publisher
        if current is not None and not current.exited and self.program is not None and \
                self.program.key == program.key:  # fmt: skip
            return False
        audio = program.audio.codec if program.audio else None
        argv = publisher_argv(self.args.ffmpeg, self.args.rtsp, self.args.path, audio)
        self.publisher = self.children.start("publisher", argv, now, stdin=True)
        self.muxer = ts.Muxer(program.video, program.audio, aac_config=program.aac_config)
        self.program = program
        if current is not None and not current.exited:
            self.old_publishers.append(current)  # MediaMTX kicks it when the new one publishes
        if self.publisher is not None:
            log("publisher-start", pid=self.publisher.pid, target=self.args.path, program=program.key)
        return True

    def emit(self, now: float) -> None:
        for what, ms in self.timeline.notes:
            log(what, source=self.timeline.on_air, ms=ms)
        self.timeline.notes.clear()
        for item in self.timeline.pop(now):
            if self.muxer is not None and self.publisher is not None:
                self.publisher.write(self.muxer.frame(item.frame, now))

    def publisher_gone(self, child: Child, now: float) -> None:
        """The publisher exited: a new one, and the source on air again from its
        keyframe (a publisher must start with one)."""
        if child is not self.publisher:
            return
        self.publisher = None
        role = self.timeline.on_air
        if role in self.ingests and self.ingests[role].source.healthy(now, self.loss_after):
            ingest = self.ingests[role]
            self.cut(role, now, ingest.program(), True, frames=ingest.source.cache.frames)
        elif role == SLATE and (ready := self.current_slate()) is not None:
            self.cut(role, now, ready.program, True, slate_clip=ready.clip)

    # ------------------------------------------------------------------ upkeep

    def reap(self, now: float) -> None:
        for child in self.children.reap(now):
            log("child-exit", name=child.name, pid=child.pid, code=child.proc.returncode,
                cpu_s=f"{child.cpu_seconds or 0:.3f}")  # fmt: skip
            for ingest in self.ingests.values():
                if child is ingest.reader:
                    ingest.reader = None
                    self.on_frames(ingest, ingest.demux.flush(now), now)
                    ingest.source.lose()  # the session is over (its source left, or the reader failed)
                elif child is ingest.probe:
                    self.probe_done(ingest, child)
            for key, job in list(self.slate_jobs.items()):
                if child is job.child:
                    self.slate_done(key, job, child)
            if child in self.old_publishers:
                self.old_publishers.remove(child)
            self.publisher_gone(child, now)
        for old in self.old_publishers:
            if now - old.started_at > HANDOVER or (self.publisher and now - self.publisher.started_at > HANDOVER):
                old.stop(now)

    def state(self) -> dict[str, Any]:
        """What GET /v1/state answers (see the operator's switch_state)."""
        now = time.monotonic()
        ready = self.current_slate()
        fmt = self.slate_format()
        switches = [{"seq": r.seq, "from": r.source, "to": r.to, "gapMs": r.gap_ms, "reason": r.reason,
                     "at": self.iso(r.at)} for r in self.timeline.records]  # fmt: skip
        sources = {
            role: {"healthy": i.source.healthy(now, self.loss_after), "format": i.format and i.format.as_dict()}
            for role, i in self.ingests.items()
        }
        return {
            "onAir": self.timeline.on_air,
            "lossAfterMs": self.args.loss_after_ms,
            "switches": switches,
            "sources": sources,
            "slate": {
                "format": fmt.as_dict() if fmt else None,
                "ready": ready is not None,
                "encodeCpuSeconds": ready.cpu_seconds if ready else None,
            },
        }

    def iso(self, monotonic: float) -> str:
        wall = datetime.fromtimestamp(self.wall_offset + monotonic, UTC)
        return wall.strftime("%Y-%m-%dT%H:%M:%S.") + f"{wall.microsecond // 1000:03d}Z"

    def next_wake(self, now: float, api_at: float) -> float:
        """Seconds until something is due: a frame, a loss deadline, the API poll."""
        times = [api_at, now + 0.25]
        due = self.timeline.next_due()
        if due is not None:
            times.append(due)
        for ingest in self.ingests.values():
            if ingest.data_at is not None:
                times.append(ingest.data_at + self.loss_after + 0.001)
        return max(0.0, min(times) - now)


def declared_format(args: argparse.Namespace) -> slate.Format | None:
    """The slate's format named by spec.fallback (before any source published)."""
    if not args.width or not args.height:
        return None
    return slate.Format(video=args.video, width=args.width, height=args.height, fps=args.fps, pix_fmt=args.pix_fmt,
                        profile=args.profile, audio=None if args.audio == "none" else args.audio,
                        sample_rate=args.sample_rate, channels=args.channels)  # fmt: skip


def write_text(args: argparse.Namespace) -> Path | None:
    """spec.fallback.text into a file (drawtext reads it as is: no escaping)."""
    if not args.slate_text:
        return None
    path = Path(args.workdir) / "slate-text.txt"
    try:
        path.write_text(args.slate_text)
    except OSError as exc:
        log("slate-text-error", error=str(exc))
        return None
    return path


# --------------------------------------------------------------------- the loop


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT, then stop every child; exit 0."""
    stopping: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    selector = selectors.DefaultSelector()
    sw = Switch(args, selector)
    api = urllib.parse.urlsplit(args.api)
    poll = net.ApiPoll(selector, api.hostname or "127.0.0.1", api.port or 9997, "/v3/paths/list?itemsPerPage=100",
                       done=sw.on_api)  # fmt: skip
    server = start_server(args, selector, sw)
    log("started", path=args.path, primary=args.primary, backup=args.backup, loss_after_ms=args.loss_after_ms,
        state_port=server.port if server else None)  # fmt: skip
    api_at = 0.0
    try:
        while not stopping:
            now = time.monotonic()
            for key, mask in selector.select(sw.next_wake(now, api_at)):
                dispatch(sw, key, mask)
            now = time.monotonic()
            poll.check_timeout(now)
            if not poll.busy and now >= api_at:
                api_at = now + API_INTERVAL
                poll.start(now)
            sw.reap(now)
            sw.start_readers(now)
            sw.check_loss(now)
            sw.decide(now)
            sw.emit(now)
            sw.children.want_write()
    finally:
        if stopping:
            log("signal", name=signal.Signals(stopping[0]).name)
        for child in sw.children.shutdown(time.monotonic()):
            log("child-exit", name=child.name, pid=child.pid, code=child.proc.returncode)
        if server is not None:
            server.close()
    log("stopped")
    return 0


def dispatch(sw: Switch, key: selectors.SelectorKey, mask: int) -> None:
    owner, which = key.data
    if isinstance(owner, Child):
        sw.children.handle(owner, which)
    elif isinstance(owner, net.ApiPoll):
        owner.handle(mask)
    elif isinstance(owner, net.StateServer):
        owner.handle(key.fileobj)  # type: ignore[arg-type]


def start_server(args: argparse.Namespace, selector: selectors.BaseSelector, sw: Switch) -> net.StateServer | None:
    if not args.state_address:
        return None
    host, _, port = args.state_address.rpartition(":")
    credential = net.Credential.load(Path(args.state_credential)) if args.state_credential else None
    if credential is None:
        log("state-credential-missing", path=args.state_credential)
    return net.StateServer(selector, host.strip("[]") or "0.0.0.0", int(port), credential, sw.state)


# ------------------------------------------------------------------ command line


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, not {text!r}")
    return value


def _fps(text: str) -> str:
    try:
        from fractions import Fraction

        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"not a frame rate: {text!r}") from None
    if not math.isfinite(float(value)) or value <= 0:
        raise argparse.ArgumentTypeError(f"not a frame rate: {text!r}")
    return text


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; ingest paths default to ``<path>-primary``/``<path>-backup``."""
    p = argparse.ArgumentParser(prog="streamdist-switch", description=__doc__.split("\n\n")[0])
    p.add_argument("--path", required=True, help="the path readers read (only this switch publishes there)")
    p.add_argument("--primary", help="primary ingest path (default: PATH-primary)")
    p.add_argument("--backup", help="backup ingest path (default: PATH-backup)")
    p.add_argument("--api", default="http://127.0.0.1:9997", help="MediaMTX control API (default: %(default)s)")
    p.add_argument("--rtsp", default="rtsp://127.0.0.1:8554", help="MediaMTX RTSP base URL (default: %(default)s)")
    p.add_argument("--ffmpeg", default="ffmpeg", help="FFmpeg executable (default: %(default)s)")
    p.add_argument("--ffprobe", default="ffprobe", help="ffprobe executable (default: %(default)s)")
    p.add_argument("--loss-after-ms", type=_positive_int, default=300,
                   help="an ingest silent this long is lost (default: %(default)s)")  # fmt: skip
    p.add_argument("--state-address", default="", help="HOST:PORT of GET /v1/state (default: none)")
    p.add_argument("--state-credential", default="", help="JSON {user, pass: sha256:...} GET /v1/state requires")
    p.add_argument("--workdir", default="/tmp", help="a writable directory (default: %(default)s)")
    p.add_argument("--slate-color", default="#000000", help="slate background, #RRGGBB (default: %(default)s)")
    p.add_argument("--slate-text", default="", help="text in the middle of the slate")
    p.add_argument("--slate-image", type=Path, help="image fitted into the slate")
    p.add_argument("--font", default=slate.FONT, help="font of the slate's text (default: %(default)s)")
    g = p.add_argument_group("slate format before any source published (spec.fallback)")
    g.add_argument("--video", default="h264", choices=slate.VIDEO_CODECS)
    g.add_argument("--width", type=_positive_int)
    g.add_argument("--height", type=_positive_int)
    g.add_argument("--fps", type=_fps, default="25")
    g.add_argument("--pix-fmt", default="yuv420p")
    g.add_argument("--profile")
    g.add_argument("--audio", default="aac", choices=[*slate.AUDIO_ENCODERS, "none"])
    g.add_argument("--sample-rate", type=_positive_int, default=48000)
    g.add_argument("--channels", type=_positive_int, default=2)
    args = p.parse_args(argv)
    args.primary = args.primary or f"{args.path}-primary"
    args.backup = args.backup or f"{args.path}-backup"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``streamdist-switch --path cam``."""
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
