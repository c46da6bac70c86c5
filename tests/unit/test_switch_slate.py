"""The slate's format and encoder command (images/ffmpeg/switchlib/slate.py) and the
switch's state endpoint (switchlib/net.py)."""

import base64
import json
from pathlib import Path

import pytest
from switchlib_import import net, slate, ts

PROBE = {"streams": [
    {"codec_type": "video", "codec_name": "h264", "profile": "High", "level": 31, "width": 1280, "height": 720,
     "pix_fmt": "yuv420p", "avg_frame_rate": "30000/1001", "r_frame_rate": "60000/1001"},
    {"codec_type": "audio", "codec_name": "mp2", "sample_rate": "44100", "channels": 1, "channel_layout": "mono"},
]}  # fmt: skip


def test_format_from_the_source_probe():
    fmt = slate.from_probe(PROBE, slate.Format())
    assert fmt == slate.Format("h264", 1280, 720, "30000/1001", "yuv420p", "High", 31, "mp2", 44100, 1, "mono")
    assert fmt.frames_per_gop == 30
    assert fmt.describe() == "h264 1280x720@30000/1001 yuv420p High, mp2 44100 Hz 1 ch"


@pytest.mark.parametrize(("doc", "expected"), [
    ({"streams": []}, None),
    ({"streams": [{"codec_type": "video", "codec_name": "mpeg2video", "width": 720, "height": 576}]}, None),
    ({"streams": [{"codec_type": "video", "codec_name": "hevc", "width": 640, "height": 360, "avg_frame_rate": "0/0",
                   "r_frame_rate": "25/1"}]},
     slate.Format("hevc", 640, 360, "25", "yuv420p", None, None, None, 48000, 2, None)),
    ({"streams": [{"codec_type": "video", "codec_name": "h264", "width": 640, "height": 360},
                  {"codec_type": "audio", "codec_name": "dts", "sample_rate": "48000", "channels": 6}]},
     slate.Format("h264", 640, 360, "25", "yuv420p", None, None, None, 48000, 6, None)),
])  # fmt: skip
def test_format_from_probe_edges(doc, expected):
    assert slate.from_probe(doc, slate.Format()) == expected
    assert slate.parse_probe(json.dumps(doc).encode(), slate.Format()) == expected
    assert slate.parse_probe(b"not json", slate.Format()) is None


def _arg(argv, flag):
    return argv[argv.index(flag) + 1]


def test_encoder_matches_the_source_format(tmp_path):
    fmt = slate.from_probe(PROBE, slate.Format())
    text = tmp_path / "text.txt"
    text.write_text("We'll be right back: 100%")
    image = tmp_path / "image"
    image.write_bytes(b"\x89PNG fake")
    argv = slate.encode_argv("ffmpeg", fmt, slate.Look("#102030", text, image, font=__file__))
    assert "color=c=#102030:s=1280x720:r=30000/1001" in argv
    assert _arg(argv, "-c:v") == "libx264" and _arg(argv, "-profile:v") == "high" and _arg(argv, "-level:v") == "3.1"
    assert _arg(argv, "-g") == "30" and _arg(argv, "-bf") == "0" and _arg(argv, "-pix_fmt") == "yuv420p"
    assert _arg(argv, "-c:a") == "mp2" and _arg(argv, "-ar") == "44100" and _arg(argv, "-ac") == "1"
    assert "anullsrc=channel_layout=mono:sample_rate=44100" in argv
    graph = _arg(argv, "-filter_complex")
    assert "overlay" in graph and f"textfile={text}" in graph and "expansion=none" in graph
    assert "We'll" not in " ".join(argv)  # the text goes through a file, never through filter-graph escaping
    assert argv[-1] == "pipe:1" and _arg(argv, "-pes_payload_size") == "0"


