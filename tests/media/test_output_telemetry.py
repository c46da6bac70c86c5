"""What output pods report about themselves, from the rendered argv on real parts.

* every output's entrypoint serves FFmpeg's progress at GET /metrics; an SRT output
  (caller and listener) adds libsrt's link statistics from srt-live-transmit; the page
  holds no secret; the operator's own reader (handlers.telemetry.fetch) and summary
  (telemetry.summarize, degraded) make of it what status will show;
* under impairment: an SRT caller sends through a link into a network namespace the
  test creates, 60 ms of added delay (a delaying UDP relay: this kernel has no netem)
  and 2 % loss (iptables' statistic match, kernel side, data direction only): the RTT
  and the loss libsrt reports match what was imposed, Degraded (PacketLoss) appears,
  and clears once the loss is taken away.
"""

from __future__ import annotations

import os
import shlex
import time
from pathlib import Path

import pytest

from streamdist import telemetry
from streamdist.handlers.telemetry import fetch
from streamdist_dev import impair, media, rendered

pytestmark = pytest.mark.media

CANARY_PASS = "canary-telemetry-pass-3Jk8"
FLOW_TIMEOUT = 30.0
DELAY_MS = 60.0
LOSS = 0.02


def _router(tmp_path: Path, group: media.ProcessGroup, **pattern: str) -> tuple[rendered.RenderedInput, object]:
    router = rendered.start_input(rendered.make_input("cam", "udp"), tmp_path / "router", group=group)
    media.start_source("udp", router.ingest_url(), group=group, name="source", **pattern)
    return router, router.wait_ready(FLOW_TIMEOUT)


def _output(router: rendered.RenderedInput, sample: object, group: media.ProcessGroup, name: str, url: str,
            secret: bool = False) -> rendered.RenderedOutput:  # fmt: skip
    if secret:
        out = rendered.make_output(name, router.name, secret_ref=(f"{name}-dest", "url"))
        secrets = {f"{name}-dest": {"url": url}}
    else:
        out, secrets = rendered.make_output(name, router.name, url=url), {}
    output = rendered.prepare_output(out, router_rtsp_port=router.rtsp_port, secrets=secrets, group=group,
                                     input_audio=rendered.audio_tracks(sample))  # type: ignore[arg-type]
    output.start()
    return output


def _read(output: rendered.RenderedOutput, listener: bool = False) -> telemetry.Sample:
    page = fetch(media.LOOPBACK, output.metrics_port)
    assert CANARY_PASS not in page and "srt://" not in page and "rtsp://" not in page, page
    return telemetry.sample(output.name, time.monotonic(), telemetry.parse_exposition(page))


def _flowing(output: rendered.RenderedOutput, srt: bool) -> telemetry.Sample:
    def ready() -> telemetry.Sample | None:
        try:
            s = _read(output)
        except (OSError, ValueError):
            return None
        return s if s.frames > 0 and (s.connected or not srt) else None

    return media.wait_for(ready, FLOW_TIMEOUT, what=f"{output.name} muxing (log: {output.stderr_line()})")


