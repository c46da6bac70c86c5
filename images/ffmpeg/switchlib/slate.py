"""The slate in the source's own format: what it looks like, which format it takes, and
the FFmpeg command that encodes one GOP of it (looped by the timeline afterwards).

Why the switch encodes the slate itself instead of MediaMTX's ``alwaysAvailableFile``:
MediaMTX reads that file once, when the path is created at start-up, so a slate in the
format a source shows only after it has published would need a router restart (every
reader and publisher dropped). The switch learns the format from the source's own
frames (ffprobe on its cached GOP), encodes one second of slate in it (a flat picture
is cheap: the CPU seconds are logged and measured in bench/failover.py), and loops
that GOP with fresh timestamps at no further encoding cost.
"""

from __future__ import annotations

import itertools
import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from .splice import HZ, Slate
from .ts import Frame

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
H264_PROFILES = {
    "constrained baseline": "baseline", "baseline": "baseline", "main": "main", "high": "high",
    "high 10": "high10", "high 4:2:2": "high422", "high 4:4:4 predictive": "high444",
}  # fmt: skip
HEVC_PROFILES = {"main": "main", "main 10": "main10", "main still picture": "mainstillpicture"}
AUDIO_ENCODERS = {
    "aac": ["-c:a", "aac", "-b:a", "96k"],
    "mp2": ["-c:a", "mp2", "-b:a", "128k"],
    "mp3": ["-c:a", "libmp3lame", "-b:a", "128k"],
    "ac3": ["-c:a", "ac3", "-b:a", "192k"],
    "eac3": ["-c:a", "eac3", "-b:a", "192k"],
    "opus": ["-c:a", "libopus", "-b:a", "64k"],
}
LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 8: "7.1"}
VIDEO_CODECS = ("h264", "hevc")


@dataclass(frozen=True)
class Format:
    """What a receiver notices when it changes: codec, size, rate, pixel format,
    profile and level of the video; codec, sample rate and channels of the audio."""

    video: str | None = "h264"
    width: int = 1920
    height: int = 1080
    fps: str = "25"
    pix_fmt: str = "yuv420p"
    profile: str | None = None
    level: int | None = None
    audio: str | None = "aac"
    sample_rate: int = 48000
    channels: int = 2
    layout: str | None = None

    def describe(self) -> str:
        video = f"{self.video} {self.width}x{self.height}@{self.fps} {self.pix_fmt} {self.profile or ''}".rstrip()
        audio = f"{self.audio} {self.sample_rate} Hz {self.channels} ch" if self.audio else "no audio"
        return f"{video}, {audio}"

    def as_dict(self) -> dict[str, Any]:
        return {"video": self.video, "width": self.width, "height": self.height, "frameRate": self.fps,
                "pixelFormat": self.pix_fmt, "profile": self.profile, "level": self.level, "audio": self.audio,
                "sampleRate": self.sample_rate, "channelCount": self.channels}  # fmt: skip

    @property
    def frames_per_gop(self) -> int:
        """One second of frames (at least one): the slate clip is one GOP."""
        return max(1, round(float(Fraction(self.fps))))


def _rate(text: str | None) -> str | None:
    """An FFmpeg rational ("25/1", "30000/1001") as a short string, None when unset."""
    if not text or text in ("0/0", "0/1"):
        return None
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None
    if not 1 <= value <= 240:
        return None
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def from_probe(doc: Mapping[str, Any], fallback: Format) -> Format | None:
    """The format of a source from ffprobe's ``-show_streams`` JSON; what the probe does
    not say is taken from ``fallback``. None without a video stream the slate can do."""
    streams = [s for s in doc.get("streams") or [] if isinstance(s, Mapping)]
    video = next((s for s in streams if s.get("codec_type") == "video"), None)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    if video is None or video.get("codec_name") not in VIDEO_CODECS or not video.get("width"):
        return None
    level = video.get("level")
    fps = _rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate")) or fallback.fps
    codec = audio.get("codec_name") if audio else None
    channels = int(audio.get("channels") or fallback.channels) if audio else fallback.channels
    return Format(
        video=str(video["codec_name"]),
        width=int(video["width"]),
        height=int(video["height"]),
        fps=fps,
        pix_fmt=str(video.get("pix_fmt") or fallback.pix_fmt),
        profile=str(video["profile"]) if video.get("profile") else None,
        level=int(level) if isinstance(level, int) and level > 0 else None,
        audio=str(codec) if codec in AUDIO_ENCODERS else None,
        sample_rate=int(audio.get("sample_rate") or fallback.sample_rate) if audio else fallback.sample_rate,
        channels=channels,
        layout=str(audio["channel_layout"]) if audio and audio.get("channel_layout") else None,
    )


def parse_probe(stdout: bytes, fallback: Format) -> Format | None:
    try:
        doc = json.loads(stdout or b"{}")
    except ValueError:
        return None
    return from_probe(doc, fallback) if isinstance(doc, Mapping) else None


def probe_argv(ffprobe: str) -> list[str]:
    """ffprobe reading a cached GOP (MPEG-TS) on stdin."""
    return [ffprobe, "-v", "error", "-f", "mpegts", "-i", "pipe:0", "-show_streams", "-of", "json"]