def test_encoder_hevc_and_no_audio_no_image_no_font(tmp_path):
    fmt = slate.Format("hevc", 3840, 2160, "50", "yuv420p10le", "Main 10", 153, None)
    argv = slate.encode_argv("ffmpeg", fmt, slate.Look(text_file=tmp_path / "t", image=tmp_path / "missing",
                                                       font=str(tmp_path / "nofont")))  # fmt: skip
    assert _arg(argv, "-c:v") == "libx265" and _arg(argv, "-profile:v") == "main10"
    assert "level-idc=5.1" in _arg(argv, "-x265-params") and "-c:a" not in argv
    assert _arg(argv, "-filter_complex") == "[0:v]format=yuv420p10le[v]"


def test_clip_loops_from_its_keyframe():
    frames = [ts.Frame("video", 100 + i * 3600, 100 + i * 3600, b"x", i == 1, 0.0) for i in range(5)]
    frames += [ts.Frame("audio", i * 1920, i * 1920, b"a", True, 0.0) for i in range(3)]
    clip = slate.clip(frames, slate.Format(fps="25"))
    assert [f.key for f in clip.video] == [True, False, False, False] and len(clip.audio) == 3
    assert clip.video_step == 3600 and clip.audio_step == 1920
    assert slate.clip(frames[:1], slate.Format()) is None
    assert slate.clip(frames, slate.Format(audio="aac", sample_rate=44100)).audio_step == pytest.approx(2089.796, abs=1e-3)


# ------------------------------------------------------------------ state endpoint

CRED = net.Credential("streamdist", net.hashed("s3cret-derived"))


def _basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(("header", "ok"), [
    (_basic("streamdist", "s3cret-derived"), True),
    (_basic("streamdist", "wrong"), False),
    (_basic("reader", "s3cret-derived"), False),
    ("Basic !!!", False), ("Bearer x", False), (None, False),
])
def test_credential_checked_against_the_hash(header, ok):
    assert CRED.allows(header) is ok


def test_credential_file(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"user": "streamdist", "pass": CRED.hashed_password}))
    assert net.Credential.load(path) == CRED
    for bad in ("{}", '{"user": "u", "pass": "plain"}', "nope"):
        path.write_text(bad)
        assert net.Credential.load(path) is None
    assert net.Credential.load(Path("/nonexistent")) is None


class _Server(net.StateServer):
    def __init__(self, credential):  # the request handling alone, no socket
        self.credential, self.state = credential, lambda: {"onAir": "backup"}


@pytest.mark.parametrize(("request_", "status"), [
    (b"GET /v1/state HTTP/1.0\r\nAuthorization: " + _basic("streamdist", "s3cret-derived").encode() + b"\r\n\r\n", 200),
    (b"GET /v1/state HTTP/1.0\r\n\r\n", 401),
    (b"GET /v1/other HTTP/1.0\r\nAuthorization: " + _basic("streamdist", "s3cret-derived").encode() + b"\r\n\r\n", 404),
    (b"GET /v1/other HTTP/1.0\r\n\r\n", 401),  # no telling what exists without the credential
    (b"POST /v1/state HTTP/1.0\r\n\r\n", 400),
])
def test_state_answers_only_the_operator(request_, status):
    got, body = _Server(CRED).answer(request_)
    assert got == status
    assert (json.loads(body) == {"onAir": "backup"}) is (status == 200)


def test_no_credential_file_means_no_answer():
    request_ = b"GET /v1/state HTTP/1.0\r\nAuthorization: " + _basic("streamdist", "x").encode() + b"\r\n\r\n"
    assert _Server(None).answer(request_)[0] == 401


@pytest.mark.parametrize(("raw", "expected"), [
    (b'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{"items": []}', ({"items": []}, None)),
    (b"HTTP/1.0 401 Unauthorized\r\n\r\n{}", (None, "HTTP 401")),
    (b"HTTP/1.0 200 OK\r\n\r\n{", (None, "invalid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)")),
    (b"HTTP/1.0 200", (None, "incomplete response")),
])  # fmt: skip
def test_api_response_parsing(raw, expected):
    assert net.parse_response(raw) == expected
