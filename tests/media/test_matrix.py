"""The media plane end to end, from what ``render.py`` produces: every input protocol
into every output form.

For each input protocol (UDP MPEG-TS, SRT, SRT with a passphrase from a Secret,
RTMP, RTSP) one test starts the router exactly as rendered (dev/streamdist_dev/rendered),
publishes the lavfi test pattern (H.264 + AAC, 2 s GOP) to it, and runs six rendered
output Pods at once, one per output form, as the product does: SRT caller, SRT
listener, RTMP (destination from a Secret), RTMPS, UDP and RTSP. Real receivers
record what each output sends (a second MediaMTX for RTMP/RTMPS/RTSP/SRT pushes,
FFmpeg listening on UDP, srt-live-transmit calling the SRT listener) and ffprobe must
decode H.264 video and AAC audio with at least 5 s of frames. Each output is judged
on its own; a failure names the output and carries its FFmpeg's last error.

A last test proves the FLV rule: MP2 audio (broadcast MPEG-TS) reaches an RTMP
destination as AAC because render transcodes it, and SRT still carries MP2 as is.
"""

from __future__ import annotations

import concurrent.futures
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from streamdist_dev import media, rendered

pytestmark = pytest.mark.media

OUTPUT_FORMS = ("srt-caller", "srt-listener", "rtmp", "rtmps", "udp", "rtsp")
PASSPHRASE = "matrix-passphrase-0123"  # SRT passphrases are 10 to 79 characters
RECORD_SECONDS = 7.5  # reading the receiver joins mid-GOP: up to 2 s before a keyframe
PUSH_SECONDS = 8.5  # UDP recorder: counts from the first packet, which is a keyframe
DIAL_SECONDS = 11  # srt-live-transmit: wall-clock run from before the output listens
READY_TIMEOUT = 20.0

INPUT_CASES: dict[str, dict[str, Any]] = {
    "udp": {"protocol": "udp"},
    "srt": {"protocol": "srt"},
    "srt-passphrase": {"protocol": "srt", "passphrase": PASSPHRASE},
    "rtmp": {"protocol": "rtmp"},
    "rtsp": {"protocol": "rtsp"},
}


@dataclass
class Leg:
    """One output form: its rendered output, and how its receiver gets a recording."""

    form: str
    output: rendered.RenderedOutput
    recording: Path
    recorder: media.ManagedProcess | None = None  # for UDP / SRT-listener receivers
    rx_path: str | None = None  # for pushes into the receiver MediaMTX
    error: str | None = None


def start_router(case: str, tmp_path: Path, group: media.ProcessGroup, audio: str = "aac"):
    """Rendered router for ``case``, the test source publishing to it and the receiver
    server (started while the source warms up); returns (router, receiver, secrets,
    path sample once ready)."""
    spec = INPUT_CASES[case]
    passphrase = spec.get("passphrase")
    secrets: dict[str, dict[str, str]] = {}
    ref = None
    if passphrase:
        ref = ("cam-srt", "passphrase")
        secrets["cam-srt"] = {"passphrase": passphrase}
    inp = rendered.make_input(f"in-{case}", spec["protocol"], passphrase_ref=ref)
    router = rendered.start_input(inp, tmp_path / "router", secrets=secrets, group=group)
    intruder = None
    if passphrase:
        # The passphrase only reaches MediaMTX through the Deployment's env: prove it
        # is in force by a publisher without it being turned away. (Were it let in,
        # it would also still be running below, and the check would fail.)
        intruder = media.start_source("srt", router.ingest_url(), group=group, name="source-no-passphrase")
        time.sleep(0.5)
    media.start_source(spec["protocol"], router.ingest_url(passphrase), group=group, audio=audio)
    rx = media.start_receiver_server(tmp_path / "receiver", group=group)
    sample = router.wait_ready(READY_TIMEOUT)
    if intruder is not None:
        rc = intruder.wait(20)
        assert rc != 0, "router accepted an SRT publisher without the passphrase"
    return router, rx, secrets, sample


def destination_url(form: str, rx: media.ReceiverServer, path: str) -> tuple[str, int | None]:
    """(url, local port for listener/UDP receivers)."""
    m = rx.mediamtx
    if form == "srt-caller":
        return f"srt://{media.LOOPBACK}:{m._port('srtAddress')}?streamid=publish:{path}&pkt_size=1316", None
    if form == "srt-listener":
        port = media.free_udp_port()
        return f"srt://{media.LOOPBACK}:{port}?mode=listener&pkt_size=1316", port
    if form == "rtmp":
        return rx.rtmp_url(path), None
    if form == "rtmps":
        return rx.rtmps_url(path), None
    if form == "udp":
        port = media.free_udp_port()
        return f"udp://{media.LOOPBACK}:{port}?pkt_size=1316", port
    if form == "rtsp":
        return rx.rtsp_url(path), None
    raise ValueError(form)


