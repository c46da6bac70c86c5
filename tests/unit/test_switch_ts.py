"""The switch's MPEG-TS demuxer and muxer (images/ffmpeg/switchlib/ts.py)."""

import pytest
from switchlib_import import ts

IDR = b"\x00\x00\x00\x01\x67\x42\x00\x1e\x00\x00\x00\x01\x68\xce\x00\x00\x01\x65\x88\x84"
P = b"\x00\x00\x00\x01\x09\xf0\x00\x00\x01\x41\x9a\x02"
HEVC_IDR = b"\x00\x00\x00\x01\x40\x01\x0c\x00\x00\x00\x01\x26\x01\xaf"  # VPS, then IDR_W_RADL (19)
HEVC_TRAIL = b"\x00\x00\x00\x01\x02\x01\xd0"
# ADTS: AAC LC, 48 kHz (index 3), stereo, frame of 7 + 3 bytes
ADTS = bytes([0xFF, 0xF1, 0x4C, 0x80, 0x01, 0x5F, 0xFC]) + b"\x21\x10\x04"

VIDEO = ts.Track("video", "h264", 0x1B, 0xE0, b"")
AUDIO = ts.Track("audio", "aac", 0x0F, 0xC0, b"")


def _frames(n=30, big=False):
    out = []
    for i in range(n):
        data = (IDR if i % 10 == 0 else P) + (bytes(range(256)) * 300 if big and i == 0 else b"")
        out.append(ts.Frame("video", 900_000 + i * 3600, 900_000 + i * 3600, data, i % 10 == 0, 0.0))
        out.append(ts.Frame("audio", 900_000 + i * 3600 + 10, 900_000 + i * 3600 + 10, ADTS, True, 0.0))
    return out


def _roundtrip(frames, chunk=1000, **muxer_kw):
    muxer = ts.Muxer(VIDEO, AUDIO, **muxer_kw)
    data = b"".join(muxer.frame(f, i * 0.04) for i, f in enumerate(frames))
    assert len(data) % ts.TS == 0 and all(data[i] == ts.SYNC for i in range(0, len(data), ts.TS))
    demux = ts.Demuxer()
    got = []
    for i in range(0, len(data), chunk):  # bytes come in arbitrary pieces, as from a pipe
        got += demux.feed(data[i : i + chunk], 1.0)
    return demux, got + demux.flush(1.0)


@pytest.mark.parametrize("chunk", [1, 188, 1000, 1 << 20])
def test_mux_then_demux_gives_the_frames_back(chunk):
    frames = _frames()
    demux, got = _roundtrip(frames, chunk)
    assert demux.video.codec == "h264" and demux.audio.codec == "aac"
    assert [(f.kind, f.pts, f.dts, f.data, f.key) for f in got] == [(f.kind, f.pts, f.dts, f.data, f.key) for f in frames]


def test_frames_with_a_pes_length_come_out_at_once_big_ones_at_the_next_pes():
    frames = _frames(3, big=True)  # the first keyframe is over 64 KiB: no PES length
    muxer = ts.Muxer(VIDEO, AUDIO)
    demux = ts.Demuxer()
    first = demux.feed(muxer.frame(frames[0], 0.0), 0.0)
    assert first == []  # its end is only known when its stream's next PES starts
    assert [f.kind for f in demux.feed(muxer.frame(frames[1], 0.0), 0.0)] == ["audio"]
    assert [f.dts for f in demux.feed(muxer.frame(frames[2], 0.0), 0.0)] == [900_000, 903_600]


def test_resyncs_after_garbage_and_keeps_partial_packets():
    muxer = ts.Muxer(VIDEO, None)
    data = b"".join(muxer.frame(f, 0.0) for f in _frames(4) if f.kind == "video")
    demux = ts.Demuxer()
    got = demux.feed(b"\x00junk" + data[:300], 0.0) + demux.feed(data[300:], 0.0) + demux.flush(0.0)
    assert [f.dts for f in got] == [900_000 + i * 3600 for i in range(4)]


def test_timestamps_unwrap_past_33_bits():
    start = ts.WRAP - 2 * 3600
    frames = [ts.Frame("video", start + i * 3600, start + i * 3600, P, False, 0.0) for i in range(5)]
    _, got = _roundtrip(frames)
    assert [f.dts for f in got] == [start + i * 3600 for i in range(5)]  # 8589927392 ... past 2**33


def test_dts_is_written_only_when_it_differs_from_pts():
    frame = ts.Frame("video", 1000, 1000, P, False, 0.0)
    assert ts.pes_packet(VIDEO, frame)[7] == 0x80
    assert ts.pes_packet(VIDEO, ts.Frame("video", 4600, 1000, P, False, 0.0))[7] == 0xC0


@pytest.mark.parametrize(("codec", "data", "key"), [
    ("h264", IDR, True), ("h264", P, False), ("h264", b"\x00\x00\x01\x06\x05\x00\x00\x01\x65", True),
    ("hevc", HEVC_IDR, True), ("hevc", HEVC_TRAIL, False), ("h264", b"", False),
])
def test_keyframes_by_their_first_slice(codec, data, key):
    assert ts.keyframe(codec, data) is key


@pytest.mark.parametrize(("stream_type", "info", "expected"), [
    (0x1B, b"", ("video", "h264")), (0x24, b"", ("video", "hevc")), (0x0F, b"", ("audio", "aac")),
    (0x03, b"", ("audio", "mp2")), (0x81, b"", ("audio", "ac3")), (0x06, b"\x6a\x01\x00", ("audio", "ac3")),
    (0x06, b"\x05\x04Opus", ("audio", "opus")), (0x06, b"\x59\x00", None), (0x15, b"", None),
])
def test_classify(stream_type, info, expected):
    assert ts.classify(stream_type, info) == expected


def test_only_the_first_video_and_audio_tracks_are_kept():
    muxer = ts.Muxer(VIDEO, AUDIO)
    section = muxer.psi()
    demux = ts.Demuxer()
    demux.feed(section, 0.0)
    assert set(demux.tracks) == {ts.VIDEO_PID, ts.AUDIO_PID} and demux.program_version == 1
    demux.feed(section, 0.0)
    assert demux.program_version == 1  # the same program again is no change


def test_crc_of_psi_sections():
    assert ts.crc32_mpeg(b"123456789") == 0x0376E6E7  # the CRC-32/MPEG-2 check value


def test_adts_frames_of_one_pes_come_out_one_each_1024_samples_apart():
    frame = ts.Frame("audio", 90_000, 90_000, ADTS * 3, True, 0.0)
    split = ts.split_adts(frame)
    assert [f.dts for f in split] == [90_000, 90_000 + 1920, 90_000 + 3840] and all(f.data == ADTS for f in split)
    assert ts.split_adts(ts.Frame("audio", 0, 0, ADTS + b"\x00", True, 0.0)) == [ts.Frame("audio", 0, 0, ADTS + b"\x00", True, 0.0)]


def test_aac_config_travels_in_the_pmt():
    assert ts.adts_config(ADTS) == bytes([0x11, 0x90])  # LC (2), 48 kHz (3), 2 channels
    assert ts.adts_config(b"\x00" * 7) is None
    muxer = ts.Muxer(VIDEO, AUDIO, aac_config=ts.adts_config(ADTS))
    assert b"\x1d" in muxer.psi() and muxer.tracks["audio"].descriptors.endswith(ts.sl_descriptor(ts.AUDIO_PID))
    demux, got = _roundtrip(_frames(2), aac_config=ts.adts_config(ADTS))
    assert len(got) == 4 and demux.audio.codec == "aac"
