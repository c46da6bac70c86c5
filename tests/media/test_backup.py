"""Backup source (StreamInput.spec.backup) on the media harness.

The rendered router (MediaMTX: readers' path ``cam`` always available, ingests
``cam-primary`` over UDP and ``cam-backup`` over SRT) and its rendered switch sidecar
(images/ffmpeg/streamdist_switch.py) run on loopback with one rendered output's
FFmpeg sending to a UDP recorder. Primary (640x360) and backup (480x270) encoders
both run; the primary stops for 10 s and comes back. The output's FFmpeg stays the
same process throughout; the receiver records primary, backup, primary (a few slate
frames may sit at a switch), timestamps only go forward, and the operator's view
(``mediamtx.relay_role``, what status.activeSource shows) follows. Printed: how long
the receiver went without source frames at each switch.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest
from tests.harness import media, rendered
from tests.media.test_fallback import _frames, _segments

from streamdist.mediamtx import MediaMTXClient, relay_role

pytestmark = pytest.mark.media

GAP = 10.0
GOP = 1.0  # the encoders' keyframe interval: a stream-copy switch shows at the next keyframe
PRIMARY_SIZE, BACKUP_SIZE, SLATE_SIZE = (640, 360), (480, 270), (1920, 1080)
# Seconds without source frames at a switch, asserted: detection (0.3 s) + the relay's
# start (up to ~1 s on a loaded machine) + the wait for the next keyframe (one GOP). The
# target (< 1 s) is printed: on a quiet machine 0.9-1.1 s at a 1 s GOP.
SWITCH_BOUND = 2.0 + GOP


@pytest.fixture
def group(tmp_path):
    media.require_media_tools()
    with media.ProcessGroup(logdir=tmp_path / "logs") as g:
        yield g


def _relay(router: rendered.RenderedInput) -> str | None:
    """What the operator's health poll reads: whose relay feeds the readers' path."""
    client = MediaMTXClient(f"http://{media.LOOPBACK}:{router.api_port}", timeout=2)
    sample = client.path(router.name)
    return relay_role(sample, client.sessions("rtspSession")) if sample else None


def _source_gaps(frames: list[tuple[float, int, int]]) -> list[float]:
    """At each change of source (primary <-> backup): seconds of timestamps between the
    last frame of the one and the first of the other, slate frames counting as missing."""
    real = [(pts, (w, h)) for pts, w, h in frames if (w, h) != SLATE_SIZE]
    return [round(b[0] - a[0], 3) for a, b in itertools.pairwise(real) if a[1] != b[1]]


def test_backup_takes_over_and_hands_back(tmp_path: Path, group: media.ProcessGroup) -> None:
    backup_port = media.free_udp_port()
    inp = rendered.make_input("cam", "udp", backup={"protocol": "srt", "port": backup_port})
    router = rendered.start_input(inp, tmp_path / "router", group=group)
    assert router.switch is not None, "the rendered Deployment has no switch sidecar"
    port = media.free_udp_port()
    recording = tmp_path / "rx.ts"
    media.start_udp_recorder(port, recording, group=group)
    out = rendered.prepare_output(
        rendered.make_output("rx", "cam", url=f"udp://{media.LOOPBACK}:{port}?pkt_size=1316"),
        router_rtsp_port=router.rtsp_port, group=group,
    )  # fmt: skip
    size = "x".join(map(str, PRIMARY_SIZE))
    primary = media.start_source("udp", router.ingest_url(), group=group, name="primary-1", size=size, gop_seconds=GOP)
    media.start_source(
        "srt",
        router.ingest_url(role="backup"),
        group=group,
        name="backup",
        size="x".join(map(str, BACKUP_SIZE)),
        gop_seconds=GOP,
    )
    media.wait_for(lambda: _relay(router) == "primary", 20, what="the primary on air")
    ffmpeg = out.start()
    time.sleep(6)

    primary.stop(grace=3)  # the primary encoder drops; the backup keeps running
    media.wait_for(lambda: _relay(router) == "backup", 5, what="the backup on air")
    time.sleep(GAP)
    assert ffmpeg.alive(), f"the output's FFmpeg exited on the backup: {out.stderr_line()}"
    media.start_source("udp", router.ingest_url(), group=group, name="primary-2", size=size, gop_seconds=GOP)
    media.wait_for(lambda: _relay(router) == "primary", 10, what="the primary back on air")
    time.sleep(8)
    assert ffmpeg.alive(), f"the output's FFmpeg exited after the primary came back: {out.stderr_line()}"
    assert len(out.runs) == 1, "the output was restarted"
    assert router.switch is not None and router.switch.alive(), "the switch sidecar died"
    out.stop()
    time.sleep(1)

    frames = _frames(recording)
    runs = _segments(frames)
    sizes = [s for s, count in runs if count >= 10 and s != SLATE_SIZE]
    assert sizes[:3] == [PRIMARY_SIZE, BACKUP_SIZE, PRIMARY_SIZE], f"frame sizes over time: {runs}"
    pts = [p for p, _, _ in frames]
    backwards = [(a, b) for a, b in itertools.pairwise(pts) if b <= a]
    assert not backwards, f"video timestamps went backwards {len(backwards)} times, first {backwards[:3]}"
    gaps = _source_gaps(frames)
    assert len(gaps) == 2, f"expected two switches, got {gaps}; runs={runs}"
    print(
        f"backup: receiver without source frames at the switch to the backup {gaps[0]:.3f}s, back to the primary "
        f"{gaps[1]:.3f}s (target < 1 s); slate frames in between: "
        f"{sum(c for s, c in runs if s == SLATE_SIZE)}; runs={runs}"
    )
    assert max(gaps) <= SWITCH_BOUND, f"a switch left the receiver {max(gaps):.2f}s without source frames"