def run_outputs(
    case: str,
    forms: tuple[str, ...],
    tmp_path: Path,
    group: media.ProcessGroup,
    router: rendered.RenderedInput,
    rx: media.ReceiverServer,
    secrets: dict[str, dict[str, str]],
    sample: media.PathSample,
    expect_audio: dict[str, str] | None = None,
) -> dict[str, Leg]:
    """Start one rendered output per form plus its receiver, record, probe; return the
    legs with ``error`` set on those that failed."""
    input_audio = rendered.audio_tracks(sample)
    legs: dict[str, Leg] = {}
    secrets = dict(secrets)
    for form in forms:
        path = f"live/{case}-{form}" if form in ("rtmp", "rtmps") else f"{case}-{form}"
        url, port = destination_url(form, rx, path)
        name = f"out-{form}"
        if form == "rtmp":
            # the stream key comes from a Secret: $(STREAMDIST_DESTINATION) in the Pod
            secrets["rtmp-key"] = {"url": url}
            out = rendered.make_output(name, router.name, secret_ref=("rtmp-key", "url"))
        elif form == "rtmps":
            # the receiver's certificate is its own CA: given as spec.tls.caFrom, verified
            out = rendered.make_output(name, router.name, url=url, ca_config_map=("rx-ca", "ca.crt"))
        else:
            out = rendered.make_output(name, router.name, url=url)
        leg = Leg(
            form,
            rendered.prepare_output(
                out, router_rtsp_port=router.rtsp_port, secrets=secrets, input_audio=input_audio, group=group,
                config_maps={"rx-ca": {"ca.crt": rx.cert.read_text()}},
            ),
            tmp_path / f"{form}.ts",
        )
        if form == "udp":
            assert port is not None
            leg.recorder = media.start_udp_recorder(port, leg.recording, seconds=PUSH_SECONDS, group=group)
        elif form == "srt-listener":
            assert port is not None
            leg.recorder = media.start_srt_caller_recorder(port, leg.recording, seconds=DIAL_SECONDS, group=group)
        else:
            leg.rx_path = path
        legs[form] = leg
    time.sleep(0.3)  # the UDP recorder binds before anything is sent
    for leg in legs.values():
        leg.output.start()

    # Read back each push from the receiver as soon as it is there.
    pending = {f: leg for f, leg in legs.items() if leg.rx_path}
    deadline = time.monotonic() + READY_TIMEOUT
    while pending and time.monotonic() < deadline:
        for form, leg in list(pending.items()):
            assert leg.rx_path is not None
            got = rx.mediamtx.path(leg.rx_path)
            if got is not None and got.ready and got.tracks:
                leg.recorder = rx.record(leg.rx_path, leg.recording, seconds=RECORD_SECONDS, group=group)
                del pending[form]
            elif not leg.output.process or not leg.output.process.alive():
                leg.error = f"FFmpeg exited before the receiver had the stream: {leg.output.stderr_line()!r}"
                del pending[form]
        time.sleep(0.2)
    for leg in pending.values():
        leg.error = f"receiver path {leg.rx_path!r} not ready after {READY_TIMEOUT:.0f}s"

    for leg in legs.values():
        if leg.error or leg.recorder is None:
            continue
        try:
            rc = leg.recorder.wait(DIAL_SECONDS + 25)
        except TimeoutError:
            leg.error = "recorder did not finish"
            continue
        if rc != 0:
            leg.error = f"recorder exited {rc}: {leg.recorder.tail(3)}"

    def judge(leg: Leg) -> str | None:
        if leg.error:
            return leg.error
        try:
            probe = media.ffprobe_streams(leg.recording)
            media.assert_h264_aac(probe, min_seconds=5.0, audio_codec=(expect_audio or {}).get(leg.form, "aac"))
        except (AssertionError, Exception) as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        verdicts = dict(zip(legs, pool.map(judge, legs.values())))
    for form, verdict in verdicts.items():
        legs[form].error = verdict
    return legs


def report(legs: dict[str, Leg], case: str, media_report, group: media.ProcessGroup) -> None:
    failed = {}
    for form, leg in legs.items():
        ok = leg.error is None
        detail = ""
        if not ok:
            last = leg.output.stderr_line()
            detail = f"{leg.error} | ffmpeg last error: {last!r} | argv: {leg.output.argv}"
            failed[form] = detail
        media_report.cell(case, form, ok, detail)
    assert not failed, (
        f"input {case}: outputs failed: {sorted(failed)}\n"
        + "\n".join(f"- {f}: {d}" for f, d in failed.items())
        + "\n"
        + group.logs()
    )


@pytest.mark.parametrize("case", list(INPUT_CASES))
def test_input_to_every_output(case, tmp_path, group, media_report):
    router, rx, secrets, sample = start_router(case, tmp_path, group)
    assert sample.tracks == ("H264", "MPEG-4 Audio"), sample
    legs = run_outputs(case, OUTPUT_FORMS, tmp_path, group, router, rx, secrets, sample)
    # the rendered config keeps every unused server off: MediaMTX wrote no files
    assert router.files_written() == [], router.files_written()
    report(legs, case, media_report, group)


