#!/usr/bin/python3
"""streamdist-switch: keep one FFmpeg relay publishing the freshest ingest into a path.

A StreamInput with a backup ingest gets three MediaMTX paths in its router pod:

* ``<path>`` (e.g. ``cam``): what the output pods read. ``alwaysAvailable`` plays
  an offline slate while nobody publishes, ``overridePublisher`` lets a new
  publisher kick the current one;
* ``<path>-primary``: the primary ingest;
* ``<path>-backup``: the backup ingest.

MediaMTX v1.20.1 has no priority switch, so this sidecar (same network namespace as
MediaMTX) polls the control API and keeps at most one relay (``ffmpeg -c copy``)
publishing into ``<path>``: from the primary whenever it is fresh, else from the
backup when that is fresh, else none, so MediaMTX's slate plays.

A switch starts the new relay first and leaves the old one alone: the moment the new
relay publishes, MediaMTX kicks the old one, so the picture never falls back to the
slate during a switch (returning primary included). The old relay then exits by
itself and is reaped; one still alive ``--handover`` seconds after the new one
started is stopped. With nothing fresh every relay is stopped (SIGINT, SIGKILL after
2 s). Relays die with the switcher (SIGTERM via PR_SET_PDEATHSIG), even if it is
SIGKILLed.

Logs: one ``event=... key=value`` line per event on stdout; relays' stderr is ours.

Stdlib only, Python 3.11: it runs with Debian's python3 in the FFmpeg image
(``/usr/local/bin/streamdist-switch``) and must not import streamdist.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

PRIMARY = "primary"
BACKUP = "backup"
ROLES = (PRIMARY, BACKUP)

# How long a relay asked to stop (SIGINT) gets before SIGKILL.
STOP_GRACE_SECONDS = 2.0


# ------------------------------------------------------------------- pure core


@dataclass(frozen=True)
class Sample:
    """One ingest path as the control API showed it at one moment."""

    available: bool
    inbound_bytes: int


MISSING = Sample(available=False, inbound_bytes=0)


class ApiError(Exception):
    """The control API could not be read or answered something unusable."""


def _int_field(item: Mapping[str, Any], *keys: str) -> int:
    """The first of ``keys`` that holds an integer (MediaMTX renamed its counters)."""
    for key in keys:
        value = item.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return 0


def parse_item(item: Mapping[str, Any]) -> Sample:
    """One item of ``/v3/paths/list``. v1.20 says ``available``/``inboundBytes``;
    the deprecated ``ready``/``bytesReceived`` are the fallback for older releases."""
    available = item.get("available")
    if available is None:
        available = item.get("ready")
    return Sample(available=available is True, inbound_bytes=_int_field(item, "inboundBytes", "bytesReceived"))


def parse_paths(doc: Any, names: Sequence[str]) -> dict[str, Sample]:
    """Samples of ``names`` from a ``/v3/paths/list`` body. A path the router does
    not list has no source at all: not available, no bytes."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("items") or [], list):
        raise ApiError("unexpected response: no items list")
    found: dict[str, Sample] = {}
    for item in doc.get("items") or []:
        if isinstance(item, Mapping) and item.get("name") in names:
            found[str(item["name"])] = parse_item(item)
    return {name: found.get(name, MISSING) for name in names}


@dataclass
class _Seen:
    """What Freshness remembers of one path: the last sample and the last growth."""

    inbound_bytes: int
    grew_at: float | None


