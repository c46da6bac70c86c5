"""Timers that keep schedule boundaries: one per output whose schedule has one ahead.

Not a poll: a reconcile (in any thread) says when its output must be looked at again
(`arm`), and at that time kopf's event loop hands the output's reconcile to a pool of
threads of its own, through dispatch.guarded (a paused replica runs nothing). Its own
pool: a thousand windows opening at the same second must not queue behind the resync.

Ownership: `_wanted` (key -> when) changes under `_lock`, from any thread; the asyncio
timer handles (`_handles`) are touched only on the loop's thread. A changed wish
crosses over once, with call_soon_threadsafe; an unchanged one costs a dict lookup.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from .memory import OutputKey

log = logging.getLogger("streamdist")
# Far boundaries are slept towards in steps: the loop's clock (monotonic) and the wall
# clock drift apart over days, and a step re-reads the wall clock.
MAX_SLEEP_SECONDS = 300.0
WORKERS = 16


class Timers:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wanted: dict[OutputKey, datetime] = {}
        self._handles: dict[OutputKey, asyncio.TimerHandle] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._run: Callable[[OutputKey], None] | None = None
        self._pool: ThreadPoolExecutor | None = None

    def start(self, loop: asyncio.AbstractEventLoop, run: Callable[[OutputKey], None]) -> None:
        """Begin keeping time on `loop` (call it there); `run` reconciles one output."""
        self._loop, self._run = loop, run
        self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="schedule")
        with self._lock:
            keys = list(self._wanted)
        for key in keys:  # wishes made before the loop was known
            self._sync(key)

    def stop(self) -> None:
        """Cancel every timer (on the loop's thread) and let running reconciles finish."""
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()
        if self._pool:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def arm(self, key: OutputKey, when: datetime | None) -> None:
        """Look at `key` again at `when` (None: no timer). Any thread."""
        with self._lock:
            if self._wanted.get(key) == when:
                return
            if when is None:
                self._wanted.pop(key, None)
            else:
                self._wanted[key] = when
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._sync, key)

    def armed(self) -> dict[OutputKey, datetime]:
        """A snapshot of every timer asked for."""
        with self._lock:
            return dict(self._wanted)

    def _sync(self, key: OutputKey) -> None:
        """Make the loop's timer of `key` match the wish (loop thread)."""
        handle = self._handles.pop(key, None)
        if handle:
            handle.cancel()
        with self._lock:
            when = self._wanted.get(key)
        if when is not None:
            self._schedule(key, when)

    def _schedule(self, key: OutputKey, when: datetime) -> None:
        assert self._loop is not None
        delay = min(MAX_SLEEP_SECONDS, max(0.0, (when - datetime.now(UTC)).total_seconds()))
        self._handles[key] = self._loop.call_at(self._loop.time() + delay, self._due, key, when)

    def _due(self, key: OutputKey, when: datetime) -> None:
        """The timer went off (loop thread): sleep on when early, else reconcile once.

        The wish is consumed first, so the reconcile's own `arm` sets the next timer.
        """
        self._handles.pop(key, None)
        if datetime.now(UTC) < when:
            self._schedule(key, when)
            return
        with self._lock:
            if self._wanted.get(key) != when:
                return  # re-armed meanwhile: _sync has scheduled the new wish
            del self._wanted[key]
        assert self._pool is not None
        self._pool.submit(self._call, key)

    def _call(self, key: OutputKey) -> None:
        """Run one reconcile in the pool; a failure is logged, never lost in a future."""
        assert self._run is not None
        try:
            self._run(key)
        except Exception:
            log.exception("schedule timer failed namespace=%s name=%s", key.namespace, key.name)