def test_mp2_audio_reaches_rtmp_as_aac(tmp_path, group, media_report):
    """Broadcast MPEG-TS often carries MP2: FLV cannot, so the RTMP output transcodes
    audio to AAC (video still copied), while SRT carries the MP2 unchanged."""
    router, rx, secrets, sample = start_router("udp", tmp_path, group, audio="mp2")
    assert sample.tracks == ("H264", "MPEG-1/2 Audio"), sample
    assert rendered.audio_tracks(sample) == ("MPEG-1/2 Audio",)
    legs = run_outputs(
        "udp-mp2",
        ("rtmp", "srt-caller"),
        tmp_path,
        group,
        router,
        rx,
        secrets,
        sample,
        expect_audio={"rtmp": "aac", "srt-caller": "mp2"},
    )
    rtmp_argv = legs["rtmp"].output.argv
    assert rtmp_argv[rtmp_argv.index("-c:a") + 1] == "aac", rtmp_argv
    assert rtmp_argv[rtmp_argv.index("-c:v") + 1] == "copy", rtmp_argv
    srt_argv = legs["srt-caller"].output.argv
    assert srt_argv[srt_argv.index("-c:a") + 1] == "copy", srt_argv
    report(legs, "udp-mp2", media_report, group)


# The cases of Kubernetes' own expansion test (third_party/forked/golang/expansion/
# expand_test.go, v1.34): the argv the tests run is expanded exactly as the kubelet does.
KUBELET_ENV = {"VAR_A": "A", "VAR_B": "B", "VAR_C": "C", "VAR_REF": "$(VAR_A)", "VAR_EMPTY": ""}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(VAR_A)", "A"),
        ("$(VAR_A)-$(VAR_A)", "A-A"),
        ("$(VAR_A)-1", "A-1"),
        ("___$(VAR_B)___", "___B___"),
        ("___$(VAR_C)", "___C"),
        ("$(VAR_A)_$(VAR_B)_$(VAR_C)", "A_B_C"),
        ("$$(VAR_B)_$(VAR_A)", "$(VAR_B)_A"),
        ("$$(VAR_A)_$$(VAR_B)", "$(VAR_A)_$(VAR_B)"),
        ("f000-$$VAR_A", "f000-$VAR_A"),
        ("foo\\$(VAR_C)bar", "foo\\Cbar"),
        ("foo\\\\$(VAR_C)bar", "foo\\\\Cbar"),
        ("foo\\\\\\\\$(VAR_A)bar", "foo\\\\\\\\Abar"),
        ("$(VAR_A$(VAR_B))", "$(VAR_A$(VAR_B))"),
        ("$(VAR_A$(VAR_B)", "$(VAR_A$(VAR_B)"),
        ("$(VAR_REF)", "$(VAR_A)"),
        ("%%$(VAR_REF)--$(VAR_REF)%%", "%%$(VAR_A)--$(VAR_A)%%"),
        ("foo$(VAR_EMPTY)bar", "foobar"),
        ("foo$(VAR_Awhoops!", "foo$(VAR_Awhoops!"),
        ("f00__(VAR_A)__", "f00__(VAR_A)__"),
        ("$?_boo_$!", "$?_boo_$!"),
        ("$VAR_A", "$VAR_A"),
        ("$(VAR_DNE)", "$(VAR_DNE)"),
        ("$$$$$$(BIG_MONEY)", "$$$(BIG_MONEY)"),
        ("$$$$$$(VAR_A)", "$$$(VAR_A)"),
        ("$$$$$$$(GOOD_ODDS)", "$$$$(GOOD_ODDS)"),
        ("$$$$$$$(VAR_A)", "$$$A"),
        ("$VAR_A)", "$VAR_A)"),
        ("${VAR_A}", "${VAR_A}"),
        ("$(VAR_B)_______$(A", "B_______$(A"),
        ("$(VAR_C)_______$(", "C_______$("),
        ("$(VAR_A)foobarzab$", "Afoobarzab$"),
        ("foo-\\$(VAR_A", "foo-\\$(VAR_A"),
        ("--$($($($($--", "--$($($($($--"),
        ("$($($($($--foo$(", "$($($($($--foo$("),
        ("foo0--$($($($(", "foo0--$($($($("),
        ("$(foo$$var)", "$(foo$$var)"),
        ("\n", "\n"),
        ("$£FOO", "$£FOO"),
        ("prefix-$€-suffix", "prefix-$€-suffix"),
        ("$中文", "$中文"),
    ],
)
def test_args_expand_as_the_kubelet_does(text, expected):
    assert rendered.k8s_expand(text, KUBELET_ENV) == expected
