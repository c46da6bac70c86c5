"""Backup source (StreamInput.spec.backup) on the media harness.

The rendered router (MediaMTX: readers' path ``cam``, ingests ``cam-primary`` over UDP
and ``cam-backup`` over SRT) and its rendered switch sidecar
(images/ffmpeg/streamdist_switch.py) run on loopback with four rendered outputs, one
per output protocol (MPEG-TS over UDP, SRT caller, RTMP, RTSP), each to a receiver
that records what it gets. Primary (640x360) and backup (480x270, sized differently
so the recordings tell them apart) encoders both run. Then: the primary encoder is
killed (a cable pull); it comes back; the backup stops and the primary is killed again
(nothing left: the slate); the backup comes back. Every output's FFmpeg stays the same
process throughout; each receiver records primary, backup, primary, slate, backup in
that order, the slate in the size of the source before it; video timestamps only go
forward; the switch's state endpoint (what the operator reads for status.activeSource
and the Events) follows, and says the gap it measured at each cut. Printed: the
receiver's time without source frames at each switch, the gaps the switch measured,
and the slate's encoding CPU.
"""

from __future__ import annotations

import itertools
import json
import re
import signal
import statistics
import subprocess
import time
from pathlib import Path

import pytest

from streamdist_dev import media, rendered
from tests.media.test_fallback import _segments

pytestmark = pytest.mark.media

GOP = 1.0  # the encoders' keyframe interval
PRIMARY_SIZE, BACKUP_SIZE = (640, 360), (480, 270)
# Receiver's time without source frames at a switch, asserted: a bound, not a timing.
# A switch to the backup costs lossAfterMs (300) plus the cut, one back to the primary
# only the cut; each bound sits well above the maximum bench/failover.py measured
# (bench/RESULTS.md, "failover"), so a busier machine that wakes the switch late still
# passes, and a switch that waits for a router timeout (seconds: the relay before) fails.
TO_BACKUP_BOUND = 0.8
TO_PRIMARY_BOUND = 0.5
PROTOCOLS = ("udp", "srt", "rtmp", "rtsp")


@pytest.fixture
def group(tmp_path):
    media.require_media_tools()
    with media.ProcessGroup(logdir=tmp_path / "logs") as g:
        yield g


def _online(router: rendered.RenderedInput) -> bool:
    assert router.mediamtx is not None
    sample = router.mediamtx.path(router.name)
    return sample is not None and sample.online


def _receiver(proto: str, tmp_path: Path, group: media.ProcessGroup) -> tuple[str, Path]:
    """A destination of ``proto`` recording what it gets to MPEG-TS; returns its URL."""
    out = tmp_path / f"rx-{proto}.ts"
    if proto == "udp":
        port = media.free_udp_port()
        media.start_udp_recorder(port, out, group=group)
        return f"udp://{media.LOOPBACK}:{port}?pkt_size=1316", out
    if proto == "srt":
        port = media.free_udp_port()
        media.start_srt_listener_recorder(port, out, group=group)
        return f"srt://{media.LOOPBACK}:{port}?mode=caller", out
    port = media.free_tcp_port()
    url = f"rtmp://{media.LOOPBACK}:{port}/live/rx" if proto == "rtmp" else f"rtsp://{media.LOOPBACK}:{port}/rx"
    listen = ["-listen", "1"] if proto == "rtmp" else ["-rtsp_flags", "listen"]
    group.start(f"{proto}-receiver", ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "warning", *listen, "-i", url,
                                     "-map", "0", "-c", "copy", "-f", "mpegts", "-y", str(out)])  # fmt: skip
    # no probe connection: FFmpeg in listen mode takes one client, the probe would be it
    media.wait_for(lambda: _listening(port), 10, interval=0.05, what=f"{proto} receiver on {port}")
    return url, out


def _listening(port: int) -> bool:
    """A TCP socket is in LISTEN on ``port`` (per /proc/net/tcp, no connection made)."""
    with open("/proc/net/tcp") as f:
        return any(p[3] == "0A" and int(p[1].rsplit(":", 1)[1], 16) == port for p in (ln.split() for ln in f.readlines()[1:]))


