"""MPEG-TS as the switch handles it: a demuxer turning an FFmpeg reader's output into
frames, and a muxer writing frames of one program back for the publisher.

A *frame* is one PES packet of one elementary stream: its timestamps (90 kHz,
unwrapped past the 33-bit wrap), whether a decoder can start at it, and its bytes.
Only the first video and the first audio stream of the program are kept: the switch
splices those two (the readers ask FFmpeg for no more either).

Why PES length matters: a demuxer can hand a PES on only when it knows it is complete.
With a length in its header that is at once; without one (FFmpeg's default for video)
only when the stream's next PES starts, one frame later. The readers are asked for
lengths (``-omit_video_pes_length 0``) and the muxer writes them wherever they fit.
"""

from __future__ import annotations

from dataclasses import dataclass

TS = 188
SYNC = 0x47
WRAP = 1 << 33
HALF_WRAP = 1 << 32
PAT_PID, PMT_PID, VIDEO_PID, AUDIO_PID = 0x0000, 0x1000, 0x0100, 0x0101
PROGRAM = 1

VIDEO_TYPES = {0x1B: "h264", 0x24: "hevc"}
AUDIO_TYPES = {0x0F: "aac", 0x11: "aac_latm", 0x03: "mp2", 0x04: "mp2", 0x81: "ac3", 0x87: "eac3"}
# Private data (0x06) carries these when a descriptor says so: AC-3, E-AC-3, Opus.
PRIVATE_AUDIO_TAGS = {0x6A: "ac3", 0x7A: "eac3"}
REGISTRATIONS = {b"Opus": "opus", b"AC-3": "ac3", b"EAC3": "eac3"}


@dataclass(frozen=True)
class Track:
    """One elementary stream of a program, as its PMT entry and PES headers describe it."""

    kind: str  # video | audio
    codec: str
    stream_type: int
    stream_id: int  # the PES stream_id (0xE0 video, 0xC0 MPEG audio, 0xBD private)
    descriptors: bytes  # the ES_info loop of the PMT entry, copied to the output


@dataclass
class Frame:
    """One PES of a track: 90 kHz timestamps, keyframe flag, payload, arrival time."""

    kind: str
    pts: int
    dts: int
    data: bytes
    key: bool
    arrived: float

    def shifted(self, offset: int) -> Frame:
        """The same frame with both timestamps moved by ``offset``."""
        return Frame(self.kind, self.pts + offset, self.dts + offset, self.data, self.key, self.arrived)


# ------------------------------------------------------------------------ demuxer


def _descriptors(info: bytes) -> dict[int, bytes]:
    """tag -> body of an ES_info loop (the first of each tag)."""
    found: dict[int, bytes] = {}
    i = 0
    while i + 2 <= len(info):
        tag, length = info[i], info[i + 1]
        found.setdefault(tag, info[i + 2 : i + 2 + length])
        i += 2 + length
    return found


def classify(stream_type: int, info: bytes) -> tuple[str, str] | None:
    """(kind, codec) of a PMT entry, or None for a stream the switch does not carry."""
    if stream_type in VIDEO_TYPES:
        return "video", VIDEO_TYPES[stream_type]
    if stream_type in AUDIO_TYPES:
        return "audio", AUDIO_TYPES[stream_type]
    if stream_type == 0x06:
        desc = _descriptors(info)
        for tag, codec in PRIVATE_AUDIO_TAGS.items():
            if tag in desc:
                return "audio", codec
        if 0x05 in desc and desc[0x05][:4] in REGISTRATIONS:
            return "audio", REGISTRATIONS[desc[0x05][:4]]
    return None


def keyframe(codec: str, data: bytes) -> bool:
    """Whether a video access unit can start a decode: an IDR (H.264) or an IRAP
    picture (HEVC), judged by its first slice NAL unit."""
    i = data.find(b"\x00\x00\x01")
    while 0 <= i < len(data) - 3:
        header = data[i + 3]
        if codec == "h264":
            nal = header & 0x1F
            if 1 <= nal <= 5:
                return nal == 5
        else:
            nal = (header >> 1) & 0x3F
            if nal <= 31:
                return 16 <= nal <= 23
        i = data.find(b"\x00\x00\x01", i + 3)
    return False


