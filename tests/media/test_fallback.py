"""Fallback slate (StreamInput.spec.fallback) on the media harness.

The rendered router (MediaMTX with `alwaysAvailable` and the source's tracks) and a
rendered output's FFmpeg run on loopback. The source publishes over RTMP, stops for
10 s and comes back. With the fallback, the output's FFmpeg is the same process from
start to end (no reconnect), the receiver records the source (640x360), then
MediaMTX's offline slate (1920x1080, "STREAM IS OFFLINE"), then the source again, and
the video timestamps it records only go forward. Without it, the output exits when
the source goes, as before.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import time
from pathlib import Path

import pytest

from streamdist_dev import media, rendered

pytestmark = pytest.mark.media

GAP = 10.0
SLATE_SIZE = (1920, 1080)
SOURCE_SIZE = (640, 360)


@pytest.fixture
def group(tmp_path):
    media.require_media_tools()
    with media.ProcessGroup(logdir=tmp_path / "logs") as g:
        yield g


def _router(tmp_path: Path, group: media.ProcessGroup, fallback: bool) -> rendered.RenderedInput:
    spec: dict = {}
    if fallback:
        spec["fallback"] = {"video": "H264", "audio": "MPEG4Audio", "sampleRate": 48000, "channelCount": 2}
    return rendered.start_input(rendered.make_input("cam", "rtmp", **spec), tmp_path / "router", group=group)


def _online(router: rendered.RenderedInput) -> bool:
    assert router.mediamtx is not None
    path = router.mediamtx.path(router.name)
    return path is not None and path.online


def _frames(path: Path) -> list[tuple[float, int, int]]:
    """(pts_time, width, height) of every decoded video frame in the recording."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "frame=pts_time,width,height",
         "-of", "json", str(path)],
        capture_output=True, text=True, timeout=120, check=True,
    )
    frames = json.loads(out.stdout).get("frames", [])
    return [(float(f["pts_time"]), int(f["width"]), int(f["height"])) for f in frames if "pts_time" in f]


def _segments(frames: list[tuple[float, int, int]]) -> list[tuple[tuple[int, int], int]]:
    """Runs of the same frame size: [((w, h), frame count), ...]."""
    runs: list[tuple[tuple[int, int], int]] = []
    for _, w, h in frames:
        if runs and runs[-1][0] == (w, h):
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append(((w, h), 1))
    return runs


def test_source_gap_is_bridged_by_the_slate(tmp_path, group):
    router = _router(tmp_path, group, fallback=True)
    recording = tmp_path / "rx.ts"
    out = rendered.udp_recorded_output(router, recording, group=group)
    source = media.start_source("rtmp", router.ingest_url(), group=group, name="source-1")
    media.wait_for(lambda: _online(router), 20, what="source online")
    ffmpeg = out.start()
    time.sleep(6)
    source.stop(grace=3)  # the encoder drops
    time.sleep(GAP)
    assert ffmpeg.alive(), f"the output's FFmpeg exited during the gap: {out.stderr_line()}"
    media.start_source("rtmp", router.ingest_url(), group=group, name="source-2")
    media.wait_for(lambda: _online(router), 20, what="source back online")
    time.sleep(8)
    assert ffmpeg.alive(), f"the output's FFmpeg exited after the source came back: {out.stderr_line()}"
    assert len(out.runs) == 1, "the output was restarted"
    out.stop()
    time.sleep(1)
    frames = _frames(recording)
    runs = _segments(frames)
    sizes = [size for size, count in runs if count >= 10]
    assert sizes[:3] == [SOURCE_SIZE, SLATE_SIZE, SOURCE_SIZE], f"frame sizes over time: {runs}"
    pts = [p for p, _, _ in frames]
    backwards = [(a, b) for a, b in itertools.pairwise(pts) if b <= a]
    assert not backwards, f"video timestamps went backwards {len(backwards)} times, first {backwards[:3]}"
    slate_frames = next(count for size, count in runs if size == SLATE_SIZE)
    switches = [round(b[0] - a[0], 3) for a, b in itertools.pairwise(frames) if (a[1], a[2]) != (b[1], b[2])]
    assert len(switches) == 2
    print(f"fallback: {slate_frames} slate frames during a {GAP:.0f}s gap; timestamp step at the switches "
          f"(source->slate, slate->source): {switches} s; runs={runs}")


def test_without_fallback_the_output_exits_as_before(tmp_path, group):
    router = _router(tmp_path, group, fallback=False)
    out = rendered.udp_recorded_output(router, tmp_path / "rx.ts", group=group, query="")
    source = media.start_source("rtmp", router.ingest_url(), group=group, name="source")
    router.wait_ready(20)
    ffmpeg = out.start()
    time.sleep(4)
    source.stop(grace=3)
    media.wait_for(lambda: not ffmpeg.alive(), 15, what="the output's FFmpeg to exit")
