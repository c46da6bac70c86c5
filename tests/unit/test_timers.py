"""The schedule's timers on a real asyncio loop: a boundary runs the output's reconcile
once, at (never before) its time; re-arming moves it, None cancels it, arming from
another thread works, and a wish made before the loop is known is kept."""

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta

from streamdist.handlers import timers as timers_mod
from streamdist.handlers.memory import OutputKey
from streamdist.handlers.timers import Timers

A, B = OutputKey("live", "a"), OutputKey("live", "b")


def _run(scenario, seconds: float):
    """Run `scenario(timers, fired)` on a fresh loop for `seconds`; fired: [(key, wall time)]."""
    fired: list[tuple[OutputKey, datetime]] = []
    lock = threading.Lock()

    def run(key: OutputKey) -> None:
        with lock:
            fired.append((key, datetime.now(UTC)))

    async def main() -> Timers:
        timers = Timers()
        await scenario(timers, run)
        await asyncio.sleep(seconds)
        timers.stop()
        return timers

    timers = asyncio.run(main())
    return fired, timers


def test_a_boundary_runs_the_reconcile_once_at_its_time():
    when = datetime.now(UTC) + timedelta(seconds=0.3)

    async def scenario(timers, run):
        timers.start(asyncio.get_running_loop(), run)
        timers.arm(A, when)
        timers.arm(A, when)  # the same wish again: nothing changes

    fired, timers = _run(scenario, 1.5)
    assert [k for k, _ in fired] == [A]
    assert fired[0][1] >= when, "never before its time (how late: the benchmark and the integration test)"
    assert timers.armed() == {}, "a timer that went off is consumed; the reconcile arms the next"


def test_rearming_moves_the_timer_and_none_cancels_it():
    now = datetime.now(UTC)

    async def scenario(timers, run):
        timers.start(asyncio.get_running_loop(), run)
        timers.arm(A, now + timedelta(seconds=0.2))
        timers.arm(A, now + timedelta(seconds=0.5))
        timers.arm(B, now + timedelta(seconds=0.2))
        timers.arm(B, None)

    fired, _ = _run(scenario, 1.5)
    assert [k for k, _ in fired] == [A]
    assert fired[0][1] >= now + timedelta(seconds=0.5)


def test_armed_from_another_thread_and_before_the_loop_is_known():
    now = datetime.now(UTC)

    async def scenario(timers, run):
        timers.arm(A, now + timedelta(seconds=0.2))  # before start: kept
        timers.start(asyncio.get_running_loop(), run)
        thread = threading.Thread(target=timers.arm, args=(B, now + timedelta(seconds=0.3)))
        thread.start()
        thread.join()

    fired, _ = _run(scenario, 1.5)
    assert sorted(k.name for k, _ in fired) == ["a", "b"]


def test_a_far_boundary_is_slept_towards_in_steps(monkeypatch):
    """The loop's clock and the wall clock drift: a far timer wakes early, looks at the
    wall clock and sleeps on; it never runs the reconcile before its time."""
    monkeypatch.setattr(timers_mod, "MAX_SLEEP_SECONDS", 0.1)
    when = datetime.now(UTC) + timedelta(seconds=0.45)

    async def scenario(timers, run):
        timers.start(asyncio.get_running_loop(), run)
        timers.arm(A, when)

    t0 = time.monotonic()
    fired, _ = _run(scenario, 0.8)
    assert [k for k, _ in fired] == [A] and fired[0][1] >= when
    assert time.monotonic() - t0 >= 0.8


def test_a_boundary_already_past_runs_at_once():
    async def scenario(timers, run):
        timers.start(asyncio.get_running_loop(), run)
        timers.arm(A, datetime.now(UTC) - timedelta(seconds=5))

    fired, _ = _run(scenario, 1.0)
    assert [k for k, _ in fired] == [A]
