"""Client of MediaMTX's control API (v3), used to report a StreamInput's health.

The operator runs one MediaMTX per StreamInput and mirrors what that router knows
into ``status``: whether the source is publishing, its tracks, its bitrate, how many
readers (output pods) pull from it and since when the source has been up.

The module has two halves on purpose:

* pure parse functions (``parse_path``, ``parse_sessions``, ``bitrate_kbps``,
  ``input_health``, ``stalled_readers``) that turn the JSON MediaMTX returns into
  small immutable models; unit tests feed them saved real responses, no server;
* ``MediaMTXClient``, a thin urllib fetcher (the operator must not depend on an
  HTTP library for three GET requests) that only does I/O and hands bytes to the
  parsers.

Bitrate is not something MediaMTX reports: it exposes a monotonic byte counter per
path. The operator keeps the previous sample and derives kbps from two samples;
``bitrate_kbps`` is a pure function of two samples so it is trivially testable and
handles counter resets (a new publisher or a restarted router starts from zero).

Field names follow MediaMTX v1.20 (``available``/``availableTime``/``online``/
``inboundBytes``/``tracks2``/``outboundBytes``). The older names (``ready``,
``readyTime``, ``bytesReceived``, ``tracks``, ``bytesSent``) are still emitted as
deprecated aliases and are used as fallbacks, so the parser also reads older
releases.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = [
    "API_VERSION_PREFIX",
    "SESSION_ENDPOINTS",
    "InputHealth",
    "MediaMTXAPIError",
    "MediaMTXClient",
    "PathSample",
    "ReaderRef",
    "SRTLink",
    "Session",
    "TrackDetail",
    "bitrate_kbps",
    "input_health",
    "parse_path",
    "parse_path_list",
    "parse_sessions",
    "parse_srt_conn",
    "parse_time",
    "reader_sessions",
    "stalled_readers",
]

API_VERSION_PREFIX = "/v3"

# Reader/publisher kinds as MediaMTX names them in a path's ``readers[].type`` and
# ``source.type``, mapped to the list endpoint that carries that session's counters.
# One endpoint per server; a disabled server answers 404 and is treated as empty.
SESSION_ENDPOINTS: dict[str, str] = {
    "rtspSession": "/v3/rtspsessions/list",
    "rtspsSession": "/v3/rtspssessions/list",
    "rtmpConn": "/v3/rtmpconns/list",
    "rtmpsConn": "/v3/rtmpsconns/list",
    "srtConn": "/v3/srtconns/list",
    "webRTCSession": "/v3/webrtcsessions/list",
    "hlsSession": "/v3/hlssessions/list",
}

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class MediaMTXAPIError(RuntimeError):
    """The control API could not be reached or answered an error.

    ``status`` is the HTTP status (None when the connection itself failed), so the
    caller can tell "router not up yet" (None) from "router refuses" (4xx/5xx).
    """

    def __init__(self, message: str, status: int | None = None, url: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.url = url


class ReaderRef(BaseModel):
    """A reader of a path as the path itself lists it: kind and session id."""

    model_config = _FROZEN

    type: str
    id: str


class TrackDetail(BaseModel):
    """One track of a path as MediaMTX v1.20 describes it (``tracks2[].codecProps``):
    video gives width, height, profile and level (H.264/H.265), audio its sample rate
    and channels. MediaMTX reports no frame rate."""

    model_config = _FROZEN

    codec: str
    width: int | None = None
    height: int | None = None
    profile: str | None = None
    level: str | None = None
    sample_rate: int | None = None
    channel_count: int | None = None


class PathSample(BaseModel):
    """One observation of a MediaMTX path, stamped with the local time it was taken.

    ``sampled_at`` is a monotonic clock reading (seconds) of the caller, not a wall
    time: it only serves to compute rates between two samples.
    """

    model_config = _FROZEN

    name: str
    ready: bool
    online: bool
    ready_time: datetime | None
    source_type: str | None
    source_id: str | None
    tracks: tuple[str, ...]
    bytes_received: int
    bytes_sent: int
    readers: tuple[ReaderRef, ...]
    sampled_at: float
    # frames of the current source MediaMTX could not process (``inboundFramesInError``)
    frames_in_error: int = 0
    track_details: tuple[TrackDetail, ...] = ()

    @property
    def reader_count(self) -> int:
        """Readers of the path (each output pod is one RTSP reader)."""
        return len(self.readers)


class Session(BaseModel):
    """A connection/session of one of MediaMTX's servers (RTSP, RTMP, SRT, ...).

    Only the fields the operator uses: which path, reading or publishing, and the
    byte counters; ``bytes_sent`` growing is how a reader is seen to be fed.
    """

    model_config = _FROZEN

    type: str
    id: str
    path: str
    state: str
    remote_addr: str
    created: datetime | None
    bytes_received: int
    bytes_sent: int
    query: str = ""
    # what the router discarded toward this reader because it fell behind: frames
    # (``outboundFramesDiscarded``), RTP packets for RTSP sessions
    # (``outboundRTPPacketsDiscarded``)
    discarded: int = 0


class SRTLink(BaseModel):
    """An SRT connection's link statistics (``/v3/srtconns/get/{id}``), receiver side:
    what the router's SRT stack (gosrt) counts for a publisher since it connected.

    ``received`` counts each packet of the stream once (``packetsReceivedUnique``);
    ``lost`` the packets found missing (``packetsReceivedLoss``), most of them later
    retransmitted (``packetsReceivedRetrans``); ``dropped`` the packets the receiver
    threw away (``packetsReceivedDrop``: too late to play, or a duplicate of one it
    had: gosrt counts both).
    """

    model_config = _FROZEN

    id: str
    rtt_ms: float
    received: int
    lost: int
    retransmitted: int
    dropped: int
    receive_rate_mbps: float


class InputHealth(BaseModel):
    """What the operator writes into a StreamInput's status from one poll.

    ``bitrate_kbps`` is None when it cannot be known yet (first sample, counter
    reset, no source), which the status shows as absent rather than as a false 0.
    """

    model_config = _FROZEN

    ready: bool
    tracks: tuple[str, ...]
    bitrate_kbps: float | None
    readers: int
    last_source_time: datetime | None


# --------------------------------------------------------------------------- parsing

_FRACTION = re.compile(r"(\.\d+)")


def parse_time(value: str | None) -> datetime | None:
    """Parse MediaMTX's RFC 3339 timestamps (Go's time.Time JSON) into aware datetimes.

    Go prints up to nine fractional digits and ``Z`` or ``+hh:mm``; Python's
    ``fromisoformat`` takes at most six digits, so the fraction is cut (we report
    seconds anyway). Returns None for null/empty and for Go's zero time.
    """
    if not value:
        return None
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    text = _FRACTION.sub(lambda m: m.group(1)[:7], text, count=1)
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if parsed.year <= 1:
        return None
    return parsed


def _int(doc: Mapping[str, Any], *keys: str) -> int:
    """First present integer among ``keys`` (new name first, deprecated alias after)."""
    for key in keys:
        value = doc.get(key)
        if value is not None:
            return int(value)
    return 0


def _track_names(doc: Mapping[str, Any]) -> tuple[str, ...]:
    """Codec names of a path's tracks, e.g. ``("H264", "MPEG-4 Audio")``.

    v1.20 reports ``tracks2: [{codec, codecProps}]``; older releases a list of
    strings in ``tracks``.
    """
    tracks2 = doc.get("tracks2")
    if isinstance(tracks2, list):
        return tuple(str(t.get("codec", "")) for t in tracks2 if isinstance(t, Mapping))
    tracks = doc.get("tracks") or []
    return tuple(str(t) for t in tracks)


def _opt_int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _opt_str(value: Any) -> str | None:
    return str(value) if isinstance(value, str | int | float) and not isinstance(value, bool) and value != "" else None


def parse_track_details(doc: Mapping[str, Any]) -> tuple[TrackDetail, ...]:
    """``tracks2`` of a path as TrackDetail, the properties MediaMTX gives (absent ones None)."""
    out = []
    for track in doc.get("tracks2") or []:
        if not isinstance(track, Mapping):
            continue
        found = track.get("codecProps")
        props: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        out.append(
            TrackDetail(
                codec=str(track.get("codec", "")),
                width=_opt_int(props.get("width")),
                height=_opt_int(props.get("height")),
                profile=_opt_str(props.get("profile")),
                level=_opt_str(props.get("level")),
                sample_rate=_opt_int(props.get("sampleRate")),
                channel_count=_opt_int(props.get("channelCount")),
            )
        )
    return tuple(out)


def parse_path(doc: Mapping[str, Any], sampled_at: float) -> PathSample:
    """Turn one item of ``/v3/paths/list`` (or the body of ``/v3/paths/get/{name}``)
    into a ``PathSample``.

    ``ready`` is MediaMTX's "available" (a stream exists that readers can read);
    ``online`` additionally says a real source is behind it (differs only with
    ``alwaysAvailable``). ``ready_time`` is when the current source became available:
    the status's lastSourceTime.
    """
    available = doc.get("available")
    ready = bool(doc.get("ready") if available is None else available)
    online = doc.get("online")
    source = doc.get("source") or None
    return PathSample(
        name=str(doc["name"]),
        ready=ready,
        online=ready if online is None else bool(online),
        ready_time=parse_time(doc.get("availableTime") or doc.get("readyTime")),
        source_type=str(source["type"]) if source else None,
        source_id=str(source.get("id", "")) if source else None,
        tracks=_track_names(doc),
        bytes_received=_int(doc, "inboundBytes", "bytesReceived"),
        bytes_sent=_int(doc, "outboundBytes", "bytesSent"),
        readers=tuple(
            ReaderRef(type=str(r.get("type", "")), id=str(r.get("id", ""))) for r in (doc.get("readers") or [])
        ),
        sampled_at=sampled_at,
        frames_in_error=_int(doc, "inboundFramesInError"),
        track_details=parse_track_details(doc),
    )


def parse_path_list(doc: Mapping[str, Any], sampled_at: float) -> list[PathSample]:
    """Parse one page of ``/v3/paths/list``."""
    return [parse_path(item, sampled_at) for item in (doc.get("items") or [])]


def parse_sessions(kind: str, doc: Mapping[str, Any]) -> list[Session]:
    """Parse one page of a session list (``/v3/rtspsessions/list``, ``/v3/srtconns/list``,
    ...). ``kind`` is the reader type the path uses for those sessions (``rtspSession``,
    ``srtConn``, ...), so sessions can be matched to a path's ``readers`` by
    (type, id).

    RTSP *connections* have no path; the operator reads RTSP *sessions*, which do.
    """
    out: list[Session] = []
    for item in doc.get("items") or []:
        out.append(
            Session(
                type=kind,
                id=str(item.get("id", "")),
                path=str(item.get("path", "")),
                state=str(item.get("state", "")),
                remote_addr=str(item.get("remoteAddr", "")),
                created=parse_time(item.get("created")),
                bytes_received=_int(item, "inboundBytes", "bytesReceived"),
                bytes_sent=_int(item, "outboundBytes", "bytesSent"),
                query=str(item.get("query") or ""),
                discarded=_int(item, "outboundFramesDiscarded", "outboundRTPPacketsDiscarded"),
            )
        )
    return out


def parse_srt_conn(doc: Mapping[str, Any]) -> SRTLink:
    """One SRT connection (an item of ``/v3/srtconns/list`` or ``/v3/srtconns/get/{id}``)."""
    return SRTLink(
        id=str(doc.get("id", "")),
        rtt_ms=float(doc.get("msRTT") or 0.0),
        received=_int(doc, "packetsReceivedUnique"),
        lost=_int(doc, "packetsReceivedLoss"),
        retransmitted=_int(doc, "packetsReceivedRetrans"),
        dropped=_int(doc, "packetsReceivedDrop"),
        receive_rate_mbps=float(doc.get("mbpsReceiveRate") or 0.0),
    )


# ----------------------------------------------------------------- derived values


def _read_bounded(resp: http.client.HTTPResponse, url: str) -> bytes:
    """The body, read in chunks: refused past MAX_REPLY_BYTES."""
    chunks: list[bytes] = []
    size = 0
    while chunk := resp.read1(65536):
        size += len(chunk)
        if size > MAX_REPLY_BYTES:
            raise MediaMTXAPIError(f"{url}: reply larger than {MAX_REPLY_BYTES} bytes", None, url)
        chunks.append(chunk)
    return b"".join(chunks)


def _expire(conn: http.client.HTTPConnection, expired: threading.Event) -> None:
    """The request's deadline passed: end its socket (a blocked read returns at once)."""
    expired.set()
    with contextlib.suppress(OSError, AttributeError):
        conn.sock.shutdown(socket.SHUT_RDWR)


