"""Media benchmarks' shared parts: the pre-encoded source, the rendered router and
outputs (dev/streamdist_dev/rendered runs exactly what streamdist.render produces), the
receivers, and per-process accounting."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from streamdist_dev import media, rendered

from .common import cache_dir, wait_until

# The source of the media-cost benchmark: 1080p30 H.264 High + AAC-LC at about 6 Mbit/s,
# 2 s GOP, looped with -c copy so it costs no encoding CPU while the benchmark runs.
SOURCE_W, SOURCE_H, SOURCE_FPS = 1920, 1080, 30
SOURCE_VIDEO_KBPS = 5800
SOURCE_AUDIO_KBPS = 128


def source_file(seconds: int) -> Path:
    """The pre-encoded source (made once, kept in the bench cache dir)."""
    path = cache_dir() / f"source-1080p30-6M-{seconds}s.mp4"
    if path.is_file() and path.stat().st_size > 0:
        return path
    tmp = path.with_suffix(".part.mp4")
    gop = SOURCE_FPS * 2
    v = f"{SOURCE_VIDEO_KBPS}k"
    argv = [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size={SOURCE_W}x{SOURCE_H}:rate={SOURCE_FPS}",
        "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000",
        "-t", str(seconds),
        # grain so the encoder has something to spend 6 Mbit/s on, as camera video has
        "-vf", "noise=alls=12:allf=t",
        "-map", "0:v", "-map", "1:a",
        "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high", "-pix_fmt", "yuv420p",
        "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
        "-b:v", v, "-maxrate", v, "-bufsize", v,
        "-c:a", "aac", "-b:a", f"{SOURCE_AUDIO_KBPS}k", "-ac", "2", "-ar", "48000",
        "-movflags", "+faststart", str(tmp),
    ]  # fmt: skip
    subprocess.run(argv, check=True, timeout=1800)
    tmp.rename(path)
    return path


def probe_bitrate(path: Path) -> tuple[float, str]:
    """(total Mbit/s, "codec WxH@fps + codec") of a media file."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-of", "json", "-show_entries",
         "format=bit_rate:stream=codec_name,width,height,avg_frame_rate,codec_type", str(path)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    doc = json.loads(out.stdout)
    desc = []
    for s in doc.get("streams", []):
        if s.get("codec_type") == "video":
            num, _, den = str(s.get("avg_frame_rate", "0/1")).partition("/")
            fps = float(num) / float(den or 1) if float(den or 1) else 0
            desc.append(f"{s['codec_name']} {s.get('width')}x{s.get('height')}@{fps:g}")
        elif s.get("codec_type") == "audio":
            desc.append(s["codec_name"])
    return int(doc["format"]["bit_rate"]) / 1e6, " + ".join(desc)


def loop_source(path: Path, url: str, group: media.ProcessGroup, name: str = "source") -> media.ManagedProcess:
    """Publish ``path`` over RTSP/TCP, looped at 1x, stream copy (no encoding)."""
    argv = [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "warning", "-nostats",
        "-re", "-stream_loop", "-1", "-i", str(path),
        "-map", "0", "-c", "copy", "-f", "rtsp", "-rtsp_transport", "tcp", url,
    ]  # fmt: skip
    return group.start(name, argv)


# The media benchmarks' routers run without the confidence monitor (on by default in
# the operator): it is one more reader and process of the router pod, and its own cost
# is bench/confidence.py's figure; so each benchmark keeps measuring what it measured.
ROUTER_SETTINGS = dataclasses.replace(rendered.SETTINGS, confidence_monitor=False)


def rtsp_router(
    workdir: Path, group: media.ProcessGroup, name: str = "cam", path_extra: dict[str, Any] | None = None
) -> rendered.RenderedInput:
    """The rendered router of an RTSP-published StreamInput, not started.

    ``path_extra`` is merged into the input's path config (the media-cost benchmark's
    MediaMTX ``forward:`` variant): the rendered file is rewritten, then run as is.
    """
    inp = rendered.make_input(name, "rtsp")
    router = rendered.prepare_input(inp, workdir, group=group, settings=ROUTER_SETTINGS)
    if path_extra:
        cfg = yaml.safe_load(router.config_text)
        cfg["paths"][name].update(path_extra)
        text = yaml.safe_dump(cfg, sort_keys=False)
        router.config_path.write_text(text)
        router.config_text = text
    return router


def start_rtsp_receiver(workdir: Path, group: media.ProcessGroup, name: str = "receiver") -> media.MediaMTX:
    """A MediaMTX taking RTSP publishes on any path (the destinations)."""
    cfg = media.mediamtx_config(api_port=media.free_tcp_port(), rtsp_port=media.free_tcp_port(), log_level="warn")
    # a publisher may take over a path a dead one still holds (outputs reconnecting)
    cfg["pathDefaults"] = {"overridePublisher": True}
    return media.start_mediamtx(cfg, workdir, group=group, name=name)


def rendered_output(
    name: str, input_name: str, url: str, router_rtsp_port: int, group: media.ProcessGroup,
    input_audio: tuple[str, ...] = ("MPEG-4 Audio",),
) -> rendered.RenderedOutput:  # fmt: skip
    """The output Pod's FFmpeg argv exactly as rendered, reading the loopback router."""
    out = rendered.make_output(name, input_name, url=url)
    return rendered.prepare_output(out, router_rtsp_port=router_rtsp_port, group=group, input_audio=input_audio)


@dataclass
class Flow:
    """Bytes a MediaMTX path received, between two samples."""

    path: str
    bytes: int
    seconds: float

    @property
    def mbps(self) -> float:
        return self.bytes * 8 / self.seconds / 1e6 if self.seconds > 0 else 0.0


def path_bytes(mtx: media.MediaMTX) -> dict[str, int]:
    """bytesReceived per ready path of a MediaMTX."""
    return {p.name: p.bytes_received for p in mtx.api().paths() if p.ready}


class Delivery:
    """Bytes each destination path of a receiver got over a window, from samples of its
    counters. A path that went away or whose counter went down was re-created (its
    publisher reconnected): that is an interruption, and its new count is bytes since."""

    def __init__(self, mtx: media.MediaMTX, names: list[str]) -> None:
        self.mtx = mtx
        self.names = names
        self.total = dict.fromkeys(names, 0)
        self.interruptions = dict.fromkeys(names, 0)
        self.last = {k: v for k, v in path_bytes(mtx).items() if k in self.total}

    def sample(self) -> None:
        try:
            now = path_bytes(self.mtx)
        except Exception:
            return  # the API was slow to answer: the next sample covers this one
        for name in self.names:
            value, prev = now.get(name), self.last.get(name)
            if value is None:
                if prev is not None:
                    self.interruptions[name] += 1
                    del self.last[name]
                continue
            if prev is not None and value < prev:
                self.interruptions[name] += 1
                prev = None
            self.total[name] += value - (prev or 0)
            self.last[name] = value


def path_sent(mtx: media.MediaMTX) -> dict[str, int]:
    return {p.name: p.bytes_sent for p in mtx.api().paths()}


def wait_paths_ready(mtx: media.MediaMTX, names: list[str], timeout: float) -> list[str]:
    """Wait until every path in ``names`` is ready; returns those still not ready."""
    missing = list(names)

    def all_ready() -> bool:
        ready = {p.name for p in mtx.api().paths() if p.ready}
        missing[:] = [n for n in names if n not in ready]
        return not missing

    if wait_until(all_ready, timeout, 0.3) is None:
        return missing
    return []