class Freshness:
    """Which ingest paths carry data right now.

    A path is *fresh* when it is available and its inbound byte counter changed to a
    positive value between two consecutive samples within the last ``stale_seconds``.

    Why the counter and not ``available`` alone: a UDP MPEG-TS source that goes silent
    stays available in MediaMTX until readTimeout (10 s); its counter stops at once.

    Why growth between two samples and not one sample with bytes > 0: a single
    reading cannot tell a live source from one that has been silent for 9 s and is
    still available, so trusting it would start a relay and drop it stale_seconds later
    (flapping). A path's first sample after start-up or after an API outage (when the
    counter may have grown at any time) is therefore only a baseline, and callers
    wait for ``warm``.

    Why this still switches as fast as one sample for a returning source: an
    unavailable or missing path counts as 0 bytes (MediaMTX reports 0 when a path has
    no stream), so a source that comes back shows growth (0 -> n) on its very first
    available sample. A counter that went down was reset (a new stream since the last
    sample), so any positive value is growth too.
    """

    def __init__(self, stale_seconds: float = 0.5) -> None:
        self.stale_seconds = stale_seconds
        self._seen: dict[str, _Seen] = {}
        self._rounds = 0

    def reset(self) -> None:
        """Forget every baseline (after an API outage)."""
        self._seen.clear()
        self._rounds = 0

    @property
    def warm(self) -> bool:
        """True once two rounds of samples were observed since start or reset."""
        return self._rounds >= 2

    def observe(self, now: float, samples: Mapping[str, Sample]) -> None:
        """Take one round of samples, all read at ``now``."""
        for name, sample in samples.items():
            self._observe_one(now, name, sample)
        self._rounds += 1

    def _observe_one(self, now: float, name: str, sample: Sample) -> None:
        prev = self._seen.get(name)
        grew_at = prev.grew_at if prev else None
        if not sample.available:
            grew_at = None
        elif prev is not None and sample.inbound_bytes > 0 and sample.inbound_bytes != prev.inbound_bytes:
            grew_at = now
        # An unavailable path's baseline is 0 bytes: its return is growth.
        baseline = sample.inbound_bytes if sample.available else 0
        self._seen[name] = _Seen(inbound_bytes=baseline, grew_at=grew_at)

    def fresh(self, name: str, now: float) -> bool:
        """Whether ``name`` grew within ``stale_seconds`` of ``now`` and is available."""
        seen = self._seen.get(name)
        return seen is not None and seen.grew_at is not None and now - seen.grew_at <= self.stale_seconds


def want(fresh_primary: bool, fresh_backup: bool) -> str | None:
    """The ingest to put on air: primary has priority; None lets the slate play."""
    if fresh_primary:
        return PRIMARY
    if fresh_backup:
        return BACKUP
    return None


def relay_argv(ffmpeg: str, rtsp_base: str, source_path: str, target_path: str, role: str) -> list[str]:
    """FFmpeg copying ``source_path`` into ``target_path`` over RTSP/TCP on the router.

    ``-timeout`` (2 s socket I/O) makes a relay whose source stalls exit instead of
    holding the reader path with no data; a short ``-analyzeduration`` keeps the
    switch quick. ``?streamdist=<role>`` is shown as the session's query by
    MediaMTX's API, so the operator can tell which relay is on air.
    """
    base = rtsp_base.rstrip("/")
    return [
        ffmpeg,
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "warning",
        "-rtsp_transport",
        "tcp",
        "-timeout",
        "2000000",
        "-analyzeduration",
        "100000",
        "-i",
        f"{base}/{source_path}",
        "-map",
        "0",
        "-c",
        "copy",
        "-f",
        "rtsp",
        "-rtsp_transport",
        "tcp",
        f"{base}/{target_path}?streamdist={role}",
    ]


@dataclass(frozen=True)
class Action:
    """What one tick does: start a relay for ``start``, stop the relays of ``stop``."""

    start: str | None = None
    stop: tuple[str, ...] = ()


def plan_tick(
    wanted: str | None,
    running: Mapping[str, float],
    last_start: Mapping[str, float],
    now: float,
    retry: float,
    handover: float,
) -> Action:
    """Decide one tick from the wanted role and the relays still running.

    ``running`` maps the role of each live relay not already being stopped to when it
    started; ``last_start`` maps a role to its last start (running or not).

    * nothing wanted: stop every relay, so the slate plays;
    * the wanted relay is missing (new want, or it exited): start it, at most once
      per ``retry`` seconds; the other relay is left alone, MediaMTX kicks it when
      the new one publishes (no gap);
    * a relay of another role still alive ``handover`` seconds after the wanted one
      started was not kicked (the wanted one has published or exited by then):
      stop it, so no relay outlives its use.
    """
    if wanted is None:
        return Action(stop=tuple(sorted(running)))
    others = tuple(sorted(role for role in running if role != wanted))
    if wanted in running:
        return Action(stop=others if now - running[wanted] >= handover else ())
    started = last_start.get(wanted)
    if started is not None and now - started < retry:
        return Action()
    return Action(start=wanted)


def log_line(event: str, **fields: object) -> str:
    """``event=... key=value ...``: one event a line, values quoted when needed."""
    parts = [f"event={event}"]
    for key, value in fields.items():
        text = "none" if value is None else str(value)
        if not text or any(c.isspace() or c in '"=\\' for c in text):
            text = json.dumps(text)
        parts.append(f"{key}={text}")
    return " ".join(parts)