def _timestamp(b: bytes) -> int:
    """A 33-bit PTS/DTS from its 5 bytes with marker bits."""
    return ((b[0] >> 1) & 0x07) << 30 | b[1] << 22 | (b[2] >> 1) << 15 | b[3] << 7 | b[4] >> 1


class _Unwrap:
    """Carries 33-bit timestamps on past the wrap (every 26.5 hours)."""

    def __init__(self) -> None:
        self.last: int | None = None
        self.base = 0

    def __call__(self, raw: int) -> int:
        if self.last is not None:
            if raw < self.last - HALF_WRAP:
                self.base += WRAP
            elif raw > self.last + HALF_WRAP:
                self.base -= WRAP
        self.last = raw
        return raw + self.base


@dataclass
class _Pes:
    pts: int
    dts: int
    rai: bool
    parts: list[bytes]
    size: int
    expected: int | None  # payload bytes announced by PES_packet_length, if any


class Demuxer:
    """Feed it bytes as they come; it returns each frame as soon as it is complete."""

    def __init__(self) -> None:
        self._buf = b""
        self._pmt_pid: int | None = None
        self.tracks: dict[int, Track] = {}  # pid -> track (first video, first audio)
        self.program_version = 0  # bumped whenever the tracks change
        self._pes: dict[int, _Pes] = {}
        self._unwrap: dict[int, tuple[_Unwrap, _Unwrap]] = {}

    @property
    def video(self) -> Track | None:
        return next((t for t in self.tracks.values() if t.kind == "video"), None)

    @property
    def audio(self) -> Track | None:
        return next((t for t in self.tracks.values() if t.kind == "audio"), None)

    def feed(self, data: bytes, now: float) -> list[Frame]:
        buf = self._buf + data if self._buf else data
        out: list[Frame] = []
        i, n = 0, len(buf)
        while n - i >= TS:
            if buf[i] != SYNC:
                j = buf.find(b"\x47", i + 1)
                i = n if j < 0 else j
                continue
            self._packet(buf[i : i + TS], now, out)
            i += TS
        self._buf = buf[i:]
        return out

    def flush(self, now: float) -> list[Frame]:
        """Every PES still open (the source stopped): hand them on as they are."""
        out: list[Frame] = []
        for pid in list(self._pes):
            self._finish(pid, now, out)
        return out

    def _packet(self, pkt: bytes, now: float, out: list[Frame]) -> None:
        pusi = bool(pkt[1] & 0x40)
        pid = (pkt[1] & 0x1F) << 8 | pkt[2]
        afc = (pkt[3] >> 4) & 0x03
        i, rai = 4, False
        if afc & 0x02:
            length = pkt[4]
            rai = length > 0 and bool(pkt[5] & 0x40)
            i = 5 + length
        if not afc & 0x01 or i >= TS:
            return
        payload = pkt[i:]
        if pid == PAT_PID:
            if pusi:
                self._pat(payload)
        elif pid == self._pmt_pid:
            if pusi:
                self._pmt(payload)
        elif pid in self.tracks:
            self._payload(pid, pusi, rai, payload, now, out)

    @staticmethod
    def _section(payload: bytes) -> bytes | None:
        """The section a PSI packet starts (pointer field skipped), CRC excluded."""
        start = 1 + payload[0]
        sec = payload[start:]
        if len(sec) < 8:
            return None
        length = (sec[1] & 0x0F) << 8 | sec[2]
        return sec[: 3 + length - 4] if 3 + length <= len(sec) else None

    def _pat(self, payload: bytes) -> None:
        sec = self._section(payload)
        if sec is None or sec[0] != 0x00:
            return
        for j in range(8, len(sec) - 3, 4):
            if sec[j] << 8 | sec[j + 1]:
                self._pmt_pid = (sec[j + 2] & 0x1F) << 8 | sec[j + 3]
                return

    def _pmt(self, payload: bytes) -> None:
        sec = self._section(payload)
        if sec is None or sec[0] != 0x02:
            return
        tracks: dict[int, Track] = {}
        kinds: set[str] = set()
        j = 12 + ((sec[10] & 0x0F) << 8 | sec[11])
        while j + 5 <= len(sec):
            stype, epid = sec[j], (sec[j + 1] & 0x1F) << 8 | sec[j + 2]
            length = (sec[j + 3] & 0x0F) << 8 | sec[j + 4]
            info = sec[j + 5 : j + 5 + length]
            found = classify(stype, info)
            if found and found[0] not in kinds:
                kinds.add(found[0])
                old = self.tracks.get(epid)
                sid = old.stream_id if old else (0xE0 if found[0] == "video" else 0xC0)
                tracks[epid] = Track(found[0], found[1], stype, sid, info)
            j += 5 + length
        if tracks != self.tracks:
            self.tracks = tracks
            self.program_version += 1
            self._pes = {p: v for p, v in self._pes.items() if p in tracks}

    def _payload(self, pid: int, pusi: bool, rai: bool, payload: bytes, now: float, out: list[Frame]) -> None:
        if pusi:
            self._finish(pid, now, out)
            self._start(pid, rai, payload)
        elif pid in self._pes:
            self._pes[pid].parts.append(payload)
            self._pes[pid].size += len(payload)
        current = self._pes.get(pid)
        if current is not None and current.expected is not None and current.size >= current.expected:
            self._finish(pid, now, out)

    def _start(self, pid: int, rai: bool, payload: bytes) -> None:
        if len(payload) < 9 or payload[:3] != b"\x00\x00\x01":
            return
        sid = payload[3]
        length = payload[4] << 8 | payload[5]
        flags, header = payload[7] >> 6, payload[8]
        if flags & 0x02 == 0 or len(payload) < 9 + header:
            return  # no PTS: nothing the switch can place in time
        track = self.tracks[pid]
        if track.stream_id != sid:
            self.tracks[pid] = Track(track.kind, track.codec, track.stream_type, sid, track.descriptors)
        unwrap_pts, unwrap_dts = self._unwrap.setdefault(pid, (_Unwrap(), _Unwrap()))
        pts = unwrap_pts(_timestamp(payload[9:14]))
        dts = unwrap_dts(_timestamp(payload[14:19])) if flags == 0x03 else pts
        body = payload[9 + header :]
        expected = length - 3 - header if length else None
        self._pes[pid] = _Pes(pts, dts, rai, [body], len(body), expected)

    def _finish(self, pid: int, now: float, out: list[Frame]) -> None:
        pes = self._pes.pop(pid, None)
        if pes is None:
            return
        data = b"".join(pes.parts)
        if pes.expected is not None:
            data = data[: pes.expected]
        track = self.tracks[pid]
        key = track.kind == "audio" or pes.rai or keyframe(track.codec, data)
        frame = Frame(track.kind, pes.pts, pes.dts, data, key, now)
        out.extend(split_adts(frame) if track.codec == "aac" else [frame])


