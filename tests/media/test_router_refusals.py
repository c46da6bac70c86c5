"""Nobody gets in: the real MediaMTX, running the config and env the operator renders,
refuses every client without the credential its role needs, shown with real clients
(curl for the control API and metrics, FFmpeg publishing and reading over RTSP, RTMP
and SRT; curl bound to another loopback address for what only the pod itself may do).

Each attempt is written to the media report as "who tried what: got what" (the
refusal matrix of the closing note).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from pathlib import Path

import pytest

from streamdist import credentials
from streamdist_dev import media, rendered

pytestmark = pytest.mark.media

PASSPHRASE = "trust-passphrase-0123"
PUBLISHER = credentials.Publisher("encoder", "publish-pass-4567")
SECRETS = {"cam-publish": {"credential": f"{PUBLISHER.user}:{PUBLISHER.password}"}, "pp": {"passphrase": PASSPHRASE}}
WRONG = credentials.Publisher("encoder", "not-the-password")
ELSEWHERE = "127.0.0.2"  # a loopback address that is not the pod's own (127.0.0.1)
REFUSED_WITHIN = 8.0


def _router(tmp_path: Path, group: media.ProcessGroup, protocol: str, *, switch: bool = True, **spec: object):
    extra = {"passphrase_ref": ("pp", "passphrase")} if protocol == "srt" else {}
    inp = rendered.make_input("cam", protocol, **extra, **spec)
    router = rendered.prepare_input(inp, tmp_path / "router", secrets=SECRETS, group=group)
    if not switch:
        router.switch_argv = None
    router.start()
    return router


def _curl(url: str, *args: str) -> int:
    """The HTTP/RTSP status curl got (0 when nothing answered)."""
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", *args, url],
                         capture_output=True, text=True, timeout=30)  # fmt: skip
    return int(out.stdout.strip() or 0)


def _auth(pair: tuple[str, str] | None) -> list[str]:
    return ["-u", f"{pair[0]}:{pair[1]}"] if pair else []


def _refused(proc: media.ManagedProcess, router: rendered.RenderedInput, path: str) -> bool:
    """The client failed and the path has no source from it."""
    with contextlib.suppress(Exception):  # still running: judged by the path below
        proc.wait(REFUSED_WITHIN)
    sample = router.mediamtx.path(path) if router.mediamtx else None
    return not (_on_air(sample) and proc.alive())


def _on_air(sample: media.PathSample | None) -> bool:
    """A source really feeds the path: `ready` (MediaMTX's `available`) alone is always
    true with a slate, `online` alone is true for a static UDP source that got nothing."""
    return bool(sample and sample.ready and sample.online)


def _reader(url: str, group: media.ProcessGroup, name: str, seconds: float = 2.0) -> media.ManagedProcess:
    argv = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "warning",
            "-i", url, "-t", str(seconds), "-c", "copy", "-f", "null", "-"]  # fmt: skip
    if url.startswith("rtsp://"):
        argv[argv.index("-i"):argv.index("-i")] = ["-rtsp_transport", "tcp"]
    return group.start(name, argv)


def _relay(port: int, source: str, group: media.ProcessGroup, name: str) -> int:
    """A loopback port whose connections socat relays to ``port`` from the address
    ``source`` (FFmpeg cannot choose its TCP source address): the router sees them come
    from ``source``."""
    relay = media.free_tcp_port()
    group.start(f"relay-{name}", ["socat", f"TCP-LISTEN:{relay},bind={media.LOOPBACK},reuseaddr,fork",
                                  f"TCP:{media.LOOPBACK}:{port},bind={source}"])  # fmt: skip
    media.wait_tcp_listening(relay)
    return relay


def _read_result(proc: media.ManagedProcess) -> str:
    rc = proc.wait(20)
    return "read" if rc == 0 else f"refused (ffmpeg exit {rc})"


# --- control API and metrics ---------------------------------------------------------


def test_control_api_and_metrics_answer_only_the_operator(tmp_path, group, media_report):
    router = _router(tmp_path, group, "srt")
    creds = router.plan.credentials
    api, metrics = f"http://{media.LOOPBACK}:{router.api_port}", f"http://{media.LOOPBACK}:{router.metrics_port}"
    pwned = tmp_path / "pwned"
    evil = json.dumps({"source": "publisher", "runOnInit": f"touch {pwned}"})
    clients = {"nobody": None, "an output pod (read credential)": (creds.read_user, creds.read_password),
               "the encoder (publish credential)": (PUBLISHER.user, PUBLISHER.password),
               "a guess": ("streamdist", "streamdist")}  # fmt: skip
    for who, pair in clients.items():
        got = {
            "read the config (GET /v3/config/pathdefaults/get)": _curl(f"{api}/v3/config/pathdefaults/get", *_auth(pair)),
            "add a path with runOnInit": _curl(f"{api}/v3/config/paths/add/evil", "-X", "POST", "-H",
                                               "Content-Type: application/json", "-d", evil, *_auth(pair)),
            "kick sessions (list RTSP sessions)": _curl(f"{api}/v3/rtspsessions/list", *_auth(pair)),
            "scrape metrics": _curl(f"{metrics}/metrics", *_auth(pair)),
        }  # fmt: skip
        for what, status in got.items():
            media_report.note(f"router API: {who} tried to {what}: HTTP {status}")
        assert set(got.values()) == {401}, (who, got)
    operator = (creds.api_user, creds.api_password)
    assert _curl(f"{api}/v3/paths/list", *_auth(operator)) == 200
    assert _curl(f"{metrics}/metrics", *_auth(operator)) == 200
    assert router.mediamtx is not None and router.mediamtx.api().path("cam") is not None
    time.sleep(1.0)
    assert not pwned.exists(), "a command was injected"
    assert _curl(f"{api}/v3/config/paths/get/evil", *_auth(operator)) == 404, "the path was added"


def test_backup_switch_state_answers_only_the_operator(tmp_path, group, media_report):
    """The switch's GET /v1/state (what is on air, every switch): the operator's control-API
    credential, checked against the hash in the router's ConfigMap; nobody else."""
    router = _router(tmp_path, group, "srt", backup={"protocol": "udp", "port": media.free_udp_port()})
    creds = router.plan.credentials
    url = f"http://{media.LOOPBACK}:{router.state_port}/v1/state"
    media.wait_for(lambda: _curl(url) == 401, 10, what="the switch's state endpoint")
    clients = {"nobody": None, "an output pod (read credential)": (creds.read_user, creds.read_password),
               "the encoder (publish credential)": (PUBLISHER.user, PUBLISHER.password),
               "a guess": ("streamdist", "streamdist"),
               "the operator's user with the config's hash as password": (creds.api_user,
                                                                           credentials.hashed(creds.api_password))}  # fmt: skip
    got = {who: _curl(url, *_auth(pair)) for who, pair in clients.items()}
    for who, status in got.items():
        media_report.note(f"backup switch state: {who}: HTTP {status}")
    assert set(got.values()) == {401}, got
    assert _curl(url, *_auth((creds.api_user, creds.api_password))) == 200


# --- readers ---------------------------------------------------------------------------


def test_rtsp_read_needs_the_read_credential(tmp_path, group, media_report):
    """Readers come from elsewhere (a relay from 127.0.0.2), as output pods do; only the
    pod itself (the confidence monitor, on by default) reads without a credential."""
    router = _router(tmp_path, group, "udp")
    media.start_source("udp", router.ingest_url(), group=group)
    router.wait_ready()
    creds = router.plan.credentials
    own = f":{router.rtsp_port}/"
    elsewhere = f":{_relay(router.rtsp_port, ELSEWHERE, group, 'reads')}/"
    bare = router.read_url(with_credential=False).replace(own, elsewhere)
    attempts = {
        "without a credential": bare,
        "with the publisher's": bare.replace("rtsp://", f"rtsp://{PUBLISHER.user}:{PUBLISHER.password}@"),
        "with a wrong password": bare.replace("rtsp://", f"rtsp://{creds.read_user}:x1234567@"),
        "with the read credential": router.read_url().replace(own, elsewhere),
        "without a credential, from the pod itself (the monitor)": router.read_url(with_credential=False),
    }  # fmt: skip
    got = {who: _read_result(_reader(url, group, f"reader-{i}")) for i, (who, url) in enumerate(attempts.items())}
    for who, result in got.items():
        media_report.note(f"RTSP read of the readers' path {who}: {result}")
    assert got.pop("with the read credential") == "read"
    assert got.pop("without a credential, from the pod itself (the monitor)") == "read"
    assert all(r.startswith("refused") for r in got.values()), got


def test_rendered_output_reads_with_its_credential_and_keeps_it_out_of_its_log(tmp_path, group):
    router = _router(tmp_path, group, "udp")
    media.start_source("udp", router.ingest_url(), group=group)
    router.wait_ready()
    out = rendered.make_output("o", "cam", url=f"udp://{media.LOOPBACK}:{media.free_udp_port()}?pkt_size=1316")
    ffmpeg = rendered.prepare_output(out, router_rtsp_port=router.rtsp_port, group=group)
    password = router.plan.credentials.read_password
    assert password in " ".join(ffmpeg.argv), "the kubelet expands the read credential into FFmpeg's input URL"
    assert password not in json.dumps(ffmpeg.docs), "the rendered pod holds no credential"
    proc = ffmpeg.start()
    media.wait_for(lambda: (s := router.mediamtx.path("cam")) and s.reader_count == 1, 20, what="the output reading")
    router.stop()  # FFmpeg now fails on its input and names the URL in its log
    proc.wait(20)
    assert password not in proc.log_text(), "the entrypoint masks the read password in FFmpeg's log"


def test_exposed_ingests_refuse_reads_without_the_read_credential(tmp_path, group, media_report):
    srt = _router(tmp_path / "srt", group, "srt")
    media.start_source("srt", srt.ingest_url(PASSPHRASE), group=group, name="srt-source")
    srt.wait_ready()
    creds = srt.plan.credentials
    base = f"srt://{media.LOOPBACK}:{srt.ingest_port}?mode=caller&pkt_size=1316&streamid="
    srt_attempts = {
        "read:cam (no credential)": base + "read:cam",
        "read:cam with the stream's publish passphrase": base + f"read:cam&passphrase={PASSPHRASE}",
        "read credential, no read passphrase": base + f"read:cam:{creds.read_user}:{creds.read_password}",
        "read credential and read passphrase": base + f"read:cam:{creds.read_user}:{creds.read_password}"
                                                      f"&passphrase={creds.srt_read_passphrase}",
    }  # fmt: skip
    got = {f"SRT {who}": _read_result(_reader(u, group, f"srt-{i}")) for i, (who, u) in enumerate(srt_attempts.items())}
    rtmp = _router(tmp_path / "rtmp", group, "rtmp")
    media.start_source("rtmp", rtmp.ingest_url(), group=group, name="rtmp-source")
    rtmp.wait_ready()
    # from elsewhere (a relay from 127.0.0.2): the pod itself may read without a credential
    play = f"rtmp://{media.LOOPBACK}:{_relay(rtmp.ingest_port, ELSEWHERE, group, 'rtmp-play')}/cam"
    read = rtmp.plan.credentials
    got["RTMP play without a credential"] = _read_result(_reader(play, group, "rtmp-0"))
    got["RTMP play with the read credential"] = _read_result(
        _reader(f"{play}?user={read.read_user}&pass={read.read_password}", group, "rtmp-1"))
    for who, result in got.items():
        media_report.note(f"read on an exposed ingest, {who}: {result}")
    assert got.pop("SRT read credential and read passphrase") == "read"
    assert got.pop("RTMP play with the read credential") == "read"
    assert all(r.startswith("refused") for r in got.values()), got


# --- publishers ----------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["rtmp", "rtsp", "srt"])
def test_only_the_credentialed_publisher_gets_in_and_is_never_kicked(tmp_path, group, media_report, protocol):
    router = _router(tmp_path, group, protocol)
    passphrase = PASSPHRASE if protocol == "srt" else None
    attempts = {"without a credential": router.ingest_url(passphrase).replace(f"{PUBLISHER.user}:{PUBLISHER.password}",
                                                                              "").replace("user=encoder&pass=publish-pass-4567", ""),
                "with a wrong password": router.ingest_url(passphrase, publisher=WRONG)}  # fmt: skip
    if protocol == "srt":
        attempts["with the credential but no passphrase"] = router.ingest_url()
    for i, (who, url) in enumerate(attempts.items()):
        proc = media.start_source(protocol, url, group=group, name=f"intruder-{i}")
        refused = _refused(proc, router, "cam")
        media_report.note(f"{protocol} publish {who}: {'refused' if refused else 'ACCEPTED'}")
        assert refused, (who, proc.tail())
        proc.stop()
    first = media.start_source(protocol, router.ingest_url(passphrase), group=group, name="encoder")
    on_air = router.wait_ready()
    second = media.start_source(protocol, router.ingest_url(passphrase), group=group, name="second-encoder")
    second.wait(REFUSED_WITHIN) if protocol != "srt" else time.sleep(REFUSED_WITHIN)
    now = router.mediamtx.path("cam")
    kept = first.alive() and now is not None and now.source_id == on_air.source_id
    media_report.note(f"{protocol} publish with the credential while another publishes: "
                      f"{'refused, the first kept the path' if kept else 'KICKED THE FIRST'}")  # fmt: skip
    assert kept, (first.tail(), second.tail())


def test_rtsp_publish_to_an_srt_input_needs_the_credential(tmp_path, group, media_report):
    router = _router(tmp_path, group, "srt")
    url = f"rtsp://{media.LOOPBACK}:{router.rtsp_port}/cam"
    proc = media.start_source("rtsp", url, group=group, name="rtsp-intruder")
    refused = _refused(proc, router, "cam")
    media_report.note(f"RTSP publish to an SRT input's path without its credential: {'refused' if refused else 'ACCEPTED'}")
    assert refused, proc.tail()


def _rtsp_publish(router: rendered.RenderedInput, path: str, source: str, pair: tuple[str, str] | None,
                  group: media.ProcessGroup, name: str) -> bool:
    """Whether FFmpeg may publish over RTSP to `path` from the address `source`.

    FFmpeg cannot choose its TCP source address: socat relays its connection from
    `source`, so MediaMTX sees that address as the publisher's."""
    relay = _relay(router.rtsp_port, source, group, name)
    userinfo = f"{pair[0]}:{pair[1]}@" if pair else ""
    proc = media.start_source("rtsp", f"rtsp://{userinfo}{media.LOOPBACK}:{relay}/{path}", group=group, name=name)
    accepted = not _refused(proc, router, path)
    proc.stop()
    media.wait_for(lambda: not _on_air(router.mediamtx.path(path)), 15, what=f"{path} free again")
    return accepted


def test_readers_path_of_a_backup_input_takes_a_publisher_from_the_pod_only(tmp_path, group, media_report):
    router = _router(tmp_path, group, "udp", switch=False, backup={"protocol": "rtsp", "port": media.free_tcp_port()})
    encoder = (PUBLISHER.user, PUBLISHER.password)
    got = {
        "the encoder's credential, from elsewhere, to the readers' path": ("cam", ELSEWHERE, encoder),
        "no credential, from elsewhere, to the readers' path": ("cam", ELSEWHERE, None),
        "the encoder's credential, from elsewhere, to the backup path": ("cam-backup", ELSEWHERE, encoder),
        "no credential, from the pod itself (the switch), to the readers' path": ("cam", media.LOOPBACK, None),
    }  # fmt: skip
    result = {who: _rtsp_publish(router, *args, group, f"p{i}") for i, (who, args) in enumerate(got.items())}
    for who, accepted in result.items():
        media_report.note(f"RTSP publish with {who}: {'accepted' if accepted else 'refused'}")
    assert list(result.values()) == [False, False, True, True], result


def test_allowed_sources_enforced_by_mediamtx(tmp_path, group, media_report):
    rtsp = _router(tmp_path / "rtsp", group, "rtsp", allowedSources=["127.0.0.1/32"])
    encoder = (PUBLISHER.user, PUBLISHER.password)
    got = {"RTSP publisher from an allowed source": _rtsp_publish(rtsp, "cam", media.LOOPBACK, encoder, group, "a"),
           "RTSP publisher from elsewhere": _rtsp_publish(rtsp, "cam", ELSEWHERE, encoder, group, "b")}  # fmt: skip
    udp = _router(tmp_path / "udp", group, "udp", allowedSources=["127.0.0.1/32"])
    stray = media.start_source("udp", f"{udp.ingest_url()}?localaddr={ELSEWHERE}", group=group, name="udp-stray")
    got["UDP from elsewhere"] = not _refused(stray, udp, "cam")
    stray.stop()
    media.start_source("udp", f"{udp.ingest_url()}?localaddr={media.LOOPBACK}", group=group, name="udp-allowed")
    got["UDP from the allowed source"] = bool(udp.wait_ready())
    for who, accepted in got.items():
        media_report.note(f"allowedSources: {who}: {'accepted' if accepted else 'refused'}")
    assert got == {"RTSP publisher from an allowed source": True, "RTSP publisher from elsewhere": False,
                   "UDP from elsewhere": False, "UDP from the allowed source": True}  # fmt: skip


def test_a_udp_primary_with_an_srt_backup_takes_the_passphrase_on_the_backup_only(tmp_path, group, media_report):
    """MediaMTX refuses srtPublishPassphrase on a UDP-fed path: the rendered router
    starts, and only the SRT backup asks for the passphrase."""
    inp = rendered.make_input("cam", "udp", passphrase_ref=("pp", "passphrase"),
                              backup={"protocol": "srt", "port": media.free_udp_port()})
    router = rendered.prepare_input(inp, tmp_path / "router", secrets=SECRETS, group=group)
    router.switch_argv = None
    router.start()
    without = media.start_source("srt", router.ingest_url(role="backup"), group=group, name="no-passphrase")
    refused = _refused(without, router, "cam-backup")
    without.stop()
    media.start_source("srt", router.ingest_url(PASSPHRASE, role="backup"), group=group, name="with-passphrase")
    accepted = bool(media.wait_for(lambda: _on_air(router.mediamtx.path("cam-backup")), 20, what="backup on air"))
    media_report.note(f"SRT backup of a UDP primary: without the passphrase {'refused' if refused else 'ACCEPTED'}, "
                      f"with it {'accepted' if accepted else 'refused'}")  # fmt: skip
    assert refused and accepted