# --------------------------------------------------------------------- the loop


def log(event: str, **fields: object) -> None:
    """Print one event to stdout, flushed: stdout is the container log (a pipe)."""
    print(log_line(event, **fields), flush=True)


def _die_with_parent(parent: int) -> Callable[[], None]:
    """A preexec_fn that makes the kernel SIGTERM the relay if the switcher dies
    (even by SIGKILL), so no relay outlives the switcher. Linux only; skipped when
    libc cannot be loaded."""

    def preexec() -> None:
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError, ImportError):
            return
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


@dataclass
class Relay:
    """One FFmpeg relay we started, and when we asked it to stop (if we did)."""

    role: str
    proc: subprocess.Popen[bytes]
    started_at: float
    stop_sent_at: float | None = None
    killed: bool = False


@dataclass
class Switcher:
    """The switcher's state between ticks; every process it starts it also stops."""

    args: argparse.Namespace
    freshness: Freshness
    relays: list[Relay] = field(default_factory=list)
    last_start: dict[str, float] = field(default_factory=dict)
    on_air: str | None = None
    api_error: str | None = None

    def source(self, role: str) -> str:
        """The ingest path a role relays from."""
        return str(self.args.primary if role == PRIMARY else self.args.backup)

    def start(self, role: str, now: float) -> None:
        """Start a relay for ``role``; its stderr is the container log."""
        argv = relay_argv(self.args.ffmpeg, self.args.rtsp, self.source(role), self.args.path, role)
        self.last_start[role] = now
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                # preexec_fn is unsafe only with threads; the switcher has none.
                preexec_fn=_die_with_parent(os.getpid()),
            )
        except OSError as exc:
            log("relay-error", role=role, error=str(exc))
            return
        self.relays.append(Relay(role, proc, now))
        log("relay-start", role=role, pid=proc.pid, source=self.source(role), target=self.args.path)

    def reap(self, now: float) -> None:
        """Forget relays that exited (kicked, failed or stopped); SIGKILL those that
        ignored SIGINT for STOP_GRACE_SECONDS."""
        for relay in list(self.relays):
            code = relay.proc.poll()
            if code is not None:
                self.relays.remove(relay)
                log("relay-exit", role=relay.role, pid=relay.proc.pid, code=code)
            elif not relay.killed and relay.stop_sent_at is not None and now - relay.stop_sent_at >= STOP_GRACE_SECONDS:
                log("relay-kill", role=relay.role, pid=relay.proc.pid)
                relay.killed = True
                relay.proc.kill()

    def stop(self, role: str, now: float, reason: str) -> None:
        """Ask the running relays of ``role`` to stop (SIGINT: FFmpeg closes cleanly)."""
        for relay in self.relays:
            if relay.role == role and relay.stop_sent_at is None:
                log("relay-stop", role=role, pid=relay.proc.pid, reason=reason)
                relay.stop_sent_at = now
                relay.proc.send_signal(signal.SIGINT)

    def running(self) -> dict[str, float]:
        """Role -> start time of the live relays not being stopped."""
        return {r.role: r.started_at for r in self.relays if r.stop_sent_at is None and r.proc.poll() is None}

    def tick(self, now: float, samples: Mapping[str, Sample] | None) -> None:
        """One round: reap, then (with fresh data) decide and act. ``samples`` None
        means the API failed: relays stay as they are."""
        self.reap(now)
        if samples is None:
            return
        self.freshness.observe(now, samples)
        if not self.freshness.warm:
            return
        wanted = want(self.freshness.fresh(self.args.primary, now), self.freshness.fresh(self.args.backup, now))
        if wanted != self.on_air:
            log("switch", **{"from": self.on_air, "to": wanted})
            self.on_air = wanted
        action = plan_tick(wanted, self.running(), self.last_start, now, self.args.retry, self.args.handover)
        for role in action.stop:
            self.stop(role, now, "no-source" if wanted is None else "handover")
        if action.start is not None:
            self.start(action.start, now)

    def api_failed(self, error: str) -> None:
        """Log an outage once; forget baselines (the counters may grow unseen)."""
        if self.api_error is None:
            log("api-error", api=self.args.api, error=error)
        self.api_error = error
        self.freshness.reset()

    def api_ok(self) -> None:
        """Log the end of an outage once."""
        if self.api_error is not None:
            log("api-recovered", api=self.args.api)
        self.api_error = None

    def shutdown(self) -> None:
        """Stop every relay: SIGINT, then SIGKILL what is left after the grace."""
        for relay in self.relays:
            if relay.proc.poll() is None and relay.stop_sent_at is None:
                log("relay-stop", role=relay.role, pid=relay.proc.pid, reason="shutdown")
                relay.proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for relay in self.relays:
            try:
                relay.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log("relay-kill", role=relay.role, pid=relay.proc.pid)
                relay.proc.kill()
                relay.proc.wait()
            log("relay-exit", role=relay.role, pid=relay.proc.pid, code=relay.proc.returncode)
        self.relays.clear()


