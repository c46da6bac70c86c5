"""The switch's timeline (images/ffmpeg/switchlib/splice.py): what goes on air when,
and with which timestamps, table-tested with hand-made frames."""

import itertools

import pytest
from switchlib_import import splice, ts

HZ = splice.HZ
STEP = HZ // 25


def v(dts, arrived, key=False):
    return ts.Frame("video", dts, dts, b"v", key, arrived)


def a(dts, arrived):
    return ts.Frame("audio", dts, dts, b"a", True, arrived)


def gop(t0, dts0, frames=25, audio_lag=0.0):
    """A source's cache: a keyframe at t0, then frames every 40 ms, audio alongside."""
    out = []
    for i in range(frames):
        out.append(v(dts0 + i * STEP, t0 + i * 0.04, key=i == 0))
        out.append(a(dts0 + i * STEP + 10, t0 + i * 0.04 + audio_lag))
    return out


def drain(tl, until):
    return tl.pop(until)


@pytest.mark.parametrize(("healthy", "slate_ready", "wanted"), [
    ({"primary": True, "backup": True}, True, "primary"),
    ({"primary": False, "backup": True}, True, "backup"),
    ({"primary": False, "backup": False}, True, "slate"),
    ({"primary": False, "backup": False}, False, None),
    ({}, False, None),
])
def test_choose_prefers_primary_then_backup_then_slate(healthy, slate_ready, wanted):
    assert splice.choose(healthy, slate_ready) == wanted


@pytest.mark.parametrize(("on_air", "alive", "wanted", "key_age", "now"), [
    (None, False, "primary", 0.9, True),  # nothing on air: at once
    ("primary", False, "backup", 0.9, True),  # the one on air is lost: at once, from the cached keyframe
    ("slate", True, "primary", 0.9, True),  # the slate gives way at once
    ("backup", True, "primary", 0.9, False),  # the backup is fine: wait for the primary's next keyframe
    ("backup", True, "primary", 0.05, True),  # ... which is now
    ("primary", True, "slate", None, True),
])
def test_cut_now(on_air, alive, wanted, key_age, now):
    assert splice.cut_now(on_air, alive, wanted, key_age) is now


def test_cache_keeps_the_latest_gop_and_a_source_is_healthy_only_with_one():
    src = splice.Source("primary")
    src.add(v(0, 0.0))  # no keyframe yet
    assert src.cache.key is None and not src.healthy(0.0, 0.3)
    for f in gop(0.04, STEP, 10):
        src.add(f)
    assert src.cache.key.dts == STEP and len(src.cache.frames) == 20
    src.add(v(11 * STEP, 0.44, key=True))
    assert src.cache.frames == [v(11 * STEP, 0.44, key=True)]
    assert src.healthy(0.74, 0.3) and not src.healthy(0.75, 0.3)
    src.lose()
    assert src.cache.key is None and src.last_at is None


def test_timestamps_that_do_not_move_on_empty_the_cache():
    src = splice.Source("primary")
    for f in gop(0.0, 0, 5):
        src.add(f)
    src.add(v(4 * STEP + 1, 0.2))  # FFmpeg's clamp: +1/90000 s
    assert src.cache.key is None and src.anomalies == 1


def test_audio_arriving_later_than_its_video_is_the_skew():
    src = splice.Source("backup")
    for f in gop(0.0, 0, 20, audio_lag=0.12):
        src.add(f)
    assert src.skew == pytest.approx(0.12, abs=0.01)


def test_ready_at_leaves_no_frame_late():
    frames = gop(1.0, 0, 5, audio_lag=0.1)
    at = splice.ready_at(frames, 0.1)
    assert at == pytest.approx(1.0 + 0.1 + splice.LATE_MARGIN, abs=1e-3)
    assert splice.ready_at([], 0.5) == 0.0


def test_first_cut_starts_the_timeline_and_frames_go_out_by_their_timestamps():
    tl = splice.Timeline()
    record = tl.switch("primary", 2.0, gop(1.0, 5 * HZ, 25))
    assert record == splice.SwitchRecord(1, None, "primary", None, 2.0, "lost")
    out = drain(tl, 10.0)
    video = [s for s in out if s.frame.kind == "video"]
    assert video[0].frame.dts == splice.FIRST_DTS and video[0].frame.key
    assert all(b.frame.dts - a_.frame.dts == STEP for a_, b in itertools.pairwise(video))
    # one clock for every frame: due and timestamps move together
    assert {round(s.due - s.frame.dts / HZ, 6) for s in video} == {round(video[0].due - splice.FIRST_DTS / HZ, 6)}


def _on_primary(now=2.0):
    tl = splice.Timeline()
    tl.switch("primary", now, gop(now, 5 * HZ, 1))
    for i in range(1, 50):
        tl.live("primary", v(5 * HZ + i * STEP, now + i * 0.04))
    return tl


