"""Failure behaviour of the rendered outputs, measured and printed.

An output pod is FFmpeg with ``restartPolicy: Always``: the kubelet's restart is the
reconnect, so FFmpeg must *exit* when its destination or its source fails rather
than hang. These tests run the rendered router and output argv (dev/streamdist_dev/
rendered) and measure, from the moment of the failure, how long FFmpeg takes:

* destination refused (nothing listening when FFmpeg starts);
* destination killed (the receiving process dies: TCP resets, SRT peer silence);
* destination frozen, SRT (SIGSTOP: no more ACKs, like a network black hole);
* source stalled: the router frozen (SIGSTOP), and the encoder of a UDP input gone;
* router restart (SIGTERM, as a rollout) and crash (SIGKILL): outputs exit, and the
  same argv started again, as the kubelet does, resumes once the router is back.

Each exit's last stderr line goes through ``status.one_line_error`` and the message
the operator would report through ``status.last_error`` (with the kubelet's
FallbackToLogsOnError rule): short, one line, and free of the canary secrets put
into the RTMP stream key and the SRT passphrase (both from Secrets). The log itself,
which the kubelet keeps as the Pod's termination message, is free of them too: the
image's entrypoint (images/ffmpeg/streamdist-ffmpeg) masks it.

Bounds are asserted; the measured times go into the table printed at the end of the
run (tests/media/conftest.py).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import re
import signal
import time
from pathlib import Path

import pytest

from streamdist_dev import media, rendered
from streamdist_dev.wait import wait_for

pytestmark = pytest.mark.media

CANARY_KEY = "canary-stream-key-7Hq2"
# The FFmpeg image's entrypoint waits this long for the router before it runs FFmpeg.
INPUT_WAIT_SECONDS = 5.0
CANARY_PASS = "canary-passphrase-9Xw4"
CANARIES = (CANARY_KEY, CANARY_PASS)
EXIT_BOUND = 10.0  # destination failures: seconds until FFmpeg exits
STALL_BOUND = 15.0  # source stalls: FFmpeg's RTSP read times out (-timeout 5 s, twice)
WINDOW = 12.0  # how long an exit is waited for
FLOW_TIMEOUT = 20.0
SETTLE = 2.0  # seconds of flow before a failure is injected


# ------------------------------------------------------------------------ helpers


def start_udp_router(tmp_path: Path, group: media.ProcessGroup, name: str = "cam"):
    """A rendered UDP-input router with the test source publishing into it."""
    router = rendered.start_input(rendered.make_input(name, "udp"), tmp_path / f"router-{name}", group=group)
    source = media.start_source("udp", router.ingest_url(), group=group, name=f"source-{name}")
    sample = router.wait_ready(FLOW_TIMEOUT)
    return router, source, sample


def output(
    form: str,
    router: rendered.RenderedInput,
    sample: media.PathSample,
    group: media.ProcessGroup,
    *,
    url: str | None = None,
    secret_url: str | None = None,
    name: str | None = None,
    ca: Path | None = None,
) -> rendered.RenderedOutput:
    """A rendered output of ``router``; ``secret_url`` comes through a Secret; an
    RTMPS one verifies the receiver against ``ca`` (spec.tls.caFrom)."""
    name = name or f"out-{form}"
    secrets = {}
    ca_ref = ("rx-ca", "ca.crt") if ca else None
    if secret_url is not None:
        secrets[f"{name}-dest"] = {"url": secret_url}
        out = rendered.make_output(name, router.name, secret_ref=(f"{name}-dest", "url"), ca_config_map=ca_ref)
    else:
        out = rendered.make_output(name, router.name, url=url, ca_config_map=ca_ref)
    return rendered.prepare_output(
        out,
        router_rtsp_port=router.rtsp_port,
        secrets=secrets,
        config_maps={"rx-ca": {"ca.crt": ca.read_text()}} if ca else None,
        input_audio=rendered.audio_tracks(sample),
        group=group,
    )


def srt_caller_url(port: int, path: str, passphrase: str | None = None) -> str:
    url = f"srt://{media.LOOPBACK}:{port}?streamid=publish:{path}&pkt_size=1316"
    return url + (f"&passphrase={passphrase}" if passphrase else "")


def srt_listener_url(port: int) -> str:
    return f"srt://{media.LOOPBACK}:{port}?mode=listener&pkt_size=1316"


def wait_flowing(checks: dict[str, object], timeout: float = FLOW_TIMEOUT) -> None:
    """Wait until every named check (a callable returning truthy) holds."""
    pending = dict(checks)

    def all_flowing() -> bool:
        for name, check in list(pending.items()):
            with contextlib.suppress(Exception):
                if check():  # type: ignore[operator]
                    del pending[name]
        return not pending

    wait_for("every check flowing", all_flowing, timeout, 0.2, detail=lambda: f"not flowing: {sorted(pending)}",
             error=AssertionError)


def rx_ready(rx: media.ReceiverServer, path: str):
    def check() -> bool:
        got = rx.mediamtx.path(path)
        return bool(got and got.ready and got.tracks)

    return check


def file_growing(path: Path, minimum: int = 50_000):
    return lambda: path.exists() and path.stat().st_size >= minimum


# What makes a last error readable: it says why (FFmpeg's "<what>: <reason>"), or it
# is the operator's own wording of a clean exit.
REASONS = re.compile(
    r"refused|timed out|broken pipe|input/output error|reset by peer|not found|unreachable|"
    r"denied|unauthori[sz]ed|forbidden|invalid data|end of file|exited cleanly",
    re.IGNORECASE,
)


def check_error_line(name: str, record: rendered.ExitRecord) -> list[str]:
    """Problems with what the operator would show for this exit (empty: fine)."""
    problems = []
    lines = [("lastError", record.reported)]
    if record.returncode != 0:
        lines.append(("stderr line", record.stderr_line))
    for label, line in lines:
        if not line.strip():
            problems.append(f"{name}: empty {label}")
        if "\n" in line or len(line) > 300:
            problems.append(f"{name}: {label} not one short line: {line!r}")
        if not REASONS.search(line):
            hint = ""
            if line.startswith("Error initializing output stream"):
                hint = (
                    " -- status.one_line_error takes FFmpeg's epilogue line; it should skip"
                    " 'Error initializing output stream N:M --' (and 'Conversion failed!') and"
                    " report the line before it, which has the reason"
                )
            problems.append(f"{name}: {label} does not say why FFmpeg stopped: {line!r}{hint}")
        for canary in CANARIES:
            if canary in line:
                problems.append(f"{name}: {label} leaks a secret: {line!r}")
    return problems


def measure_exits(
    scenario: str,
    outputs: dict[str, rendered.RenderedOutput],
    t0: float,
    media_report,
    *,
    bound: float,
    nonzero: bool,
    window: float = WINDOW,
) -> dict[str, rendered.ExitRecord | None]:
    """Wait (all from ``t0``) for each output to exit; record and check each one.
    Raises AssertionError naming every output that broke a rule."""
    results: dict[str, rendered.ExitRecord | None] = {}
    problems: list[str] = []
    for form, out in outputs.items():
        assert out.process is not None
        took = rendered.watch_exit(out.process, t0, window)
        if took is None:
            results[form] = None
            media_report.timing(scenario, form, None, None, out.stderr_line(), bound)
            problems.append(f"{form}: still running {window:.0f}s after the failure ({out.stderr_line()!r})")
            continue
        record = out.exit_record()
        results[form] = record
        media_report.timing(scenario, form, took, record.returncode, record.reported, bound, record.stderr_line)
        if took > bound:
            problems.append(f"{form}: exited after {took:.1f}s > {bound:.0f}s")
        if nonzero and record.returncode == 0:
            problems.append(f"{form}: exited 0, expected a failure code")
        problems += check_error_line(form, record)
        # The image's entrypoint masks FFmpeg's log, so the kubelet's copy of its tail
        # (lastState.terminated.message, readable by anyone who may get Pods) is clean too.
        leaked = [c for c in CANARIES if c in record.message or c in out.process.log_text()]
        if leaked:
            problems.append(f"{form}: the log / termination message holds a Secret's value: {record.message!r}")
    assert not problems, (
        f"{scenario}:\n"
        + "\n".join(f"- {p}" for p in problems)
        + "\nargv:\n"
        + "\n".join(f"  {f}: {o.argv}" for f, o in outputs.items())
    )
    return results


# -------------------------------------------------------------------------- tests


def test_destination_refused(tmp_path, group, media_report):
    """Nothing listens where the output sends: FFmpeg fails at once, saying why."""
    router, _, sample = start_udp_router(tmp_path, group)
    dead_tcp = [media.free_tcp_port() for _ in range(3)]
    outputs = {
        "srt-caller": output(
            "srt-caller",
            router,
            sample,
            group,
            secret_url=srt_caller_url(media.free_udp_port(), "x", CANARY_PASS),
        ),
        "rtmp": output(
            "rtmp", router, sample, group, secret_url=f"rtmp://{media.LOOPBACK}:{dead_tcp[0]}/live/{CANARY_KEY}"
        ),
        "rtmps": output("rtmps", router, sample, group, url=f"rtmps://{media.LOOPBACK}:{dead_tcp[1]}/live/x"),
        "rtsp": output("rtsp", router, sample, group, url=f"rtsp://{media.LOOPBACK}:{dead_tcp[2]}/x"),
    }
    t0 = time.monotonic()
    for out in outputs.values():
        out.start()
    measure_exits("destination refused (from start)", outputs, t0, media_report, bound=EXIT_BOUND, nonzero=True)


def test_destination_killed_or_frozen(tmp_path, group, media_report):
    """Destination gone: every connected output exits non-zero within seconds, except
    UDP, which cannot notice (by design). A frozen SRT peer (no ACKs) is noticed too."""
    router, _, sample = start_udp_router(tmp_path, group)
    rx = media.start_receiver_server(tmp_path / "rx-kill", group=group, srt_passphrase=CANARY_PASS, name="rx-kill")
    rx_frozen = media.start_receiver_server(tmp_path / "rx-freeze", group=group, name="rx-freeze")
    srt_port = rx.mediamtx._port("srtAddress")
    frozen_srt_port = rx_frozen.mediamtx._port("srtAddress")
    listen_port, frozen_listen_port, udp_port = media.free_udp_port(), media.free_udp_port(), media.free_udp_port()

    killed = {
        "srt-caller": output(
            "srt-caller", router, sample, group, secret_url=srt_caller_url(srt_port, "k-srt", CANARY_PASS)
        ),
        "srt-listener": output("srt-listener", router, sample, group, url=srt_listener_url(listen_port)),
        "rtmp": output("rtmp", router, sample, group, secret_url=rx.rtmp_url(f"live/{CANARY_KEY}")),
        "rtmps": output("rtmps", router, sample, group, url=rx.rtmps_url("live/k-rtmps"), ca=rx.cert),
        "rtsp": output("rtsp", router, sample, group, url=rx.rtsp_url("k-rtsp")),
    }
    udp = output("udp", router, sample, group, url=f"udp://{media.LOOPBACK}:{udp_port}?pkt_size=1316")
    frozen = {
        "srt-caller": output(
            "srt-caller", router, sample, group, url=srt_caller_url(frozen_srt_port, "f-srt"), name="frozen-srt-caller"
        ),
        "srt-listener": output(
            "srt-listener", router, sample, group, url=srt_listener_url(frozen_listen_port), name="frozen-srt-listener"
        ),
    }
    slt = media.start_srt_caller_recorder(listen_port, tmp_path / "slt.ts", group=group)
    slt_frozen = media.start_srt_caller_recorder(frozen_listen_port, tmp_path / "slt-frozen.ts", group=group)
    udp_rx = media.start_udp_recorder(udp_port, tmp_path / "udp.ts", group=group)
    time.sleep(0.3)
    for out in [*killed.values(), udp, *frozen.values()]:
        out.start()
    wait_flowing(
        {
            "srt-caller": rx_ready(rx, "k-srt"),
            "rtmp": rx_ready(rx, f"live/{CANARY_KEY}"),
            "rtmps": rx_ready(rx, "live/k-rtmps"),
            "rtsp": rx_ready(rx, "k-rtsp"),
            "srt-listener": file_growing(tmp_path / "slt.ts"),
            "udp": file_growing(tmp_path / "udp.ts"),
            "frozen srt-caller": rx_ready(rx_frozen, "f-srt"),
            "frozen srt-listener": file_growing(tmp_path / "slt-frozen.ts"),
        }
    )
    time.sleep(SETTLE)

    t0 = time.monotonic()
    for proc in (rx.mediamtx.process, slt, udp_rx):
        proc.signal(signal.SIGKILL)
    for proc in (rx_frozen.mediamtx.process, slt_frozen):
        proc.signal(signal.SIGSTOP)
    try:
        measure_exits("destination killed", killed, t0, media_report, bound=EXIT_BOUND, nonzero=True)
        measure_exits("destination frozen (SIGSTOP)", frozen, t0, media_report, bound=EXIT_BOUND, nonzero=True)
        # UDP has no peer: a dead destination is never noticed, the output keeps sending
        assert udp.process is not None
        assert rendered.watch_exit(udp.process, t0, WINDOW) is None, udp.process.tail()
        media_report.timing("destination killed", "udp", None, None, "keeps sending (UDP has no peer)", None)
    finally:
        for proc in (rx_frozen.mediamtx.process, slt_frozen):
            proc.signal(signal.SIGCONT)


def test_source_stalled(tmp_path, group, media_report):
    """The router freezes (SIGSTOP), or the encoder of a UDP input goes away: outputs
    exit (FFmpeg's RTSP input times out, or MediaMTX closes the path) so that a
    fresh FFmpeg waits for the source again."""
    frozen_router, _, frozen_sample = start_udp_router(tmp_path, group, name="frozen")
    quiet_router, quiet_source, quiet_sample = start_udp_router(tmp_path, group, name="quiet")
    rx = media.start_receiver_server(tmp_path / "rx", group=group)

    def udp_url() -> str:
        return f"udp://{media.LOOPBACK}:{media.free_udp_port()}?pkt_size=1316"

    router_frozen = {
        "srt-caller": output(
            "srt-caller",
            frozen_router,
            frozen_sample,
            group,
            url=srt_caller_url(rx.mediamtx._port("srtAddress"), "s-srt"),
        ),
        "rtmp": output("rtmp", frozen_router, frozen_sample, group, url=rx.rtmp_url("live/s-rtmp")),
        "rtsp": output("rtsp", frozen_router, frozen_sample, group, url=rx.rtsp_url("s-rtsp")),
        "udp": output("udp", frozen_router, frozen_sample, group, url=udp_url()),
    }
    encoder_gone = {
        "rtmp": output("rtmp", quiet_router, quiet_sample, group, url=rx.rtmp_url("live/q-rtmp"), name="quiet-rtmp"),
        "udp": output("udp", quiet_router, quiet_sample, group, url=udp_url(), name="quiet-udp"),
    }
    for out in [*router_frozen.values(), *encoder_gone.values()]:
        out.start()
    wait_flowing(
        {
            "srt-caller": rx_ready(rx, "s-srt"),
            "rtmp": rx_ready(rx, "live/s-rtmp"),
            "rtsp": rx_ready(rx, "s-rtsp"),
            "quiet rtmp": rx_ready(rx, "live/q-rtmp"),
        }
    )
    time.sleep(SETTLE)
    assert all(o.process and o.process.alive() for o in [*router_frozen.values(), *encoder_gone.values()])

    t0 = time.monotonic()
    frozen_router.process.signal(signal.SIGSTOP)
    quiet_source.signal(signal.SIGKILL)
    try:
        # Exit code 0: FFmpeg treats its input's end as the end of the stream. The
        # kubelet restarts it anyway (restartPolicy Always); the operator names it.
        measure_exits(
            "source stalled: router frozen",
            router_frozen,
            t0,
            media_report,
            bound=STALL_BOUND,
            nonzero=False,
            window=STALL_BOUND + 5,
        )
        measure_exits(
            "source stalled: UDP encoder gone",
            encoder_gone,
            t0,
            media_report,
            bound=STALL_BOUND,
            nonzero=False,
            window=STALL_BOUND + 5,
        )
    finally:
        frozen_router.process.signal(signal.SIGCONT)


def router_goes_away(how: str, tmp_path: Path, group: media.ProcessGroup, media_report) -> list[str]:
    """One scenario of ``test_router_restart_and_crash_then_resume``; its problems."""
    tmp_path = tmp_path / how
    router, _, sample = start_udp_router(tmp_path, group, name=how)
    rx = media.start_receiver_server(tmp_path / "rx", group=group, srt_passphrase=CANARY_PASS, name=f"rx-{how}")
    paths = {"srt-caller": f"{how}-srt", "rtmp": f"live/{how}-{CANARY_KEY}", "rtsp": f"{how}-rtsp"}
    outs = {
        "srt-caller": output(
            "srt-caller",
            router,
            sample,
            group,
            secret_url=srt_caller_url(rx.mediamtx._port("srtAddress"), paths["srt-caller"], CANARY_PASS),
            name=f"{how}-srt-caller",
        ),
        "rtmp": output("rtmp", router, sample, group, secret_url=rx.rtmp_url(paths["rtmp"]), name=f"{how}-rtmp"),
        "rtsp": output("rtsp", router, sample, group, url=rx.rtsp_url(paths["rtsp"]), name=f"{how}-rtsp"),
    }
    loops = {form: rendered.KubeletLoop(out, backoff=1.0) for form, out in outs.items()}
    try:
        for loop in loops.values():
            loop.start()
        wait_flowing({form: rx_ready(rx, path) for form, path in paths.items()})
        time.sleep(SETTLE)

        t0 = time.monotonic()
        if how == "restart":
            router.process.signal(signal.SIGTERM)
        else:
            router.process.signal(signal.SIGKILL)
        router.process.wait(10)
        problems: list[str] = []
        deadline = t0 + EXIT_BOUND
        while time.monotonic() < deadline and not all(loop.exits_since(t0) for loop in loops.values()):
            time.sleep(0.05)
        for form, loop in loops.items():
            exits = loop.exits_since(t0)
            if not exits:
                problems.append(f"{form}: still running {EXIT_BOUND:.0f}s after the router went away")
                media_report.timing(f"router {how}: exit", form, None, None, outs[form].stderr_line(), EXIT_BOUND)
                continue
            first = exits[0]
            media_report.timing(
                f"router {how}: exit",
                form,
                first.exited - t0,
                first.returncode,
                first.reported,
                EXIT_BOUND,
                first.stderr_line,
            )
            problems += check_error_line(form, first)

        # Down for a while: a restart first waits for the router (the entrypoint's bounded
        # wait), then FFmpeg fails with a readable reason.
        time.sleep(3.0 + INPUT_WAIT_SECONDS)
        down_exits = {form: loop.exits_since(t0)[1:] for form, loop in loops.items()}
        for form, exits in down_exits.items():
            if not exits:
                problems.append(f"{form}: no restart failed while the router was down")
                continue
            failed = exits[-1]
            media_report.timing(
                f"router {how}: restart while down", form, failed.ran_for, failed.returncode, failed.reported, None
            )
            if failed.returncode == 0:
                problems.append(f"{form}: a restart with no router exited 0")
            if failed.ran_for < INPUT_WAIT_SECONDS - 1:
                problems.append(f"{form}: a restart did not wait for the router ({failed.ran_for:.1f}s)")
            problems += check_error_line(f"{form} (router down)", failed)

        t1, t1_wall = time.monotonic(), time.time()
        router.start()  # the same rendered config, env and ports
        router.wait_ready(FLOW_TIMEOUT)  # the UDP encoder never stopped sending

        def back(path: str) -> bool:
            """The receiver has the stream again, from a publisher that came after t1."""
            got = rx.mediamtx.path(path)
            return bool(got and got.ready and got.ready_time and got.ready_time.timestamp() > t1_wall)

        resumed: dict[str, float] = {}
        deadline = t1 + FLOW_TIMEOUT
        while time.monotonic() < deadline and len(resumed) < len(paths):
            for form, path in paths.items():
                if form not in resumed and back(path):
                    resumed[form] = time.monotonic() - t1
            time.sleep(0.1)
        for form in paths:
            took = resumed.get(form)
            media_report.timing(f"router {how}: resumed (router back -> receiver has it)", form, took, None, "", None)
            if took is None:
                problems.append(f"{form}: receiver did not get the stream back within {FLOW_TIMEOUT:.0f}s")

        recordings = {
            form: rx.record(path, tmp_path / f"after-{form}.ts", seconds=7.5, group=group)
            for form, path in paths.items()
            if form in resumed
        }
        for form, rec in recordings.items():
            if rec.wait(40) != 0:
                problems.append(f"{form}: recording after the restart failed: {rec.tail(3)}")
                continue
            try:
                media.assert_h264_aac(media.ffprobe_streams(tmp_path / f"after-{form}.ts"), min_seconds=5.0)
            except AssertionError as exc:
                problems.append(f"{form}: after the restart: {exc}")
        return [f"router {how}: {p}" for p in problems]
    finally:
        for loop in loops.values():
            loop.stop()


def test_router_restart_and_crash_then_resume(tmp_path, group, media_report):
    """MediaMTX goes away (SIGTERM: a rollout; SIGKILL: a crash; both at once, on two
    routers) and comes back on the same config: outputs exit, the kubelet's restarts
    fail while it is down, and once the source is back a fresh FFmpeg, same argv,
    delivers frames again."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(router_goes_away, how, tmp_path, group, media_report) for how in ("restart", "crash")]
        problems = [p for f in futures for p in f.result()]
    assert not problems, "\n".join(f"- {p}" for p in problems) + "\n" + group.logs()