# -------------------------------------------------------------------------- muxer


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        c = i << 24
        for _ in range(8):
            c = ((c << 1) ^ 0x04C11DB7) if c & 0x80000000 else c << 1
        table.append(c & 0xFFFFFFFF)
    return table


_CRC = _crc_table()


def crc32_mpeg(data: bytes) -> int:
    """The CRC of PSI sections (MPEG-2: polynomial 0x04C11DB7, not reflected)."""
    crc = 0xFFFFFFFF
    for b in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC[((crc >> 24) ^ b) & 0xFF]
    return crc


def _encode_ts(marker: int, value: int) -> bytes:
    v = value % WRAP
    return bytes(
        [
            (marker << 4) | ((v >> 29) & 0x0E) | 1,
            (v >> 22) & 0xFF,
            ((v >> 14) & 0xFE) | 1,
            (v >> 7) & 0xFF,
            ((v << 1) & 0xFE) | 1,
        ]
    )


def pes_packet(track: Track, frame: Frame) -> bytes:
    """A PES packet: header with PTS (and DTS when it differs) and the frame's bytes."""
    if frame.dts != frame.pts:
        flags, stamps = 0xC0, _encode_ts(3, frame.pts) + _encode_ts(1, frame.dts)
    else:
        flags, stamps = 0x80, _encode_ts(2, frame.pts)
    header = bytes([0x84 if track.kind == "video" else 0x80, flags, len(stamps)]) + stamps
    length = len(header) + len(frame.data)
    return b"\x00\x00\x01" + bytes([track.stream_id]) + (length if length <= 0xFFFF else 0).to_bytes(2, "big") + \
        header + frame.data  # fmt: skip


