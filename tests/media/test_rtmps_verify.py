"""RTMPS verifies the server's certificate: the rendered FFmpeg, pushing to a real
MediaMTX RTMPS receiver whose certificate a test CA signed, is refused against the
system CAs, accepted with the test CA given as spec.tls.caFrom, and accepted with
spec.tls.insecureSkipVerify (which status shows)."""

from __future__ import annotations

import pytest

from streamdist_dev import media, rendered

pytestmark = pytest.mark.media


@pytest.fixture
def receiver(tmp_path, group):
    ca, cert, key = media.make_ca_signed_cert(tmp_path / "tls")
    port = media.free_tcp_port()
    cfg = media.mediamtx_config(api_port=media.free_tcp_port(), rtsp_port=media.free_tcp_port(), rtmps_port=port,
                                tls_cert=(cert, key), paths={"all_others": {}})  # fmt: skip
    return media.start_mediamtx(cfg, tmp_path / "rx", group=group, name="rtmps-rx"), ca


@pytest.mark.parametrize(("case", "tls", "accepted"), [
    ("system CAs only", None, False),
    ("the test CA from spec.tls.caFrom", "ca", True),
    ("insecureSkipVerify", "skip", True),
])
def test_rtmps_verifies_the_servers_certificate(tmp_path, group, media_report, receiver, case, tls, accepted):
    rx, ca = receiver
    router = rendered.start_input(rendered.make_input("cam", "udp"), tmp_path / "router", group=group)
    media.start_source("udp", router.ingest_url(), group=group)
    sample = router.wait_ready()
    out = rendered.make_output("o", "cam", url=rx.rtmps_url("live/o"), insecure_skip_verify=tls == "skip",
                               ca_config_map=("test-ca", "ca.crt") if tls == "ca" else None)
    ffmpeg = rendered.prepare_output(out, router_rtsp_port=router.rtsp_port, group=group,
                                     config_maps={"test-ca": {"ca.crt": ca.read_text()}},
                                     input_audio=rendered.audio_tracks(sample))  # fmt: skip
    verify = ffmpeg.argv[ffmpeg.argv.index("-tls_verify") + 1]
    assert verify == ("0" if tls == "skip" else "1")
    proc = ffmpeg.start()
    if accepted:
        rx.wait_path_ready("live/o", timeout=20)
        assert proc.alive()
    else:
        proc.wait(20)
        record = ffmpeg.exit_record(proc)
        assert record.returncode != 0
        assert "certificate" in proc.log_text().lower() or "Input/output error" in record.reported, record
    media_report.note(f"RTMPS to a receiver signed by a test CA, {case}: {'accepted' if accepted else 'refused'}")
