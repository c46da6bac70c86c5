"""The confidence monitor (images/ffmpeg/streamdist_confidence.py) on the media harness.

The rendered router of a UDP input runs with its rendered monitor sidecar (operator
setting ``confidence_monitor``; hold 2 s), both on loopback. One encoder publishes a
source that is, in turn: normal, black (10 s), normal, frozen (10 s: one frame
repeated), normal, silent (10 s of audio at volume 0), normal. The test polls the
monitor's ``/v1/state`` as the operator's health poll does and sees each of Black,
Frozen and Silent set during its own fault only and cleared after it; the operator's
decide step (streamdist.confidence) turns each state into the condition it would write;
``/metrics`` carries the gauges, the thumbnail is a JPEG at the monitor's width, and a
request without the operator's credential gets nothing.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time

import pytest

from streamdist import confidence
from streamdist_dev import media, rendered

pytestmark = pytest.mark.media

HOLD = 2.0
# Source timeline (seconds of the source's own clock): each fault 10 s, 8 s normal between.
BLACK = (8, 18)
FROZEN = (26, 36)  # frames 650-899 at 25 fps: frame 650 repeated
SILENT = (44, 54)
END = 62
FPS = 25


def _source_argv(url: str) -> list[str]:
    """One live encoder for the whole timeline: the faults come from the lavfi graph
    (``loop`` repeats one frame, ``drawbox`` paints black, ``volume`` mutes), paced by
    ``realtime`` as a live source is."""
    frozen_frames = (FROZEN[1] - FROZEN[0]) * FPS
    video = (f"testsrc2=size=640x360:rate={FPS},loop=loop={frozen_frames}:size=1:start={FROZEN[0] * FPS},"
             f"setpts=N/{FPS}/TB,drawbox=x=0:y=0:w=iw:h=ih:color=black:t=fill:enable='between(t,{BLACK[0]},{BLACK[1]})',"
             "realtime")  # fmt: skip
    audio = f"sine=frequency=1000:sample_rate=48000,volume=volume=0:enable='between(t,{SILENT[0]},{SILENT[1]})',arealtime"
    return ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "warning", "-nostats",
            "-f", "lavfi", "-i", video, "-f", "lavfi", "-i", audio, "-t", str(END + 30),
            "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
            "-pix_fmt", "yuv420p", "-g", str(FPS), "-keyint_min", str(FPS), "-sc_threshold", "0", "-b:v", "800k",
            "-c:a", "aac", "-b:a", "96k", *media.source_output_args("udp", url)]  # fmt: skip


@pytest.fixture
def group(tmp_path):
    media.require_media_tools()
    with media.ProcessGroup(logdir=tmp_path / "logs") as g:
        yield g


def test_black_frozen_silent_set_and_cleared(tmp_path, group):
    settings = dataclasses.replace(rendered.SETTINGS, confidence_monitor=True, confidence_hold_seconds=HOLD)
    inp = rendered.make_input("cam", "udp")
    router = rendered.start_input(inp, tmp_path / "router", group=group, settings=settings)
    assert router.monitor is not None, "the rendered Deployment has no monitor sidecar"
    creds = router.plan.credentials
    media.wait_tcp_listening(router.monitor_port)

    source = group.start("source", _source_argv(router.ingest_url()))
    t0 = time.monotonic()  # the source's clock starts here, within its startup time
    seen: list[tuple[float, frozenset[str], bool]] = []
    # what the operator would post, poll after poll (its decide step on each reading)
    posted: list[tuple[str, str]] = []
    written: list[dict[str, str]] | None = None
    while time.monotonic() - t0 < END + 6:
        try:
            state = confidence.fetch(media.LOOPBACK, router.monitor_port, creds.api_user, creds.api_password)
        except confidence.ConfidenceError:
            state = None
        if state is not None:
            seen.append((time.monotonic() - t0, state.active, state.running))
            judged = confidence.conditions(state, receiving=True)
            posted += [(kind, reason) for kind, reason, _ in confidence.transitions(written, judged)]
            written = [{"type": c.type, "status": c.status} for c in judged]
        time.sleep(0.25)
    assert source.alive(), "the source stopped early"
    assert router.monitor.alive(), "the monitor died"

    def when(kind: str) -> list[float]:
        return [t for t, active, _ in seen if kind in active]

    log = router.monitor.log_text()
    timeline = [(round(t, 1), sorted(a)) for t, a, _ in seen if a]
    assert any(running for _, _, running in seen), f"the monitor never read the input: {log[-2000:]}"
    for kind, (start, end) in (("black", BLACK), ("frozen", FROZEN), ("silent", SILENT)):
        times = when(kind)
        assert times, f"{kind} never detected; active over time: {timeline}; monitor log: {log[-2000:]}"
        # set after the fault began plus the hold, cleared within a few seconds of its end
        # (the router and the monitor add their latency; keyframes come once a second)
        assert start + HOLD - 0.5 <= min(times) <= start + HOLD + 4, f"{kind} set at {min(times):.1f} s: {timeline}"
        assert end - 1 <= max(times) <= end + 4, f"{kind} last seen at {max(times):.1f} s: {timeline}"
        others = [t for t in times if not start <= t <= end + 4]
        assert not others, f"{kind} seen outside its fault at {others}: {timeline}"
    # one Warning as each fault sets and one Normal as it clears: no flapping, nothing else
    assert posted == [("Warning", "BlackPicture"), ("Normal", "BlackCleared"),
                      ("Warning", "FrozenPicture"), ("Normal", "FrozenCleared"),
                      ("Warning", "SilentAudio"), ("Normal", "SilentCleared")], posted  # fmt: skip
    print("confidence: first/last seen (s of the source's clock): "
          + "; ".join(f"{k} {min(when(k)):.1f}-{max(when(k)):.1f}" for k in confidence.KINDS))

    # the operator's decide step on what it would read now (all clear)
    state = confidence.fetch(media.LOOPBACK, router.monitor_port, creds.api_user, creds.api_password)
    conds = confidence.conditions(state, receiving=True)
    assert [(c.type, c.status) for c in conds] == [("Black", "False"), ("Frozen", "False"), ("Silent", "False")]

    code, body = router.monitor_get("/metrics")
    assert code == 200 and "streamdist_input_black 0" in body.decode() and "streamdist_input_monitor_up 1" in body.decode()
    code, picture = router.monitor_get("/v1/thumbnail.jpg")
    assert code == 200 and picture.startswith(b"\xff\xd8") and picture.endswith(b"\xff\xd9")
    (tmp_path / "thumb.jpg").write_bytes(picture)
    probe = json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(tmp_path / "thumb.jpg")],
                                      check=True, capture_output=True, text=True).stdout)["streams"][0]  # fmt: skip
    assert (probe["codec_name"], probe["width"], probe["height"]) == ("mjpeg", 320, 180)
    assert len(picture) < 64_000, f"thumbnail of {len(picture)} bytes"

    # nobody else: no credential, or the readers' credential, gets nothing
    assert confidence.get(media.LOOPBACK, router.monitor_port, "/v1/thumbnail.jpg", "", "")[0] == 401
    assert confidence.get(media.LOOPBACK, router.monitor_port, "/metrics", creds.read_user, creds.read_password)[0] == 401


def test_source_lost_and_back(tmp_path, group):
    """The source goes away: the monitor says it reads nothing (the operator's conditions
    turn Unknown, no fault is claimed), logs the failure once while it retries, and reads
    the source again when it returns."""
    settings = dataclasses.replace(rendered.SETTINGS, confidence_monitor=True, confidence_hold_seconds=HOLD)
    router = rendered.start_input(rendered.make_input("cam", "udp"), tmp_path / "router", group=group, settings=settings)
    assert router.monitor is not None
    state = router.monitor_state

    def reading() -> bool:
        s = state()
        return s is not None and s.running and s.thumbnail_age is not None and s.thumbnail_age < 3

    source = media.start_source("udp", router.ingest_url(), group=group, size="640x360", gop_seconds=1.0)
    media.wait_for(reading, 30, what="the monitor reading the source")
    source.stop(grace=2)
    lost_at = time.monotonic()
    media.wait_for(lambda: (s := state()) is not None and not s.running, 30, what="the monitor noticing the loss")
    noticed = time.monotonic() - lost_at
    lost = state()
    assert lost is not None and lost.active == frozenset()
    assert {c.status for c in confidence.conditions(lost, receiving=True)} == {"Unknown"}
    code, body = router.monitor_get("/metrics")
    assert code == 200 and "streamdist_input_monitor_up 0" in body.decode()
    time.sleep(8)  # several retries without a source
    media.start_source("udp", router.ingest_url(), group=group, size="640x360", gop_seconds=1.0, name="source-2")
    back_at = time.monotonic()
    media.wait_for(reading, 40, what="the monitor reading the source again")
    print(f"confidence: loss noticed {noticed:.1f} s after the source stopped (the router's readTimeout); "
          f"reading again {time.monotonic() - back_at:.1f} s after it returned")
    exits = [line for line in router.monitor.log_text().splitlines() if "event=ffmpeg-exit" in line]
    assert 1 <= len(exits) <= 3, exits  # the run that ended, and each change of failure
    assert router.monitor.alive()