def _video_frames(path: Path) -> list[tuple[int, int, int]]:
    """(pts in 90 kHz ticks, width, height) per decoded video frame."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_frames", "-show_entries",
         "frame=pkt_dts,pts,width,height", "-of", "json", str(path)],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    frames = json.loads(out.stdout).get("frames", [])
    return [(int(f["pts"]), int(f["width"]), int(f["height"])) for f in frames if f.get("pts") is not None]


def _wait_on_air(router: rendered.RenderedInput, role: str, timeout: float) -> float:
    t0 = time.monotonic()
    media.wait_for(lambda: router.on_air() == role, timeout, interval=0.05, what=f"{role} on air")
    return time.monotonic() - t0


def _encoder(router, role, n, group):
    size = PRIMARY_SIZE if role == "primary" else BACKUP_SIZE
    proto = "udp" if role == "primary" else "srt"
    return media.start_source(proto, router.ingest_url(role=role), group=group, name=f"{role}-{n}",
                              size="x".join(map(str, size)), gop_seconds=GOP)  # fmt: skip


def test_backup_takes_over_hands_back_and_the_slate_keeps_the_format(tmp_path: Path, group: media.ProcessGroup) -> None:
    backup_port = media.free_udp_port()
    inp = rendered.make_input("cam", "udp", backup={"protocol": "srt", "port": backup_port},
                              fallback={"color": "#203040"})  # fmt: skip
    router = rendered.start_input(inp, tmp_path / "router", group=group)
    assert router.switch is not None, "the rendered Deployment has no switch sidecar"
    primary = _encoder(router, "primary", 1, group)
    backup = _encoder(router, "backup", 1, group)
    _wait_on_air(router, "primary", 30)
    # the switch's publisher is on the readers' path (until then MediaMTX's own 1920x1080
    # slate plays: no source has published, no format was named)
    media.wait_for(lambda: _online(router), 10, what="the switch's publisher on the readers' path")
    outputs, recordings = [], {}
    for proto in PROTOCOLS:
        url, recordings[proto] = _receiver(proto, tmp_path, group)
        out = rendered.prepare_output(rendered.make_output(f"rx-{proto}", "cam", url=url),
                                      router_rtsp_port=router.rtsp_port, group=group, input_audio=("MPEG-4 Audio",))  # fmt: skip
        out.start()
        outputs.append(out)
    time.sleep(6)

    primary.signal(signal.SIGKILL)  # the primary's cable is pulled
    seen = {"backup": _wait_on_air(router, "backup", 5)}
    time.sleep(6)
    primary = _encoder(router, "primary", 2, group)
    seen["primary"] = _wait_on_air(router, "primary", 15)
    time.sleep(5)
    backup.stop(grace=2)  # the backup goes first (the primary is on air: no switch) ...
    time.sleep(2)
    primary.signal(signal.SIGKILL)  # ... then the primary: nothing left but the slate
    seen["slate"] = _wait_on_air(router, "slate", 5)
    time.sleep(4)
    _encoder(router, "backup", 2, group)
    _wait_on_air(router, "backup", 15)
    time.sleep(5)

    state = router.switch_state()
    for out in outputs:
        assert out.process is not None and out.process.alive(), f"{out.name} exited: {out.stderr_line()}"
        assert len(out.runs) == 1, f"{out.name} was restarted"
        out.stop()
    assert router.switch.alive(), "the switch sidecar died"
    time.sleep(1.5)

    tos = [s.to for s in state.switches]
    assert _subsequence(["backup", "primary", "slate", "backup"], tos), tos
    measured = [(s.source, s.to, s.gap_ms) for s in state.switches if s.source]
    log = router.switch.log_text()
    slate_cpu = re.findall(r"event=slate-ready format=\"([^\"]+)\" frames=\d+ cpu_s=([\d.]+)", log)
    report = []
    for proto in PROTOCOLS:
        frames = _video_frames(recordings[proto])
        pts = [p for p, _, _ in frames]
        backwards = [(a, b) for a, b in itertools.pairwise(pts) if b <= a]
        assert not backwards, f"{proto}: video timestamps went back {len(backwards)} times, first {backwards[:3]}"
        frames = frames[next(i for i, f in enumerate(frames) if (f[1], f[2]) in (PRIMARY_SIZE, BACKUP_SIZE)) :]
        runs = _segments(frames)
        # the slate's frames have the size of the source before them: only source sizes show
        assert {size for size, _ in runs} == {PRIMARY_SIZE, BACKUP_SIZE}, f"{proto}: frame sizes over time {runs}"
        assert _subsequence([PRIMARY_SIZE, BACKUP_SIZE, PRIMARY_SIZE, BACKUP_SIZE], [s for s, _ in runs]), runs
        changes = [(b[1:], round((b[0] - a[0]) / 90000, 3)) for a, b in itertools.pairwise(frames) if a[1:] != b[1:]]
        to_backup = [gap for size, gap in changes if size == BACKUP_SIZE]
        to_primary = [gap for size, gap in changes if size == PRIMARY_SIZE]
        report.append(f"{proto} to backup {to_backup} s, back {to_primary} s")
        assert max(to_backup) <= TO_BACKUP_BOUND, f"{proto}: {to_backup} s without source frames at switches to the backup"
        assert max(to_primary) <= TO_PRIMARY_BOUND, f"{proto}: {to_primary} s at switches back to the primary"
    print(
        f"backup: receivers without source frames: {'; '.join(report)}; the switch measured (from, to, ms) "
        f"{measured}; state said backup {seen['backup']:.2f}s after the primary's cable pull, primary "
        f"{seen['primary']:.2f}s after its encoder restarted, slate {seen['slate']:.2f}s after the last source "
        f"stopped; slate encodes (format, CPU s): {slate_cpu}"
    )


def _subsequence(wanted: list, seen: list) -> bool:
    """``wanted`` appears in ``seen`` in order (other items may come between: a busy
    machine can stall a source past lossAfterMs, and that is a switch too)."""
    it = iter(seen)
    return all(any(x == w for x in it) for w in wanted)


def test_slate_before_any_source_has_the_named_format_text_and_image(tmp_path: Path, group: media.ProcessGroup) -> None:
    """No source has published: with width/height named in spec.fallback the switch puts
    its slate on the readers' path at once, in that format, with the ConfigMap's image
    and the text on the colour (not MediaMTX's built-in 1920x1080 one)."""
    image = tmp_path / "logo.png"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=320x240", "-frames:v", "1", str(image)],
                   check=True, timeout=60)  # fmt: skip
    inp = rendered.make_input("cam", "udp", backup={"protocol": "udp", "port": media.free_udp_port()}, fallback={
        "width": 854, "height": 480, "frameRate": "30000/1001", "color": "#203040", "text": "We'll be right back",
        "imageFrom": {"configMapKeyRef": {"name": "slates", "key": "logo.png"}}})  # fmt: skip
    router = rendered.start_input(inp, tmp_path / "router", group=group,
                                  configmaps={"slates": {"logo.png": image.read_bytes()}})  # fmt: skip
    _wait_on_air(router, "slate", 30)
    media.wait_for(lambda: _online(router), 10, what="the switch's publisher on the readers' path")
    recording = tmp_path / "slate.ts"
    media.record(router.read_url(), recording, seconds=4, group=group).wait(60)
    probe = media.ffprobe_streams(recording)
    assert probe.video is not None and (probe.video.width, probe.video.height) == (854, 480), probe
    frames = _video_frames(recording)
    assert len(frames) > 60 and {(w, h) for _, w, h in frames} == {(854, 480)}
    step = statistics.median(b[0] - a[0] for a, b in itertools.pairwise(frames))
    assert step == 3003, f"frame step {step}/90000 s: not 29.97 fps"
    picture = subprocess.run(["ffmpeg", "-v", "error", "-i", str(recording), "-frames:v", "1", "-vf", "format=gray",
                              "-f", "rawvideo", "-"], capture_output=True, check=True, timeout=60).stdout  # fmt: skip
    corner, centre = picture[0], picture[240 * 854 + 427]
    assert abs(corner - 0x38) < 12, f"the background is not the colour: luma {corner}"  # #203040 -> Y ~ 0x38
    assert len(set(picture)) > 50, "no image or text on the slate"
    cpu = re.findall(r"event=slate-ready .* cpu_s=([\d.]+)", router.switch.log_text())
    print(f"slate before any source: 854x480@29.97 with image and text; centre luma {centre}; encode CPU {cpu} s")
