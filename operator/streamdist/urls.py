"""Destination URLs: parse every form an output may take, and mask what is secret.

A destination URL often *is* the secret (an RTMP stream key, an SRT passphrase), so the
masked form is the only one that may reach status, Events, logs or printer columns.
Parsing is strict on purpose: FFmpeg reads options out of SRT and UDP query strings,
so an unknown query parameter is refused rather than handed to FFmpeg.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, quote, urlsplit

Scheme = Literal["srt", "rtmp", "rtmps", "udp", "rtsp"]
SCHEMES: tuple[Scheme, ...] = ("srt", "rtmp", "rtmps", "udp", "rtsp")
MASK = "***"

DEFAULT_PORTS = {"rtmp": 1935, "rtmps": 443, "rtsp": 554}

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
HOST_RE = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?$")
FORBIDDEN_CHARS = re.compile(r"[\x00-\x20\x7f\\\"'`$;|<>]")


class URLError(ValueError):
    """A destination a user wrote that streamdist cannot send to; message is safe to show."""


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
    if FORBIDDEN_CHARS.search(url):
        raise URLError("url contains whitespace, control or shell characters")
    scheme, sep, _ = url.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise URLError(f"url scheme must be one of {', '.join(SCHEMES)}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise URLError(f"url is malformed: {_safe_reason(exc)}") from None
    scheme_l: Scheme = scheme.lower()  # type: ignore[assignment]
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
    if scheme_l in ("udp", "srt") and parts.username is not None:
        raise URLError(f"{scheme_l} url cannot carry user credentials")
    return Destination(scheme_l, host, port, mode, mask(url))


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
    unknown = sorted(set(keys) - allowed)
    if unknown:
        listed = ", ".join(repr(k[:40]) for k in unknown[:5])
        allowed_text = ", ".join(sorted(allowed))
        raise URLError(f"{scheme} url has unsupported query parameter(s) {listed}; allowed: {allowed_text}")
    return dict(pairs)  # type: ignore[arg-type]


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
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    if not HOST_RE.match(host):
        raise URLError("url host is not a valid DNS name or IP address (use punycode for international names)")


def _safe_reason(exc: Exception) -> str:
    """urllib's messages quote the offending text; keep only the generic part."""
    text = str(exc)
    return text.split(":")[0][:80] if text else "invalid"