def test_every_output_serves_its_progress_and_srt_outputs_their_link(tmp_path: Path, group: media.ProcessGroup) -> None:
    router, sample = _router(tmp_path, group)
    rx_port, listen_port, udp_port = media.free_udp_port(), media.free_udp_port(), media.free_udp_port()
    media.start_srt_listener_recorder(rx_port, tmp_path / "caller.ts", passphrase=CANARY_PASS,
                                      tool="srt-live-transmit", group=group)  # fmt: skip
    caller = _output(router, sample, group, "caller",
                     f"srt://127.0.0.1:{rx_port}?mode=caller&latency=120000&passphrase={CANARY_PASS}", secret=True)
    listener = _output(router, sample, group, "listener", f"srt://127.0.0.1:{listen_port}?mode=listener")
    udp = _output(router, sample, group, "udp", f"udp://127.0.0.1:{udp_port}?pkt_size=1316")

    # a listener with no caller yet muxes into its pipe and says Listening
    waiting = media.wait_for(lambda: _read(listener) if _read(listener).frames > 0 else None, FLOW_TIMEOUT,
                             what="the listener's FFmpeg")  # fmt: skip
    assert telemetry.summarize(None, waiting, listener=True).link == "Listening"
    media.start_srt_caller_recorder(listen_port, tmp_path / "listener.ts", group=group)

    first = {o.name: _flowing(o, srt=o is not udp) for o in (caller, listener, udp)}
    time.sleep(6)
    for output in (caller, listener, udp):
        now = _read(output)
        summary = telemetry.summarize(first[output.name], now, listener=output is listener)
        assert summary.link == "Up" and summary.moving, (output.name, summary, output.stderr_line())
        assert summary.speed is not None and 0.8 <= summary.speed <= 1.25, (output.name, summary)
        assert telemetry.degraded(summary).status == "False", (output.name, summary)
        if output is udp:
            assert not now.srt and summary.rtt_ms is None
            continue
        assert now.srt and now.sent > first[output.name].sent
        assert summary.rtt_ms is not None and summary.rtt_ms < 50, (output.name, summary)  # loopback
        assert summary.loss_percent is not None and summary.loss_percent < 1.0, (output.name, summary)
    assert media.ffprobe_streams(tmp_path / "caller.ts").video is not None


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces, veth and iptables need root")
def test_an_impaired_srt_link_is_measured_and_degraded_comes_and_goes(tmp_path: Path,
                                                                      group: media.ProcessGroup) -> None:
    router, sample = _router(tmp_path, group, video_bitrate="3000k")
    with impair.link() as link:
        relay_port, rx_port = 40000 + os.getpid() % 1000, 41000 + os.getpid() % 1000
        receiver = " ".join(shlex.quote(a) for a in link.ns(
            "srt-live-transmit", "-q", "-a:no", f"srt://127.0.0.1:{rx_port}?mode=listener", "file://con"))
        group.start("receiver", ["sh", "-c", f"exec {receiver} > {shlex.quote(str(tmp_path / 'rx.ts'))}"])
        impair.start_relay(link, relay_port, rx_port, DELAY_MS, group)
        output = _output(router, sample, group, "far",
                         f"srt://{link.far}:{relay_port}?mode=caller&latency=600000")
        _flowing(output, srt=True)
        time.sleep(3)  # RTT settles (libsrt smooths it)

        link.drop(relay_port, LOSS)
        before, dropped_before = _read(output), link.dropped()
        time.sleep(25)
        lossy, dropped = _read(output), link.dropped() - dropped_before
        summary = telemetry.summarize(before, lossy, listener=False)
        sent = lossy.sent - before.sent
        resent, lost = lossy.retransmitted - before.retransmitted, lossy.lost - before.lost
        report = (f"impaired: {DELAY_MS:.0f} ms delay, {LOSS:.0%} loss imposed; libsrt: RTT {summary.rtt_ms} ms, "
                  f"loss {summary.loss_percent:.2f} % ({resent:.0f} resent, {lost:.0f} reported lost, of {sent:.0f} "
                  f"sent); the kernel dropped {dropped} ({100 * dropped / max(sent, 1):.2f} %)")
        print(report)
        assert summary.rtt_ms is not None and DELAY_MS - 5 <= summary.rtt_ms <= DELAY_MS + 40, report
        assert summary.loss_percent is not None and 1.0 <= summary.loss_percent <= 3.5, report
        # libsrt resent as many packets as the kernel dropped (the ACKs and NAKs are not lost)
        assert abs((lossy.retransmitted - before.retransmitted) - dropped) <= max(5, 0.2 * dropped), report
        cond = telemetry.degraded(summary)
        assert (cond.status, cond.reason) == ("True", "PacketLoss"), report

        link.heal()
        time.sleep(3)  # retransmissions of the last losses settle
        healed_from = _read(output)
        time.sleep(10)
        healed = telemetry.summarize(healed_from, _read(output), listener=False)
        assert healed.loss_percent is not None and healed.loss_percent < 0.5, healed
        assert telemetry.degraded(healed).status == "False", healed
        assert output.process is not None and output.process.alive(), output.stderr_line()