class Muxer:
    """Frames of one program (a video and/or an audio track) to MPEG-TS packets, with
    PAT and PMT every ``psi_interval`` seconds and a PCR with each video frame.

    ``aac_config`` (AudioSpecificConfig) goes into the PMT as an MPEG-4 initial object
    descriptor: FFmpeg's TS demuxer then knows AAC's configuration before the first
    frame, which its RTSP muxer needs (it refuses ADTS AAC without it)."""

    def __init__(self, video: Track | None, audio: Track | None, psi_interval: float = 0.1,
                 aac_config: bytes | None = None) -> None:  # fmt: skip
        if audio is not None and audio.codec == "aac" and aac_config:
            audio = Track(audio.kind, audio.codec, audio.stream_type, audio.stream_id,
                          audio.descriptors + sl_descriptor(AUDIO_PID))  # fmt: skip
        self.tracks = {kind: t for kind, t in (("video", video), ("audio", audio)) if t is not None}
        self.pids = {"video": VIDEO_PID, "audio": AUDIO_PID}
        self.pcr_pid = VIDEO_PID if video is not None else AUDIO_PID
        self.psi_interval = psi_interval
        self._cc: dict[int, int] = {}
        self._psi_at: float | None = None
        self.program_info = iod_descriptor(AUDIO_PID, aac_config) if "audio" in self.tracks and aac_config else b""

    def frame(self, frame: Frame, now: float) -> bytes:
        """The packets of one frame, preceded by PAT and PMT when they are due."""
        track = self.tracks.get(frame.kind)
        if track is None:
            return b""
        out = b""
        if self._psi_at is None or now - self._psi_at >= self.psi_interval:
            self._psi_at = now
            out = self.psi()
        pid = self.pids[frame.kind]
        pcr = frame.dts - 9000 if pid == self.pcr_pid else None  # 100 ms ahead of decoding
        return out + self._packets(pid, pes_packet(track, frame), pcr, frame.key and frame.kind == "video")

    def psi(self) -> bytes:
        pat = bytes([0x00, 0xB0, 13, 0x00, 0x01, 0xC1, 0x00, 0x00]) + PROGRAM.to_bytes(2, "big") + \
            (0xE000 | PMT_PID).to_bytes(2, "big")  # fmt: skip
        entries = b""
        for kind, track in self.tracks.items():
            pid = self.pids[kind]
            entries += bytes([track.stream_type]) + (0xE000 | pid).to_bytes(2, "big") + \
                (0xF000 | len(track.descriptors)).to_bytes(2, "big") + track.descriptors  # fmt: skip
        body = PROGRAM.to_bytes(2, "big") + bytes([0xC1, 0x00, 0x00]) + (0xE000 | self.pcr_pid).to_bytes(2, "big") + \
            (0xF000 | len(self.program_info)).to_bytes(2, "big") + self.program_info + entries  # fmt: skip
        pmt = bytes([0x02]) + (0xB000 | (len(body) + 4)).to_bytes(2, "big") + body
        return self._section(PAT_PID, pat) + self._section(PMT_PID, pmt)

    def _section(self, pid: int, section: bytes) -> bytes:
        data = b"\x00" + section + crc32_mpeg(section).to_bytes(4, "big")
        return self._header(pid, True, 0x01) + data + b"\xff" * (TS - 4 - len(data))

    def _header(self, pid: int, pusi: bool, afc: int) -> bytes:
        cc = self._cc.get(pid, 15) + 1 & 0x0F
        self._cc[pid] = cc
        return bytes([SYNC, (0x40 if pusi else 0) | pid >> 8, pid & 0xFF, afc << 4 | cc])

    def _packets(self, pid: int, pes: bytes, pcr: int | None, rai: bool) -> bytes:
        """A PES cut into packets; the first carries PCR and random-access flag, the
        last is padded with adaptation-field stuffing."""
        out = []
        pos, first = 0, True
        while pos < len(pes):
            fields = b""
            if first and (rai or pcr is not None):
                flags = (0x40 if rai else 0) | (0x10 if pcr is not None else 0)
                fields = bytes([flags]) + (_pcr_bytes(pcr) if pcr is not None else b"")
            af_len = 1 + len(fields) if fields else 0
            room = TS - 4 - af_len
            if len(pes) - pos < room:
                room = len(pes) - pos
                af_len = TS - 4 - room
            af = _adaptation(fields, af_len) if af_len else b""
            out.append(self._header(pid, first, 0x03 if af else 0x01) + af + pes[pos : pos + room])
            pos += room
            first = False
        return b"".join(out)