def bitrate_kbps(previous: PathSample | None, current: PathSample) -> float | None:
    """Inbound bitrate of a path, in kilobits per second, between two samples.

    Returns None when no rate can honestly be given: no previous sample, samples of
    different paths, no time elapsed, no source now, or the byte counter went back
    (a new publisher or a restarted router resets it to zero).
    """
    if previous is None or previous.name != current.name:
        return None
    if not current.ready:
        return None
    elapsed = current.sampled_at - previous.sampled_at
    delta = current.bytes_received - previous.bytes_received
    if elapsed <= 0 or delta < 0:
        return None
    if previous.ready_time != current.ready_time:
        # the source changed between samples: the counter belongs to another stream
        return None
    return delta * 8 / 1000 / elapsed


def input_health(previous: PathSample | None, current: PathSample | None) -> InputHealth:
    """Everything the StreamInput status reports, from the last two samples.

    ``current`` None means the path does not exist on the router (no source has
    ever published to it and it is not configured), which is "not ready".
    """
    if current is None:
        return InputHealth(ready=False, tracks=(), bitrate_kbps=None, readers=0, last_source_time=None)
    rate = bitrate_kbps(previous, current)
    return InputHealth(
        ready=current.ready,
        tracks=current.tracks if current.ready else (),
        bitrate_kbps=None if rate is None else round(rate, 1),
        readers=current.reader_count,
        last_source_time=current.ready_time,
    )


