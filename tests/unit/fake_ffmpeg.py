#!/usr/bin/env python3
"""A stand-in for ffmpeg and ffprobe in the switch's loop test (test_switch.py): only
the parts of their behaviour the loop depends on, decided by the argv the switch gives.

* reader (``-i rtsp://.../<path> ... pipe:1``): MPEG-TS of synthetic frames at 25 fps
  (keyframe every 10 frames, AAC-like audio), nothing while ``<dir>/silent-<path>``
  exists;
* publisher (``-i pipe:0``): stdin appended to ``<dir>/published.ts``;
* slate encoder (``-f lavfi``): a one-second clip on stdout, then exit 0;
* ffprobe: a fixed probe of 640x360@25 H.264 with 48 kHz stereo AAC.

Every start is recorded in ``<dir>/calls`` (pid and role)."""

import json
import os
import sys
import time
from pathlib import Path

from switchlib import ts  # the test's PYTHONPATH: images/ffmpeg

DIR = Path(os.environ["FAKE_DIR"])
ADTS = bytes([0xFF, 0xF1, 0x4C, 0x80, 0x01, 0x5F, 0xFC]) + b"\x21\x10\x04"
IDR = b"\x00\x00\x00\x01\x67\x42\x00\x1e\x00\x00\x00\x01\x68\xce\x00\x00\x01\x65\x88\x84"
P = b"\x00\x00\x00\x01\x41\x9a\x02"
VIDEO = ts.Track("video", "h264", 0x1B, 0xE0, b"")
AUDIO = ts.Track("audio", "aac", 0x0F, 0xC0, b"")


def frames(start: int, n: int):
    for i in range(start, start + n):
        yield ts.Frame("video", 90_000 + i * 3600, 90_000 + i * 3600, IDR if i % 10 == 0 else P, i % 10 == 0, 0.0)
        yield ts.Frame("audio", 90_000 + i * 3600, 90_000 + i * 3600, ADTS, True, 0.0)


def record(role: str) -> None:
    with open(DIR / "calls", "a") as f:
        f.write(f"{os.getpid()} {role}\n")


def reader(path: str) -> None:
    muxer, out, i = ts.Muxer(VIDEO, AUDIO), sys.stdout.buffer, 0
    t0 = time.monotonic()
    while True:
        if (DIR / f"silent-{path}").exists():
            time.sleep(0.02)
            continue
        out.write(b"".join(muxer.frame(f, time.monotonic()) for f in frames(i, 1)))
        out.flush()
        i += 1
        time.sleep(max(0.0, t0 + i * 0.04 - time.monotonic()))


def main(argv: list[str]) -> None:
    if "-show_streams" in argv:
        record("probe")
        sys.stdin.buffer.read()
        print(json.dumps({"streams": [
            {"codec_type": "video", "codec_name": "h264", "width": 640, "height": 360, "pix_fmt": "yuv420p",
             "avg_frame_rate": "25/1", "profile": "Constrained Baseline", "level": 30},
            {"codec_type": "audio", "codec_name": "aac", "sample_rate": "48000", "channels": 2}]}))  # fmt: skip
        return
    source = argv[argv.index("-i") + 1] if "-i" in argv else ""
    if "lavfi" in argv:
        record("slate")
        muxer = ts.Muxer(VIDEO, AUDIO)
        sys.stdout.buffer.write(b"".join(muxer.frame(f, 0.0) for f in frames(0, 25)))
    elif source == "pipe:0":
        record("publisher")
        with open(DIR / "published.ts", "ab") as f:
            while chunk := sys.stdin.buffer.read1(65536):
                f.write(chunk)
                f.flush()
    elif source.startswith("rtsp://"):
        path = source.rsplit("/", 1)[1]
        record(f"reader {path}")
        reader(path)


if __name__ == "__main__":
    main(sys.argv)