def fetch_paths(opener: urllib.request.OpenerDirector, api: str, names: Sequence[str]) -> dict[str, Sample]:
    """GET every page of ``/v3/paths/list`` (1 s timeout) and sample ``names``."""
    items: list[Any] = []
    page = 0
    while True:
        url = f"{api.rstrip('/')}/v3/paths/list?itemsPerPage=100&page={page}"
        try:
            with opener.open(url, timeout=1.0) as resp:
                doc = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise ApiError(f"HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ApiError(str(getattr(exc, "reason", exc))) from None
        except ValueError as exc:
            raise ApiError(f"invalid JSON: {exc}") from None
        parse_paths(doc, names)  # validates the page's shape
        items.extend(doc.get("items") or [])
        page += 1
        count = doc.get("pageCount")
        if not isinstance(count, int) or page >= count:
            return parse_paths({"items": items}, names)


def run(args: argparse.Namespace) -> int:
    """Poll every ``--interval`` until SIGTERM/SIGINT, then stop the relays; exit 0."""
    stopping = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        # No printing here: a handler that prints while the loop prints can raise
        # "reentrant call" on the buffered stdout.
        received.append(signum)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # The router's API is on 127.0.0.1: never go through an http_proxy from the env.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    switcher = Switcher(args, Freshness(args.stale))
    names = (args.primary, args.backup)
    log("started", path=args.path, primary=args.primary, backup=args.backup, api=args.api, rtsp=args.rtsp)
    try:
        while not stopping.is_set():
            tick_at = time.monotonic()
            try:
                samples: dict[str, Sample] | None = fetch_paths(opener, args.api, names)
                switcher.api_ok()
            except ApiError as exc:
                samples = None
                switcher.api_failed(str(exc))
            switcher.tick(time.monotonic(), samples)
            stopping.wait(max(0.0, args.interval - (time.monotonic() - tick_at)))
    finally:
        if received:
            log("signal", name=signal.Signals(received[0]).name)
        switcher.shutdown()
    log("stopped")
    return 0


def _positive(text: str) -> float:
    """argparse type: a finite number of seconds > 0."""
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, not {text!r}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; ingest paths default to ``<path>-primary``/``<path>-backup``."""
    p = argparse.ArgumentParser(
        prog="streamdist-switch",
        description="Relay the primary ingest into PATH while it is fresh, else the backup, else nothing "
        "(MediaMTX's slate plays).",
    )
    p.add_argument("--path", required=True, help="the path readers read (alwaysAvailable, overridePublisher)")
    p.add_argument("--primary", help="primary ingest path (default: PATH-primary)")
    p.add_argument("--backup", help="backup ingest path (default: PATH-backup)")
    p.add_argument("--api", default="http://127.0.0.1:9997", help="MediaMTX control API (default: %(default)s)")
    p.add_argument("--rtsp", default="rtsp://127.0.0.1:8554", help="MediaMTX RTSP base URL (default: %(default)s)")
    p.add_argument("--ffmpeg", default="ffmpeg", help="FFmpeg executable (default: %(default)s)")
    p.add_argument("--interval", type=_positive, default=0.1, help="poll period, seconds (default: %(default)s)")
    p.add_argument(
        "--stale",
        type=_positive,
        default=0.3,
        help="no byte growth this long = not fresh, seconds (default: %(default)s)",
    )
    p.add_argument(
        "--retry", type=_positive, default=0.5, help="min seconds between starts of one relay (default: %(default)s)"
    )
    p.add_argument(
        "--handover",
        type=_positive,
        default=5.0,
        help="stop an old relay not kicked this long after the new one started (default: %(default)s)",
    )
    args = p.parse_args(argv)
    args.primary = args.primary or f"{args.path}-primary"
    args.backup = args.backup or f"{args.path}-backup"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``streamdist-switch --path cam``."""
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
