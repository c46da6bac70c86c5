"""Destination URLs: parse every form an output may take, and mask what is secret.

A destination URL often *is* the secret (an RTMP stream key, an SRT passphrase), so the
masked form is the only one that may reach status, Events, logs or printer columns.
Parsing is strict on purpose: FFmpeg reads options out of SRT and UDP query strings,
so an unknown query parameter is refused rather than handed to FFmpeg.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from typing import Literal
from urllib.parse import SplitResult, parse_qsl, quote, urlsplit

Scheme = Literal["srt", "rtmp", "rtmps", "udp", "rtsp"]
SCHEMES: tuple[Scheme, ...] = ("srt", "rtmp", "rtmps", "udp", "rtsp")
MASK = "***"

DEFAULT_PORTS = {"rtmp": 1935, "rtmps": 443, "rtsp": 554}
# The output pod's own metrics port (render.TELEMETRY_PORT; the router's MediaMTX serves its
# metrics on the same number): an SRT listener cannot take it.
OUTPUT_METRICS_PORT = 9998

# Query parameters FFmpeg's srt and udp protocols read, that a user may legitimately set.
# Anything else (say `?localport=` or a typo) is refused with a message naming it.
ALLOWED_QUERY: dict[str, frozenset[str]] = {
    "srt": frozenset(
        {
            "mode",
            "passphrase",
            "pbkeylen",
            "streamid",
            "latency",
            "rcvlatency",
            "peerlatency",
            "maxbw",
            "oheadbw",
            "payload_size",
            "pkt_size",
            "tlpktdrop",
            "nakreport",
            "enforced_encryption",
            "kmrefreshrate",
            "kmpreannounce",
        }
    ),
    "udp": frozenset({"pkt_size", "ttl", "buffer_size", "bitrate", "burst_bits", "connect"}),
    # RTMP, RTMPS and RTSP query strings are part of the resource (platforms put keys
    # there); FFmpeg does not parse them as options.
    "rtmp": frozenset(),
    "rtmps": frozenset(),
    "rtsp": frozenset(),
}
OPAQUE_QUERY = frozenset({"rtmp", "rtmps", "rtsp"})

SECRET_PARAM = re.compile(r"(pass|key|token|secret|auth|sig|pwd|streamid|cred)", re.I)
_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?"
HOST_RE = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?")
# Shell and quoting characters: never part of a destination, always a mistake or worse.
SHELL_CHARS = frozenset("\\\"'`$;|<>")
MAX_URL = 2048
# What libsrt accepts (FFmpeg passes these options to it unchanged): refused here instead
# of by a crash-looping FFmpeg. (low, high) inclusive; None: no bound on that side.
SRT_RANGES: dict[str, tuple[int | None, int | None]] = {
    "latency": (0, 60_000_000),  # microseconds in FFmpeg's srt options
    "rcvlatency": (0, 60_000_000),
    "peerlatency": (0, 60_000_000),
    "maxbw": (-1, None),
    "oheadbw": (5, 100),
    "payload_size": (1, 1456),
    "pkt_size": (1, 1456),
    "tlpktdrop": (0, 1),
    "nakreport": (0, 1),
    "enforced_encryption": (0, 1),
    "kmrefreshrate": (0, None),
    "kmpreannounce": (0, None),
}
SRT_PBKEYLEN = frozenset({"0", "16", "24", "32"})
SRT_PASSPHRASE = range(10, 80)
SRT_STREAMID_MAX = 512
UDP_RANGES: dict[str, tuple[int | None, int | None]] = {
    "pkt_size": (1, 65507),
    "ttl": (0, 255),
    "buffer_size": (0, None),
    "bitrate": (0, None),
    "burst_bits": (0, None),
    "connect": (0, 1),
}
# What inet_aton (and so getaddrinfo) reads as an IPv4 address: one to four parts, each
# decimal, octal (leading 0) or hex (0x).
NUMERIC_HOST = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}\.?", re.I)


class URLError(ValueError):
    """A destination a user wrote that streamdist cannot send to.

    The message names the part of the URL and the rule, never any text of the URL:
    a destination often is a secret.
    """


@dataclass(frozen=True)
class Destination:
    scheme: Scheme
    host: str
    port: int
    mode: Literal["caller", "listener"] | None
    masked: str

    @property
    def listener(self) -> bool:
        return self.mode == "listener"

    @property
    def protocol(self) -> str:
        """Protocol label for printer columns: `srt-listener`, `rtmps`, ..."""
        return f"srt-{self.mode}" if self.scheme == "srt" else self.scheme


def parse(url: str) -> Destination:
    """Validate a destination URL and return what the renderer and status need."""
    _check_text(url)
    scheme, sep, _ = url.partition("://")
    if not sep or scheme not in SCHEMES:
        raise URLError(f"url scheme must be one of {', '.join(SCHEMES)} (lowercase)")
    scheme_l: Scheme = scheme
    parts, port = _split(url)
    if scheme_l not in OPAQUE_QUERY and "#" in url:
        raise URLError(f"{scheme_l} url cannot contain '#': FFmpeg would read it as part of its options")
    query = _query(scheme_l, parts.query)
    mode = _mode(scheme_l, query)
    host = parts.hostname or ""
    _check_host(host, listener=mode == "listener")
    if port is None:
        port = DEFAULT_PORTS.get(scheme_l, 0)
    if not 1 <= port <= 65535:
        raise URLError(f"{scheme_l} url needs a port between 1 and 65535")
    if mode == "listener" and port < 1024:
        raise URLError("srt listener url needs a port between 1024 and 65535 (the pod runs as non-root)")
    if mode == "listener" and port == OUTPUT_METRICS_PORT:
        raise URLError(f"srt listener url cannot use port {OUTPUT_METRICS_PORT}: the output pod serves metrics there")
    if scheme_l in ("udp", "srt") and parts.username is not None:
        raise URLError(f"{scheme_l} url cannot carry user credentials")
    return Destination(scheme_l, host, port, mode, mask(url))


def _check_text(url: str) -> None:
    """Length and characters: control, invisible (bidi, zero-width) and separator
    characters reach printer columns as terminal escapes or spoofed text."""
    if len(url) > MAX_URL:
        raise URLError(f"url must be at most {MAX_URL} characters")
    for char in url:
        if char in SHELL_CHARS or unicodedata.category(char)[0] in ("C", "Z"):
            raise URLError("url contains whitespace, control or shell characters, or invisible formatting characters")


def _split(url: str) -> tuple[SplitResult, int | None]:
    """urlsplit, and its port; urllib's messages quote the URL, so they are replaced."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise URLError("url is malformed: Invalid IPv6 URL (brackets around the host do not match)") from None
    try:
        return parts, parts.port
    except ValueError:
        raise URLError("url is malformed: its port must be a number between 1 and 65535") from None