def test_a_lost_source_is_cut_away_from_at_once_with_the_wall_clock_gap():
    tl = _on_primary()
    drain(tl, 10.0)
    last = tl._last["video"]
    lost_at = last[1] + 0.3  # nothing for 300 ms
    record = tl.switch("backup", lost_at, gop(lost_at - 0.5, 99 * HZ, 13))
    assert record.source == "primary" and record.to == "backup" and record.reason == "lost"
    assert record.gap_ms == pytest.approx(300, abs=2)  # the cached GOP is old enough: no margin to add
    out = drain(tl, 20.0)
    first = next(s for s in out if s.role == "backup")
    assert first.frame.key and first.frame.dts - last[0] == round(record.gap_ms * 90)


def test_frames_queued_before_a_loss_still_go_out_first():
    tl = _on_primary()
    drain(tl, 3.0)  # the primary's queue holds frames due after 3.0
    queued = tl._last["video"]
    tl.switch("backup", 3.0, gop(2.9, 99 * HZ, 3), keep_queued=True)
    out = drain(tl, 20.0)
    roles = [s.role for s in out if s.frame.kind == "video"]
    assert roles == sorted(roles, key=lambda r: r != "primary")  # every primary frame before any backup
    assert [s for s in out if s.role == "primary"][-1].frame.dts == queued[0]


def test_a_returning_source_takes_over_at_its_keyframe_and_what_was_queued_is_dropped():
    tl = splice.Timeline()
    tl.switch("backup", 1.0, gop(0.5, 7 * HZ, 13))
    drain(tl, 1.5)
    record = tl.switch("primary", 1.5, [v(3 * HZ, 1.5, key=True)], keep_queued=False, reason="returned")
    assert record.gap_ms < 100
    out = drain(tl, 20.0)
    assert [s.role for s in out] == ["primary"]


@pytest.mark.parametrize("cuts", [
    ["backup", "primary", "backup", "slate", "primary"],
    ["slate", "backup", "slate", "backup", "primary", "primary"],
])
def test_output_timestamps_only_go_forward_across_any_cuts(cuts):
    clip = splice.Slate(tuple(v(i * STEP, 0.0, key=i == 0) for i in range(25)), tuple(a(i * 1920, 0.0) for i in range(10)),
                        STEP, 1920.0)  # fmt: skip
    tl = splice.Timeline()
    now, dts0, out = 1.0, 0, []
    for n, role in enumerate(cuts):
        if role == "slate":
            tl.switch("slate", now, slate=clip)
        else:
            dts0 += 1000 * HZ * (n + 1)  # every source has a clock of its own
            tl.switch(role, now, gop(now - 0.3, dts0, 8), keep_queued=n % 2 == 0)
            for i in range(8, 40):
                tl.live(role, v(dts0 + i * STEP, now - 0.3 + i * 0.04))
        now += 1.3
        out += drain(tl, now)
    for kind in ("video", "audio"):
        dts = [s.frame.dts for s in out if s.frame.kind == kind]
        assert dts and all(b > a_ for a_, b in itertools.pairwise(dts)), kind
    assert next(s.frame.key for s in out if s.frame.kind == "video" and s.role != out[0].role)


def test_the_slate_loops_without_drift_at_29_97():
    step = HZ * 1001 / 30000
    clip = splice.Slate(tuple(v(i * 3003, 0.0, key=i == 0) for i in range(30)), (), step, 0.0)
    tl = splice.Timeline()
    tl.switch("slate", 0.0, slate=clip)
    out = drain(tl, 3600.0 * 1001 / 1000)  # an hour of 29.97 fps
    assert len(out) == 108_001 and out[-1].frame.dts - out[0].frame.dts == 3003 * (len(out) - 1)
    assert [s.frame.key for s in out[:31]] == [True] + [False] * 29 + [True]


def test_a_clock_jump_of_the_source_on_air_is_re_anchored():
    tl = _on_primary()
    drain(tl, 10.0)
    last = tl._last["video"][0]
    tl.live("primary", v(5 * HZ - 7 * HZ, 4.0))  # the encoder restarted its clock without a loss
    tl.live("primary", v(5 * HZ - 7 * HZ + STEP, 4.04))
    out = drain(tl, 20.0)
    assert [s.frame.dts > last for s in out] == [True, True] and out[1].frame.dts - out[0].frame.dts == STEP
    assert tl.notes[0][0] == "clock-jump"


def test_audio_from_before_the_keyframe_or_overlapping_what_went_out_is_dropped():
    tl = splice.Timeline()
    tl.switch("primary", 1.0, [v(10 * HZ, 1.0, key=True), a(10 * HZ + 48_000, 1.0)])
    drain(tl, 5.0)
    backup = [v(50 * HZ, 1.5, key=True), a(50 * HZ - 30 * HZ, 1.5), a(50 * HZ + 100, 1.5), a(50 * HZ + 5000, 1.5)]
    tl.switch("backup", 1.5, backup, keep_queued=False)
    out = drain(tl, 5.0)
    assert [s.frame.kind for s in out] == ["video", "audio"]  # the one before the keyframe, and the overlap, gone
    assert out[1].frame.dts == splice.FIRST_DTS + 50_000  # the cut is 500 ms after the last frame