def _adaptation(fields: bytes, total: int) -> bytes:
    """An adaptation field of exactly ``total`` bytes, its length byte included."""
    if total == 1:
        return b"\x00"
    body = fields or b"\x00"
    return bytes([total - 1]) + body + b"\xff" * (total - 1 - len(body))


def _descriptor(tag: int, body: bytes) -> bytes:
    """An MPEG-4 descriptor (ISO/IEC 14496-1): tag, size in 7-bit groups, body."""
    size, out = len(body), [len(body) & 0x7F]
    while size > 0x7F:
        size >>= 7
        out.insert(0, 0x80 | (size & 0x7F))
    return bytes([tag, *out]) + body


def iod_descriptor(es_id: int, aac_config: bytes) -> bytes:
    """PMT program_info: an IOD descriptor (0x1D) whose ES descriptor carries AAC's
    DecoderSpecificInfo, matched to the stream by ``es_id`` (sl_descriptor)."""
    dec_config = _descriptor(0x04, bytes([0x40, 0x15]) + bytes(11) + _descriptor(0x05, aac_config))
    es = _descriptor(0x03, es_id.to_bytes(2, "big") + b"\x00" + dec_config)
    iod = _descriptor(0x02, (0x004F).to_bytes(2, "big") + b"\xff\xff\xfe\xff\xff" + es)
    return bytes([0x1D, len(iod) + 2, 0x10, 0x01]) + iod


def sl_descriptor(es_id: int) -> bytes:
    """ES_info: the SL descriptor (0x1E) naming the stream's ES_ID."""
    return bytes([0x1E, 2]) + es_id.to_bytes(2, "big")


SAMPLE_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)


def adts_config(header: bytes) -> bytes | None:
    """AudioSpecificConfig (2 bytes) from an ADTS header: object type, rate, channels."""
    if len(header) < 7 or header[0] != 0xFF or header[1] & 0xF6 != 0xF0:
        return None
    aot, sfi, channels = (header[2] >> 6) + 1, (header[2] >> 2) & 0x0F, (header[2] & 1) << 2 | header[3] >> 6
    return ((aot << 11) | (sfi << 7) | (channels << 3)).to_bytes(2, "big")


def split_adts(frame: Frame) -> list[Frame]:
    """A PES of several ADTS frames as one frame each (timestamps 1024 samples apart),
    so that the publisher's AAC handling sees one frame per packet."""
    data, pos = frame.data, 0
    out: list[Frame] = []
    while pos + 7 <= len(data) and data[pos] == 0xFF and data[pos + 1] & 0xF6 == 0xF0:
        length = (data[pos + 3] & 0x03) << 11 | data[pos + 4] << 3 | data[pos + 5] >> 5
        sfi = (data[pos + 2] >> 2) & 0x0F
        if length < 7 or pos + length > len(data) or sfi >= len(SAMPLE_RATES):
            break
        step = round(len(out) * 1024 * 90000 / SAMPLE_RATES[sfi])
        out.append(Frame("audio", frame.pts + step, frame.dts + step, data[pos : pos + length], True, frame.arrived))
        pos += length
    if not out or pos != len(data):
        return [frame]
    return out


def _pcr_bytes(pcr: int) -> bytes:
    base = pcr % WRAP
    return bytes([(base >> 25) & 0xFF, (base >> 17) & 0xFF, (base >> 9) & 0xFF, (base >> 1) & 0xFF,
                  ((base & 1) << 7) | 0x7E, 0x00])  # fmt: skip