def mask(url: str) -> str:
    """The URL with credentials, stream keys and secret query values replaced by ***.

    Never raises: it is also used on strings that failed to parse, for messages.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    scheme = parts.scheme.lower()
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    path = parts.path
    if scheme in ("rtmp", "rtmps"):
        segments = path.split("/")
        # /app/key: everything after the application name is the stream key.
        path = "/".join(s if i < 2 or not s else MASK for i, s in enumerate(segments))
    query = _mask_query(scheme, parts.query)
    out = f"{scheme}://{netloc}{path}"
    if query:
        out += f"?{query}"
    if parts.fragment:
        out += f"#{MASK}"
    return out


def _mask_query(scheme: str, query: str) -> str:
    if not query:
        return ""
    if scheme in OPAQUE_QUERY and "=" not in query:
        return MASK
    pairs = parse_qsl(query, keep_blank_values=True)
    # RTMP/RTSP query strings belong to the resource (platforms put key parts there):
    # every value is masked. SRT/UDP options are shown unless their name says secret.
    opaque = scheme in OPAQUE_QUERY
    return "&".join(
        f"{quote(k, safe='')}={MASK if opaque or SECRET_PARAM.search(k) else quote(v, safe='')}" for k, v in pairs
    )


def _query(scheme: Scheme, query: str) -> dict[str, str]:
    """Options FFmpeg reads from an srt/udp URL, read as FFmpeg does: no %-decoding."""
    if scheme in OPAQUE_QUERY:
        return {}
    if "%" in query or "+" in query:
        raise URLError(f"{scheme} url query cannot use %-encoding or '+': FFmpeg reads it literally")
    pairs = [tuple(part.split("=", 1)) if "=" in part else (part, "") for part in query.split("&") if part]
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise URLError(f"{scheme} url repeats a query parameter; FFmpeg and streamdist would read different values")
    allowed = ALLOWED_QUERY[scheme]
    if set(keys) - allowed:
        raise URLError(f"{scheme} url has an unsupported query parameter; allowed: {', '.join(sorted(allowed))}")
    options: dict[str, str] = dict(pairs)  # type: ignore[arg-type]
    _check_values(scheme, options)
    return options


def _check_values(scheme: Scheme, options: dict[str, str]) -> None:
    """Option values in the ranges libsrt (and FFmpeg's udp protocol) accept."""
    ranges = SRT_RANGES if scheme == "srt" else UDP_RANGES
    for name, (low, high) in ranges.items():
        if name in options and not _in_range(options[name], low, high):
            bounds = f"{low if low is not None else ''}..{high if high is not None else ''}"
            raise URLError(f"{scheme} url option {name} must be an integer in {bounds}")
    if scheme != "srt":
        return
    if "pbkeylen" in options and options["pbkeylen"] not in SRT_PBKEYLEN:
        raise URLError("srt url option pbkeylen must be 0, 16, 24 or 32")
    if "passphrase" in options and len(options["passphrase"]) not in SRT_PASSPHRASE:
        raise URLError("srt url option passphrase must be 10 to 79 characters (libsrt's rule)")
    if len(options.get("streamid", "")) > SRT_STREAMID_MAX:
        raise URLError(f"srt url option streamid must be at most {SRT_STREAMID_MAX} characters")


def _in_range(value: str, low: int | None, high: int | None) -> bool:
    if not re.fullmatch(r"-?[0-9]{1,12}", value):
        return False
    number = int(value)
    return (low is None or number >= low) and (high is None or number <= high)


def _mode(scheme: Scheme, query: dict[str, str]) -> Literal["caller", "listener"] | None:
    if scheme != "srt":
        return None
    mode = query.get("mode", "caller")
    if mode not in ("caller", "listener"):
        raise URLError("srt url mode must be caller or listener")
    return mode  # type: ignore[return-value]


def _check_host(host: str, *, listener: bool) -> None:
    if not host:
        if listener:
            return
        raise URLError("url needs a host")
    if ip_literal(host) is not None:
        return
    if NUMERIC_HOST.fullmatch(host):
        # 2852039166, 0251.0376.0251.0376, 0x7f.1, 127.1: getaddrinfo reads them as
        # addresses that no rule here would recognise.
        raise URLError("url host is a number in a form other than a canonical dotted-quad IPv4 or an IPv6 address")
    if not HOST_RE.fullmatch(host):
        raise URLError("url host is not a valid DNS name or IP address (use punycode for international names)")


def ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host is, written canonically (dotted quad, or IPv6 with an optional
    zone); None when it is not an IP literal."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv4Address) and str(address) != host:
        return None
    return address


def destination_digest(url: str) -> str:
    """Where a valid URL sends, as a digest: the scheme and host without case, the
    port with its default, the rest as written (two such URLs reach one destination)."""
    parts = urlsplit(url)
    port = parts.port or DEFAULT_PORTS.get(parts.scheme, 0)
    where = "\0".join((parts.scheme, (parts.hostname or "").lower(), str(port), parts.path, parts.query))
    return hashlib.sha256(where.encode()).hexdigest()[:16]