def reader_sessions(path: PathSample, sessions: Iterable[Session]) -> list[Session]:
    """The sessions that read ``path``, matched by the (type, id) the path lists."""
    wanted = {(r.type, r.id) for r in path.readers}
    return [s for s in sessions if (s.type, s.id) in wanted]


def stalled_readers(previous: Sequence[Session], current: Sequence[Session]) -> list[Session]:
    """Readers present in both samples whose ``bytes_sent`` did not grow.

    A reader whose counter stands still while the source is live is an output pod
    that stopped pulling (stuck destination, frozen FFmpeg): the caller decides how
    long a stall must last before acting.
    """
    before = {(s.type, s.id): s.bytes_sent for s in previous}
    return [s for s in current if (s.type, s.id) in before and s.bytes_sent <= before[(s.type, s.id)]]


# ------------------------------------------------------------------------- I/O


# A router's reply is small (one path, a page of sessions): anything larger is refused,
# and so are redirects and more pages than a router of one input can have.
MAX_REPLY_BYTES = 4 * 1024 * 1024
MAX_PAGES = 10


class MediaMTXClient:
    """Fetches from one MediaMTX control API; all decoding is left to the parsers.

    ``base_url`` is like ``http://10.1.2.3:9997``. ``timeout`` is the deadline of one
    whole request (connect, send, every read): a router that drip-feeds its reply, or
    a pod that only pretends to be one, cannot hold the poll longer than that. No proxy
    from the environment is used (routers are reached inside the cluster), and no
    redirect is followed.
    """

    def __init__(
        self,
        base_url: str,
        timeout: float = 2.0,
        clock: Any = time.monotonic,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        parsed = urllib.parse.urlsplit(base_url.rstrip("/"))
        self.base_url = base_url.rstrip("/")
        self._host, self._port = parsed.hostname or "", parsed.port or 80
        self.timeout = timeout
        self._clock = clock
        self._auth: str | None = None
        if username is not None:
            token = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
            self._auth = f"Basic {token}"

    def get_json(self, path: str, query: Mapping[str, Any] | None = None) -> Any:
        """GET ``path`` and decode its JSON body; raise MediaMTXAPIError otherwise."""
        target = path + ("?" + urllib.parse.urlencode(query) if query else "")
        url = self.base_url + target
        status, body = self._get(target, url)
        if not 200 <= status <= 299:
            detail = ""
            with contextlib.suppress(ValueError, AttributeError, TypeError):
                detail = str(json.loads(body or b"{}").get("error", ""))[:200]
            raise MediaMTXAPIError(f"{url}: HTTP {status}{': ' + detail if detail else ''}", status, url)
        try:
            return json.loads(body)
        except ValueError as exc:
            raise MediaMTXAPIError(f"{url}: invalid JSON: {exc}", None, url) from None

    def _get(self, target: str, url: str) -> tuple[int, bytes]:
        """(status, body) within one deadline for the whole request: when it passes, the
        socket is shut down, which ends any read still waiting (a drip-feeding reply)."""
        conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
        expired = threading.Event()
        timer = threading.Timer(self.timeout, _expire, args=(conn, expired))
        timer.start()
        try:
            headers = {"Accept": "application/json", **({"Authorization": self._auth} if self._auth else {})}
            conn.request("GET", target, headers=headers)
            resp = conn.getresponse()
            body = _read_bounded(resp, url)
            if expired.is_set():  # the read ended because the socket was shut down
                raise OSError("deadline")
            return resp.status, body
        except (OSError, http.client.HTTPException) as exc:
            why = "no complete reply within the deadline" if expired.is_set() else str(exc) or type(exc).__name__
            raise MediaMTXAPIError(f"{url}: {why}", None, url) from None
        finally:
            timer.cancel()
            conn.close()

    def _list_all(self, path: str) -> list[Mapping[str, Any]]:
        """All items of a paginated list endpoint (pages of 100, MediaMTX's default),
        at most MAX_PAGES whatever pageCount says."""
        items: list[Mapping[str, Any]] = []
        for page in range(MAX_PAGES):
            doc = self.get_json(path, {"itemsPerPage": 100, "page": page})
            items.extend(doc.get("items") or [])
            if page + 1 >= int(doc.get("pageCount") or 0):
                break
        return items

    def paths(self) -> list[PathSample]:
        """Every path the router has now (configured or published)."""
        now = self._clock()
        return parse_path_list({"items": self._list_all("/v3/paths/list")}, now)

    def _get_or_none(self, path: str) -> Any:
        """The decoded body of ``path``, or None when the router does not know it (HTTP 404)."""
        try:
            return self.get_json(path)
        except MediaMTXAPIError as exc:
            if exc.status == 404:
                return None
            raise

    def path(self, name: str) -> PathSample | None:
        """One path, or None when the router does not know it (HTTP 404)."""
        now = self._clock()
        doc = self._get_or_none("/v3/paths/get/" + urllib.parse.quote(name, safe="/"))
        return None if doc is None else parse_path(doc, now)

    def sessions(self, kind: str) -> list[Session]:
        """All sessions of one kind (see SESSION_ENDPOINTS); [] if that server is off."""
        endpoint = SESSION_ENDPOINTS[kind]
        try:
            items = self._list_all(endpoint)
        except MediaMTXAPIError as exc:
            if exc.status == 404:
                return []
            raise
        return parse_sessions(kind, {"items": items})

    def srt_conn(self, conn_id: str) -> SRTLink | None:
        """One SRT connection's statistics, or None when it is gone (HTTP 404)."""
        doc = self._get_or_none("/v3/srtconns/get/" + urllib.parse.quote(conn_id, safe=""))
        return None if doc is None else parse_srt_conn(doc)

    def readers_of(self, path: PathSample, known: Mapping[str, list[Session]] | None = None) -> list[Session]:
        """Per-reader sessions (with bytes_sent) of ``path``, fetching only the kinds
        of server its readers use and the caller has not fetched already (``known``)."""
        out: list[Session] = []
        for kind in sorted({r.type for r in path.readers}):
            if known is not None and kind in known:
                out.extend(known[kind])
            elif kind in SESSION_ENDPOINTS:
                out.extend(self.sessions(kind))
        return reader_sessions(path, out)

    def health(self, name: str, previous: PathSample | None) -> tuple[InputHealth, PathSample | None]:
        """Fetch ``name`` and derive its health against the caller's previous sample.

        Returns the health and the new sample for the caller to keep for next time.
        """
        current = self.path(name)
        return input_health(previous, current), current
