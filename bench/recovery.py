"""5. Recovery: the destination goes away and comes back; how long until frames arrive
again, against the output's ``reconnect.delaySeconds``.

On the media harness: the rendered router fed by the test pattern, one output run
with its rendered FFmpeg argv pushing RTSP/TCP to a receiver MediaMTX (the
destination), and a restart loop emulating the kubelet and the operator as the spec
says: after the n-th consecutive failure, restart after
``status.backoff_allowed(delaySeconds, maxDelaySeconds, n)`` seconds (delay, 2x delay,
... capped at maxDelaySeconds).

Two outages per delay:

* brief: the destination restarts (stopped, started again as soon as FFmpeg has
  exited): the first retry, ``delay`` seconds after the exit, finds it back;
* long: the destination stays away until the first retry has failed too, so the next
  comes 2 x delay after that: the bound is then the back-off still pending when the
  destination returns, + 1 s.

Measured from the destination's return (its process spawned again, so its own
start-up counts against us) to the first bytes of the new publish arriving at it,
for a destination taking RTSP (the output muxes RTSP, which probes longer: it needs the
video's size) and one taking SRT (MPEG-TS, short probe): see render.ANALYZE_US.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from streamdist.status import backoff_allowed
from streamdist_dev import media, rendered

from . import mediautil
from .common import Opts, Result, Table, say

NAME = "recovery"
TITLE = "recovery: destination down and up again, time to frames vs reconnect delay"
MAX_DELAY = 30  # spec.reconnect.maxDelaySeconds default
DESTINATIONS = ("rtsp", "srt")


class BackoffLoop(rendered.KubeletLoop):
    """Restart one rendered output when it exits, after the spec's back-off."""

    def __init__(self, output: rendered.RenderedOutput, delay: int, max_delay: int = MAX_DELAY) -> None:
        super().__init__(output, poll=0.02)
        self.delay = delay
        self.max_delay = max_delay

    def delay_after(self, failures: int) -> float:
        return backoff_allowed(self.delay, self.max_delay, failures)


@dataclass
class Outcome:
    delay: int
    outage: str
    destination: str
    detect_s: float | None = None  # destination stopped -> FFmpeg exited
    down_s: float = 0.0  # how long the destination was away
    failed_retries: int = 0
    pending_s: float | None = None  # back-off left when the destination returned
    recovered_s: float | None = None  # destination back -> first bytes arrive
    startup_s: float | None = None  # the FFmpeg that got through: its start -> first bytes
    bound_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.recovered_s is not None and self.recovered_s <= self.bound_s


def run(opts: Opts) -> Result:
    delays = (1,) if opts.quick else (1, 2, 5)
    res = Result(NAME, TITLE)
    t = Table(
        "seconds; recovered = destination back -> first bytes of the new publish at the destination",
        ["destination", "delaySeconds", "outage", "FFmpeg exit after", "away", "failed retries", "back-off pending",
         "recovered", "bound", "within bound", "FFmpeg start->bytes"],
    )  # fmt: skip
    outcomes: list[Outcome] = []
    for dest in DESTINATIONS:
        for d in delays:
            for outage in ("brief", "long"):
                say(opts, f"{NAME}: {dest} destination, delay {d}s, {outage} outage")
                o = measure(opts, d, outage, dest)
                outcomes.append(o)
                t.add(dest, d, outage, o.detect_s, o.down_s, o.failed_retries, o.pending_s, o.recovered_s, o.bound_s,
                      "ok" if o.ok else "MISSED", o.startup_s)  # fmt: skip
                for n in o.notes:
                    t.notes.append(f"{dest} delay {d}s {outage}: {n}")
    t.notes.append(
        "bound: delay + 1 s for the brief outage (the spec's target); for the long one, the back-off pending when "
        "the destination returned + 1 s (the doubling the spec asks for)"
    )
    t.notes.append(
        f"source: 640x360 H.264 at 1 Mbit/s with a {media.DEFAULT_GOP_SECONDS} s GOP + AAC, published over RTSP; "
        "FFmpeg start->bytes: from the restarted output's start to the first bytes at the destination"
    )
    t.notes.append(
        "on a real node add the pod's own start (the kubelet restarts the container in place; a pod the operator "
        "replaces after an overdue CrashLoopBackOff also waits for scheduling and the image)"
    )
    res.tables.append(t)
    res.figures = {f"{o.destination}-{o.delay}-{o.outage}": o.__dict__ for o in outcomes}
    return res


def measure(opts: Opts, delay: int, outage: str, destination: str = "rtsp") -> Outcome:
    out = Outcome(delay=delay, outage=outage, destination=destination)
    work: Path = opts.dir(f"{NAME}/{destination}-d{delay}-{outage}")
    with media.ProcessGroup(logdir=work / "logs") as g:
        rx_cfg = media.mediamtx_config(
            api_port=media.free_tcp_port(), rtsp_port=media.free_tcp_port(),
            srt_port=media.free_udp_port() if destination == "srt" else None, log_level="warn",
        )  # fmt: skip
        rx_cfg["pathDefaults"] = {"overridePublisher": True}
        rx = media.start_mediamtx(rx_cfg, work / "rx", group=g, name="receiver")
        router = mediautil.rtsp_router(work / "router", g)
        router.start()
        media.start_source("rtsp", router.ingest_url(), group=g, size="640x360", video_bitrate="1000k")
        router.wait_ready(30)
        url = rx.srt_url("out") if destination == "srt" else rx.rtsp_url("out")
        output = mediautil.rendered_output("out", router.name, url, router.rtsp_port, g)
        loop = BackoffLoop(output, delay).start()
        try:
            rx.wait_path_ready("out", timeout=30)
            time.sleep(2.0)  # streaming steadily
            t_down = time.monotonic()
            rx.stop()
            exited = media.wait_for(lambda: loop.exits and loop.exits[0].exited, 15, interval=0.01,
                                    what="FFmpeg to exit")  # fmt: skip
            out.detect_s = exited - t_down
            if outage == "brief":
                time.sleep(0.2)
            else:
                # away until the first retry has failed too: the next one is 2 x delay later
                media.wait_for(lambda: len(loop.exits) >= 2, delay + 30, interval=0.02, what="the first retry to fail")
                time.sleep(0.2)
            rx = media.start_mediamtx(rx_cfg, work / "rx", group=g, name="receiver")
            t_up = rx.process.started_at
            out.down_s = t_up - t_down
            out.failed_retries = len([e for e in loop.exits if e.exited > exited])
            # a retry already running (FFmpeg probing its input) has nothing pending
            out.pending_s = max(0.0, loop.next_start - t_up) if loop.next_start is not None else 0.0
            out.bound_s = delay + 1.0 if outage == "brief" else (out.pending_s or 0.0) + 1.0

            def arriving() -> float | None:
                p = rx.path("out")
                return time.monotonic() if p is not None and p.ready and p.bytes_received > 0 else None

            try:
                t_frames = media.wait_for(arriving, 4 * delay + 20, interval=0.05, what="frames at the destination")
                out.recovered_s = t_frames - t_up
                out.startup_s = t_frames - max(s for s in loop.starts if s <= t_frames)
            except TimeoutError as exc:
                out.notes.append(str(exc).splitlines()[0])
            failed_after = [e for e in loop.exits if e.exited > t_up]
            if failed_after:
                out.notes.append(f"{len(failed_after)} retries failed after the destination was back")
        finally:
            loop.stop()
    return out