@dataclass(frozen=True)
class Look:
    """What the slate shows: a colour, optionally an image (fitted, centred) and a text."""

    color: str = "#000000"
    text_file: Path | None = None  # the text, written to a file (no filter-graph escaping)
    image: Path | None = None
    font: str = FONT


def _video_filters(fmt: Format, look: Look, has_image: bool) -> str:
    """The filter graph: colour background, image on top, text on top, pixel format."""
    chain = "[0:v]"
    graph = []
    if has_image:
        graph.append(f"[1:v]scale={fmt.width}:{fmt.height}:force_original_aspect_ratio=decrease[img]")
        graph.append(f"{chain}[img]overlay=(W-w)/2:(H-h)/2:shortest=1[bg]")
        chain = "[bg]"
    if look.text_file is not None and Path(look.font).is_file():
        size = max(12, fmt.height // 12)
        graph.append(
            f"{chain}drawtext=fontfile={look.font}:textfile={look.text_file}:expansion=none:fontcolor=white:"
            f"fontsize={size}:x=(w-text_w)/2:y=(h-text_h)/2[txt]"
        )
        chain = "[txt]"
    graph.append(f"{chain}format={fmt.pix_fmt}[v]")
    return ";".join(graph)


def _video_codec_args(fmt: Format) -> list[str]:
    n = fmt.frames_per_gop
    if fmt.video == "hevc":
        params = f"keyint={n}:min-keyint={n}:bframes=0:scenecut=0:repeat-headers=1:log-level=error"
        if fmt.level:
            params += f":level-idc={fmt.level / 30:.1f}"
        profile = HEVC_PROFILES.get((fmt.profile or "").lower())
        return ["-c:v", "libx265", "-preset", "veryfast", *(["-profile:v", profile] if profile else []),
                "-x265-params", params]  # fmt: skip
    profile = H264_PROFILES.get((fmt.profile or "").lower())
    level = ["-level:v", f"{fmt.level // 10}.{fmt.level % 10}"] if fmt.level else []
    return ["-c:v", "libx264", "-preset", "veryfast", "-tune", "stillimage",
            *(["-profile:v", profile] if profile else []), *level,
            "-g", str(n), "-keyint_min", str(n), "-bf", "0", "-sc_threshold", "0"]  # fmt: skip


def encode_argv(ffmpeg: str, fmt: Format, look: Look) -> list[str]:
    """FFmpeg encoding one GOP (one second) of slate in ``fmt`` to MPEG-TS on stdout,
    one PES per frame (so the timeline can loop frame by frame)."""
    n = fmt.frames_per_gop
    seconds = f"{n / float(Fraction(fmt.fps)):.6f}"
    has_image = look.image is not None and look.image.is_file() and look.image.stat().st_size > 0
    inputs = ["-f", "lavfi", "-i", f"color=c={look.color}:s={fmt.width}x{fmt.height}:r={fmt.fps}"]
    if has_image:
        inputs += ["-loop", "1", "-framerate", fmt.fps, "-i", str(look.image)]
    maps = ["-map", "[v]"]
    audio: list[str] = []
    if fmt.audio:
        layout = fmt.layout or LAYOUTS.get(fmt.channels, f"{fmt.channels}c")
        inputs += ["-f", "lavfi", "-i", f"anullsrc=channel_layout={layout}:sample_rate={fmt.sample_rate}"]
        maps += ["-map", f"{2 if has_image else 1}:a"]
        audio = [*AUDIO_ENCODERS[fmt.audio], "-ar", str(fmt.sample_rate), "-ac", str(fmt.channels)]
    return [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", *inputs,
            "-filter_complex", _video_filters(fmt, look, has_image), *maps, "-frames:v", str(n), "-t", seconds,
            *_video_codec_args(fmt), "-pix_fmt", fmt.pix_fmt, *audio,
            "-f", "mpegts", "-omit_video_pes_length", "0", "-pes_payload_size", "0", "-muxdelay", "0",
            "pipe:1"]  # fmt: skip


def _step(frames: Sequence[Frame], default: float) -> float:
    deltas = [b.dts - a.dts for a, b in itertools.pairwise(frames) if b.dts > a.dts]
    return float(statistics.median(deltas)) if deltas else default


AUDIO_SAMPLES = {"aac": 1024, "mp2": 1152, "mp3": 1152, "ac3": 1536, "eac3": 1536, "opus": 960}


def clip(frames: Sequence[Frame], fmt: Format) -> Slate | None:
    """The loopable slate from the encoder's frames: video from its keyframe, audio as
    it came; steps from the format (exact for 30000/1001 and 44.1 kHz too)."""
    video = [f for f in frames if f.kind == "video"]
    while video and not video[0].key:
        video.pop(0)
    if not video:
        return None
    audio = [f for f in frames if f.kind == "audio"]
    video_step = HZ / float(Fraction(fmt.fps))
    samples = AUDIO_SAMPLES.get(fmt.audio or "")
    audio_step = samples * HZ / fmt.sample_rate if samples else _step(audio, HZ / 50)
    return Slate(tuple(video), tuple(audio), video_step, audio_step)
