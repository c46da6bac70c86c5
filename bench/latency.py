"""6. Added latency: the delay the relay (source -> MediaMTX -> FFmpeg -> destination)
adds, per output protocol, by packet timing on loopback.

One live encoder (FFmpeg: lavfi test pattern, x264 zerolatency, AAC) writes with the
tee muxer to

* MPEG-TS/UDP into a Python tap that stamps each datagram with ``time.monotonic()``
  and forwards it at once to the rendered router's UDP ingest: the departure clock;
* the same frames straight to one receiver per protocol (SRT, RTMP, RTSP): the
  baseline, what the destination would see without the relay.

The router feeds four outputs run with their rendered FFmpeg argv (UDP, SRT caller,
RTMP, RTSP), each to a receiver of its protocol. Every receiver hands MPEG-TS over
UDP to a tap of its own (UDP: the tap is the destination; SRT: srt-live-transmit
listener; RTMP and RTSP: FFmpeg in listen mode), so every arrival is stamped by the
same clock. Frames are matched by a hash of their H.264 slice data, which every hop
copies bit for bit. Per frame: relay = arrival via the relay - departure; baseline =
arrival straight from the encoder - departure; added = relay - baseline.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from typing import Any

from streamdist_dev import media, rendered

from . import mediautil
from .common import Opts, Result, Table, measured, summary

NAME = "latency"
TITLE = "added latency of the relay per output protocol (packet timing on loopback)"
PROTOCOLS = ("udp", "srt", "rtmp", "rtsp")


class UdpTap(threading.Thread):
    """A UDP socket on loopback recording (monotonic time, datagram); optionally
    forwarding each datagram on before anything else is done with it."""

    def __init__(self, name: str, forward_to: int | None = None) -> None:
        super().__init__(daemon=True, name=f"tap-{name}")
        self.port = media.free_udp_port()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind((media.LOOPBACK, self.port))
        self.sock.settimeout(0.2)
        self.forward = (media.LOOPBACK, forward_to) if forward_to else None
        self.out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM) if forward_to else None
        self.packets: list[tuple[float, bytes]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            t = time.monotonic()
            if self.out is not None:
                self.out.sendto(data, self.forward)  # type: ignore[arg-type]
            self.packets.append((t, data))

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=2)
        self.sock.close()
        if self.out is not None:
            self.out.close()


# ------------------------------------------------------------------ MPEG-TS frames


def ts_frames(packets: list[tuple[float, bytes]]) -> list[tuple[float, bytes]]:
    """(arrival time of the datagram carrying its PES start, key) per H.264 frame.

    The key hashes the frame's VCL NAL units (slices): RTP, FLV and MPEG-TS all carry
    them unchanged, while start codes, AUDs and parameter sets may differ per hop.
    """
    pmt_pid: int | None = None
    video_pid: int | None = None
    cur: tuple[float, bytearray] | None = None
    out: list[tuple[float, bytes]] = []
    for t, dg in packets:
        for off in range(0, len(dg) - 187, 188):
            pkt = dg[off : off + 188]
            if pkt[0] != 0x47:
                continue
            pusi = pkt[1] & 0x40
            pid = ((pkt[1] & 0x1F) << 8) | pkt[2]
            afc = (pkt[3] >> 4) & 3
            i = 4
            if afc & 2:
                i += 1 + pkt[4]
            if not afc & 1 or i >= 188:
                continue
            payload = pkt[i:]
            if pid == 0 and pusi:
                pmt_pid = _pat(payload) or pmt_pid
            elif pid == pmt_pid and pusi and video_pid is None:
                video_pid = _pmt_video(payload)
            elif pid == video_pid and video_pid is not None:
                if pusi:
                    if cur is not None:
                        key = _frame_key(bytes(cur[1]))
                        if key:
                            out.append((cur[0], key))
                    cur = (t, bytearray(payload))
                elif cur is not None:
                    cur[1].extend(payload)
    return out


def _section(payload: bytes) -> tuple[bytes, int] | None:
    """A PSI section after its pointer field, and where its entries end (before the CRC)."""
    sec = payload[1 + payload[0] :]
    if len(sec) < 12:
        return None
    return sec, min(len(sec), 3 + (((sec[1] & 0x0F) << 8) | sec[2]) - 4)


def _pat(payload: bytes) -> int | None:
    got = _section(payload)
    if got is None:
        return None
    sec, end = got
    for j in range(8, end, 4):
        if (sec[j] << 8 | sec[j + 1]) != 0:
            return ((sec[j + 2] & 0x1F) << 8) | sec[j + 3]
    return None


def _pmt_video(payload: bytes) -> int | None:
    got = _section(payload)
    if got is None:
        return None
    sec, end = got
    j = 12 + (((sec[10] & 0x0F) << 8) | sec[11])
    while j + 5 <= end:
        stype, epid = sec[j], ((sec[j + 1] & 0x1F) << 8) | sec[j + 2]
        if stype == 0x1B:
            return epid
        j += 5 + (((sec[j + 3] & 0x0F) << 8) | sec[j + 4])
    return None


def _frame_key(pes: bytes) -> bytes | None:
    if len(pes) < 9 or pes[:3] != b"\x00\x00\x01":
        return None
    es = pes[9 + pes[8] :]
    h = hashlib.blake2b(digest_size=12)
    found = False
    for nal in es.split(b"\x00\x00\x01")[1:]:
        nal = nal.rstrip(b"\x00")
        if nal and 1 <= (nal[0] & 0x1F) <= 5:
            h.update(nal)
            found = True
    return h.digest() if found else None


def first_times(frames: list[tuple[float, bytes]]) -> dict[bytes, float]:
    """key -> first arrival; keys seen twice at one place (identical frames) drop out."""
    seen: dict[bytes, float] = {}
    dup: set[bytes] = set()
    for t, k in frames:
        if k in seen:
            dup.add(k)
        else:
            seen[k] = t
    for k in dup:
        seen.pop(k, None)
    return seen


# ---------------------------------------------------------------------- benchmark


def run(opts: Opts) -> Result:
    warm, window = (5.0, 10.0) if opts.quick else (10.0, 40.0)
    res = measured(opts, NAME, TITLE, f"{window:.0f}s window after {warm:.0f}s warm-up",
                   lambda: measure(opts, warm, window))
    figs = res.figures
    t = Table(
        f"milliseconds per frame, {window:.0f} s of 640x360@25 H.264 (x264 zerolatency, 2 s GOP) + AAC",
        ["protocol", "frames", "relay p50", "relay p95", "baseline p50", "baseline p95", "added p50", "added p95"],
    )
    for p in PROTOCOLS:
        f = figs[p]
        t.add(p, f"{f['matched']}/{figs['sent']}", *(x * 1000 for x in (*f["relay"][:2], *f["baseline"][:2],
              *f["added"][:2])))  # fmt: skip
    t.notes.append(
        "relay: encoder's UDP departure -> arrival at the destination's tap through router and output FFmpeg; "
        "baseline: the same frames sent by the encoder straight to a receiver of that protocol; added = relay - "
        "baseline, frame by frame (udp: the baseline is the departure itself, 0)"
    )
    t.notes.append(
        "SRT carries its own receive latency (libsrt default 120 ms, in baseline and relay alike); RTMP and RTSP "
        "receivers are FFmpeg in listen mode remuxing to MPEG-TS/UDP for the tap"
    )
    res.tables.append(t)
    return res


def measure(opts: Opts, warm: float, window: float) -> dict[str, Any]:
    work = opts.dir(NAME)
    taps: dict[str, UdpTap] = {}
    with media.ProcessGroup(logdir=work / "logs") as g:
        try:
            router = rendered.prepare_input(rendered.make_input("cam", "udp"), work / "router", group=g,
                                            settings=mediautil.ROUTER_SETTINGS)
            router.start()
            taps["departure"] = UdpTap("departure", forward_to=router.ingest_port)
            for p in PROTOCOLS:
                taps[f"relay-{p}"] = UdpTap(f"relay-{p}")
                if p != "udp":
                    taps[f"base-{p}"] = UdpTap(f"base-{p}")
            for tap in taps.values():
                tap.start()
            relay_urls = {"udp": f"udp://{media.LOOPBACK}:{taps['relay-udp'].port}?pkt_size=1316"}
            base_urls: dict[str, str] = {}
            for leg in ("relay", "base"):
                urls = relay_urls if leg == "relay" else base_urls
                urls["srt"] = _srt_receiver(g, leg, taps[f"{leg}-srt"].port)
                urls["rtmp"] = _ffmpeg_receiver(g, leg, "rtmp", taps[f"{leg}-rtmp"].port)
                urls["rtsp"] = _ffmpeg_receiver(g, leg, "rtsp", taps[f"{leg}-rtsp"].port)
            time.sleep(0.5)  # srt-live-transmit listening (UDP: nothing to probe)
            slaves = "|".join(
                [
                    f"[f=mpegts:onfail=ignore]udp://{media.LOOPBACK}:{taps['departure'].port}?pkt_size=1316",
                    f"[f=mpegts:onfail=ignore]{base_urls['srt']}",
                    f"[f=flv:onfail=ignore]{base_urls['rtmp']}",
                    f"[f=rtsp:rtsp_transport=tcp:onfail=ignore]{base_urls['rtsp']}",
                ]
            )
            g.start(
                "encoder",
                ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "warning", "-nostats",
                 *media.pattern_args(video_bitrate="1000k"), "-f", "tee", slaves],
            )  # fmt: skip
            sample = router.wait_ready(30)
            audio = rendered.audio_tracks(sample)
            for p in PROTOCOLS:
                out = rendered.make_output(f"out-{p}", router.name, url=relay_urls[p])
                rendered.prepare_output(out, router_rtsp_port=router.rtsp_port, group=g, input_audio=audio).start()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not all(t.packets for t in taps.values()):
                time.sleep(0.2)
            silent = [n for n, t in taps.items() if not t.packets]
            if silent:
                raise RuntimeError(f"no data at {silent}\n{g.logs()[-4000:]}")
            time.sleep(warm)
            t0 = time.monotonic()
            time.sleep(window)
            t1 = time.monotonic()
            time.sleep(1.5)  # the last frames of the window through the slowest path
        finally:
            for tap in taps.values():
                tap.stop()
    dep = first_times(ts_frames(taps["departure"].packets))
    sent = {k: t for k, t in dep.items() if t0 <= t <= t1}
    figs: dict[str, Any] = {"sent": len(sent)}
    for p in PROTOCOLS:
        relay = first_times(ts_frames(taps[f"relay-{p}"].packets))
        base = first_times(ts_frames(taps[f"base-{p}"].packets)) if p != "udp" else dep
        r = [relay[k] - t for k, t in sent.items() if k in relay]
        b = [base[k] - t for k, t in sent.items() if k in base]
        a = [relay[k] - base[k] for k in sent if k in relay and k in base]
        figs[p] = {"matched": len(r), "relay": summary(r), "baseline": summary(b), "added": summary(a)}
    return figs


def _srt_receiver(g: media.ProcessGroup, leg: str, tap_port: int) -> str:
    port = media.free_udp_port()
    g.start(
        f"srt-receiver-{leg}",
        ["srt-live-transmit", "-q", f"srt://{media.LOOPBACK}:{port}?mode=listener", f"udp://{media.LOOPBACK}:{tap_port}"],
    )
    return f"srt://{media.LOOPBACK}:{port}?mode=caller"


def _ffmpeg_receiver(g: media.ProcessGroup, leg: str, proto: str, tap_port: int) -> str:
    port = media.free_tcp_port()
    url = f"rtmp://{media.LOOPBACK}:{port}/live/{leg}" if proto == "rtmp" else f"rtsp://{media.LOOPBACK}:{port}/{leg}"
    listen = ["-listen", "1"] if proto == "rtmp" else ["-rtsp_flags", "listen"]
    g.start(
        f"{proto}-receiver-{leg}",
        ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "warning", *listen, "-i", url,
         "-map", "0", "-c", "copy", "-f", "mpegts", f"udp://{media.LOOPBACK}:{tap_port}?pkt_size=1316"],
    )  # fmt: skip
    # not a probe connection: FFmpeg in listen mode takes one client and would take it
    media.wait_for(lambda: _listening(port), 10, interval=0.05, what=f"{proto} receiver on {port}")
    return url


def _listening(port: int) -> bool:
    """A TCP socket is in LISTEN on ``port`` (per /proc/net/tcp, no connection made)."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False
