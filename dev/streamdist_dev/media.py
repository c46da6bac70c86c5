"""Reusable pieces for the media tests: real MediaMTX and real FFmpeg on loopback.

Everything here starts real processes, so everything here is bounded: each wait
has a timeout, each process belongs to a ``ProcessGroup`` that stops it (SIGTERM,
then SIGKILL after a grace period) when the test ends, and an ``atexit`` hook stops
whatever is left if a test run is interrupted.

Typical use::

    with ProcessGroup() as group:
        api, rtsp = free_tcp_port(), free_tcp_port()
        mtx = start_mediamtx(mediamtx_config(api_port=api, rtsp_port=rtsp,
                                             paths={"cam": {}}), tmp_path, group=group)
        start_source("rtsp", mtx.rtsp_url("cam"), group=group)
        mtx.wait_path_ready("cam", timeout=15)
        record(mtx.rtsp_url("cam"), tmp_path / "out.ts", seconds=6, group=group).wait(30)
        probe = ffprobe_streams(tmp_path / "out.ts")

Only 127.0.0.1 / ::1 are ever used.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import random
import shlex
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from streamdist.mediamtx import MediaMTXClient, PathSample
from streamdist_dev import wait
from streamdist_dev.procs import reap, spawn

REPO_ROOT = Path(__file__).resolve().parents[2]

LOOPBACK = "127.0.0.1"
# FFmpeg as the sources and recorders run it: no banner, no stdin, warnings only, no progress.
FFMPEG = ("ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "warning", "-nostats")

# Test pattern defaults: 2 s GOP at 25 fps, as the design asks of sources.
DEFAULT_FPS = 25
DEFAULT_GOP_SECONDS = 2
DEFAULT_SIZE = "640x360"


# ------------------------------------------------------------------ versions, tools


def read_versions_env(path: Path | None = None) -> dict[str, str]:
    """The pins in hack/versions.env (KEY=VALUE lines; comments ignored)."""
    path = path or REPO_ROOT / "hack" / "versions.env"
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        out[key.strip()] = value.strip().strip('"').strip("'")
    return out


def mediamtx_binary() -> Path | None:
    """Path of the pinned MediaMTX built by hack/build-mediamtx.sh, or None.

    ``$MEDIAMTX_BIN`` overrides; otherwise the cache location the build script uses.
    """
    env = os.environ.get("MEDIAMTX_BIN")
    if env:
        return Path(env) if Path(env).is_file() else None
    version = read_versions_env().get("MEDIAMTX_VERSION", "")
    cache = Path(os.environ.get("STREAMDIST_CACHE", Path.home() / ".cache" / "streamdist"))
    candidate = cache / "bin" / f"mediamtx-{version}" / "mediamtx"
    return candidate if candidate.is_file() else None


def missing_tools() -> list[str]:
    """Which of the media test prerequisites are absent (for pytest skip reasons)."""
    missing = [t for t in ("ffmpeg", "ffprobe", "openssl") if shutil.which(t) is None]
    if mediamtx_binary() is None:
        missing.append("mediamtx (run hack/build-mediamtx.sh)")
    return missing


def require_media_tools() -> None:
    """Skip the calling test when tools are missing, or fail when
    ``STREAMDIST_REQUIRE_MEDIA=1`` (CI sets it, so a missing install step cannot pass
    as a green skip)."""
    import pytest

    missing = missing_tools()
    if not missing:
        return
    msg = "media tools missing: " + ", ".join(missing) + " (hack/install-debs.sh, hack/build-mediamtx.sh)"
    if os.environ.get("STREAMDIST_REQUIRE_MEDIA") == "1":
        pytest.fail(msg)
    pytest.skip(msg)


# ------------------------------------------------------------------------- ports

_handed_out: set[tuple[str, int]] = set()
_ports_lock = threading.Lock()
_rng = random.Random(os.getpid() ^ time.time_ns())


def _port_range() -> tuple[int, int]:
    """Ports to hand out: below the kernel's ephemeral range.

    A port taken from the ephemeral range (what ``bind(0)`` returns) can be grabbed,
    between allocation and the server's bind, as the source port of any outgoing
    connection, e.g. FFmpeg dialling a server: that made MediaMTX fail with "address
    already in use" in parallel runs. Ports below the range are never used that way.
    """
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    if low > 12000:
        return 10000, low - 1
    return high + 1, 65535


def _free_port(kind: int, host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    label = "tcp" if kind == socket.SOCK_STREAM else "udp"
    first, last = _port_range()
    with _ports_lock:
        for _ in range(500):
            port = _rng.randint(first, last)
            if (label, port) in _handed_out:
                continue
            with socket.socket(family, kind) as s:
                try:
                    s.bind((host, port))
                except OSError:
                    continue
            _handed_out.add((label, port))
            return port
    raise RuntimeError(f"no free {label} port in {first}-{last}")


def free_tcp_port(host: str = LOOPBACK) -> int:
    """A TCP port free on ``host`` now, not handed out before in this process and
    outside the ephemeral range (so no client connection can take it meanwhile).
    Another process may still bind it first: start the server soon after asking.
    """
    return _free_port(socket.SOCK_STREAM, host)


def free_udp_port(host: str = LOOPBACK) -> int:
    """A UDP port free on ``host`` now (SRT and MPEG-TS/UDP listen on UDP)."""
    return _free_port(socket.SOCK_DGRAM, host)


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.2, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns a truthy value; TimeoutError after ``timeout``
    (``streamdist_dev.wait.wait_for`` in the argument order the media tests use)."""
    return wait.wait_for(what, predicate, timeout, interval)


def wait_tcp_listening(port: int, host: str = LOOPBACK, timeout: float = 10.0) -> None:
    """Wait until something accepts TCP connections on host:port."""

    def probe() -> bool:
        with socket.create_connection((host, port), timeout=0.5):
            return True

    wait_for(probe, timeout, what=f"tcp {host}:{port} to listen")


# --------------------------------------------------------------------- processes


class ManagedProcess:
    """A child process with its output in a log file and a bounded stop.

    Each child runs in its own session so that stopping it also stops anything it
    spawned. ``stop()`` sends SIGTERM (FFmpeg and MediaMTX both finish cleanly on
    it: FFmpeg writes its trailer), waits ``grace`` seconds, then SIGKILLs.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.started_at = time.monotonic()
        # no PR_SET_PDEATHSIG: it fires when the starting thread ends, and tests start
        # these from thread pools; stop(), stop_all() and the atexit hook stop them
        self.popen = spawn(self.argv, log_path, cwd=cwd, env={**os.environ, **(env or {})}, death_signal=None,
                           append=False)
        # When it exited, to the millisecond, without anyone polling (exit-time tests).
        self.exited_at: float | None = None
        threading.Thread(target=self._reap, name=f"reap-{name}", daemon=True).start()
        _live.add(self)

    def _reap(self) -> None:
        self.popen.wait()
        self.exited_at = time.monotonic()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float) -> int:
        """Wait for exit up to ``timeout`` s; TimeoutError (process left running) after."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{self.name} still running after {timeout}s; log:\n{self.tail()}") from None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def signal(self, sig: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)

    def stop(self, grace: float = 5.0) -> int | None:
        """Stop the process (and its session): SIGTERM, then SIGKILL after ``grace``."""
        reap(self.popen, grace, group=True)
        _live.discard(self)
        return self.popen.poll()

    def __repr__(self) -> str:
        return f"<ManagedProcess {self.name} pid={self.pid} rc={self.returncode}>"


_live: set[ManagedProcess] = set()


@atexit.register
def _stop_leftovers() -> None:
    for proc in list(_live):
        proc.stop(grace=2)


class ProcessGroup:
    """Context manager owning every process started through it; stops them all,
    newest first, on exit, even when the test failed."""

    def __init__(self, logdir: Path | None = None) -> None:
        self.procs: list[ManagedProcess] = []
        self.logdir = logdir
        self._tmp: Path | None = None

    def _log_path(self, name: str) -> Path:
        if self.logdir is None:
            import tempfile

            self._tmp = Path(tempfile.mkdtemp(prefix="streamdist-media-"))
            self.logdir = self._tmp
        n = sum(1 for p in self.procs if p.name == name)
        return self.logdir / (f"{name}.log" if n == 0 else f"{name}.{n}.log")

    def start(
        self, name: str, argv: Sequence[str], cwd: Path | None = None, env: Mapping[str, str] | None = None
    ) -> ManagedProcess:
        proc = ManagedProcess(name, argv, self._log_path(name), cwd=cwd, env=env)
        self.procs.append(proc)
        return proc

    def adopt(self, proc: ManagedProcess) -> ManagedProcess:
        self.procs.append(proc)
        return proc

    def stop_all(self, grace: float = 5.0) -> None:
        for proc in reversed(self.procs):
            proc.stop(grace=grace)

    def logs(self) -> str:
        """Every process's tail, for assertion messages."""
        return "\n".join(f"--- {p.name} (rc={p.returncode}) ---\n{p.tail()}" for p in self.procs)

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


_default_group = ProcessGroup()
atexit.register(_default_group.stop_all)


# ---------------------------------------------------------------------- MediaMTX

# Every server MediaMTX v1.20 has, with the switch that turns it off. The control API,
# metrics, pprof and playback are already off by default; hls, webrtc, moq (QUIC on
# UDP 8893, with a self-generated cert), srt, rtmp and rtsp are ON by default and
# would each grab fixed ports, colliding between parallel instances.
MEDIAMTX_SERVERS = ("api", "metrics", "pprof", "playback", "rtsp", "rtmp", "hls", "webrtc", "srt", "moq")


def mediamtx_config(
    *,
    api_port: int | None = None,
    rtsp_port: int | None = None,
    rtmp_port: int | None = None,
    rtmps_port: int | None = None,
    srt_port: int | None = None,
    tls_cert: tuple[Path, Path] | None = None,
    paths: Mapping[str, Mapping[str, Any]] | None = None,
    path_defaults: Mapping[str, Any] | None = None,
    log_level: str = "info",
    host: str = LOOPBACK,
) -> dict[str, Any]:
    """A minimal MediaMTX config: only the servers given a port are on, bound to
    ``host``. RTSP uses TCP only, so no UDP RTP/RTCP ports are opened.

    ``rtmps_port`` needs ``tls_cert=(cert, key)``; with both RTMP ports set the RTMP
    server runs with encryption "optional" (plain and TLS side by side).
    """
    cfg: dict[str, Any] = {"logLevel": log_level, "logDestinations": ["stdout"]}
    for server in MEDIAMTX_SERVERS:
        cfg[server] = False
    if api_port:
        cfg.update(api=True, apiAddress=f"{host}:{api_port}")
    if rtsp_port:
        cfg.update(rtsp=True, rtspAddress=f"{host}:{rtsp_port}", rtspTransports=["tcp"], rtspEncryption="no")
    if rtmp_port or rtmps_port:
        cfg["rtmp"] = True
        if rtmps_port:
            if not tls_cert:
                raise ValueError("rtmps_port needs tls_cert=(cert, key)")
            cfg.update(
                rtmpEncryption="optional" if rtmp_port else "strict",
                rtmpsAddress=f"{host}:{rtmps_port}",
                rtmpServerCert=str(tls_cert[0]),
                rtmpServerKey=str(tls_cert[1]),
            )
        else:
            cfg["rtmpEncryption"] = "no"
        if rtmp_port:
            cfg["rtmpAddress"] = f"{host}:{rtmp_port}"
    if srt_port:
        cfg.update(srt=True, srtAddress=f"{host}:{srt_port}")
    if path_defaults:
        cfg["pathDefaults"] = dict(path_defaults)
    cfg["paths"] = {name: dict(conf) for name, conf in (paths or {"all_others": {}}).items()}
    return cfg


def _address_port(addr: str | None) -> int | None:
    if not addr:
        return None
    return int(addr.rsplit(":", 1)[1])


@dataclass
class MediaMTX:
    """A running MediaMTX and where to reach it."""

    process: ManagedProcess
    config: dict[str, Any]
    config_path: Path
    workdir: Path
    host: str = LOOPBACK
    client: MediaMTXClient | None = field(default=None)
    auth: tuple[str, str] | None = None  # the control API's user and password, if it takes one

    def _port(self, key: str) -> int:
        port = _address_port(self.config.get(key))
        if port is None:
            raise ValueError(f"{key} not set in this MediaMTX config")
        return port

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self._port('apiAddress')}"

    def rtsp_url(self, path: str) -> str:
        return f"rtsp://{self.host}:{self._port('rtspAddress')}/{path}"

    def rtmp_url(self, path: str) -> str:
        return f"rtmp://{self.host}:{self._port('rtmpAddress')}/{path}"

    def rtmps_url(self, path: str) -> str:
        return f"rtmps://{self.host}:{self._port('rtmpsAddress')}/{path}"

    def srt_url(self, path: str, mode: str = "publish", passphrase: str | None = None) -> str:
        """SRT caller URL for publishing to / reading from ``path`` (FFmpeg syntax)."""
        query = {"streamid": f"{mode}:{path}", "mode": "caller", "pkt_size": "1316"}
        if passphrase:
            query["passphrase"] = passphrase
        return f"srt://{self.host}:{self._port('srtAddress')}?" + urllib.parse.urlencode(query, safe=":")

    def api(self) -> MediaMTXClient:
        if self.client is None:
            user, password = self.auth or (None, None)
            self.client = MediaMTXClient(self.api_url, timeout=2.0, username=user, password=password)
        return self.client

    def path(self, name: str) -> PathSample | None:
        return self.api().path(name)

    def wait_path_ready(self, name: str, timeout: float = 15.0) -> PathSample:
        """Wait until ``name`` has a ready source with at least one track."""

        def ready() -> PathSample | None:
            if not self.process.alive():
                raise RuntimeError(f"mediamtx exited:\n{self.process.tail()}")
            sample = self.path(name)
            return sample if sample and sample.ready and sample.tracks else None

        try:
            return wait_for(ready, timeout, what=f"path {name!r} ready")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\nmediamtx log:\n{self.process.tail()}") from None

    def stop(self) -> None:
        self.process.stop()

    def __enter__(self) -> MediaMTX:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_mediamtx(
    config: str | Path | Mapping[str, Any],
    workdir: Path,
    *,
    group: ProcessGroup | None = None,
    overrides: Mapping[str, Any] | None = None,
    name: str = "mediamtx",
    timeout: float = 15.0,
    binary: Path | None = None,
) -> MediaMTX:
    """Start MediaMTX with ``config`` (a path to a YAML file, YAML text, or a dict)
    in ``workdir``, and wait until it serves (its API answers, or, with the API off,
    its first TCP listener accepts).

    ``overrides`` are merged at the top level, e.g. to move a rendered config's
    ``apiAddress: :9997`` to a free loopback port. The process is stopped by
    ``group`` (or at interpreter exit).
    """
    binary = binary or mediamtx_binary()
    if binary is None:
        raise FileNotFoundError("mediamtx not built: run hack/build-mediamtx.sh")
    if isinstance(config, Mapping):
        cfg = dict(config)
    elif isinstance(config, Path) or (isinstance(config, str) and "\n" not in config and Path(config).is_file()):
        cfg = yaml.safe_load(Path(config).read_text()) or {}
    else:
        cfg = yaml.safe_load(str(config)) or {}
    if overrides:
        cfg.update(overrides)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / f"{name}.yml"
    config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return launch_mediamtx(config_path, cfg, workdir, group=group, name=name, timeout=timeout, binary=binary)


def launch_mediamtx(
    config_path: Path,
    effective: Mapping[str, Any],
    cwd: Path,
    *,
    env: Mapping[str, str] | None = None,
    group: ProcessGroup | None = None,
    name: str = "mediamtx",
    timeout: float = 15.0,
    binary: Path | None = None,
    auth: tuple[str, str] | None = None,
) -> MediaMTX:
    """Run MediaMTX on an existing config file, as it is (no rewrite), in ``cwd``.

    ``env`` is added to the process environment (MediaMTX reads ``MTX_*`` overrides
    from it). ``effective`` is the configuration MediaMTX ends up with, file plus
    overrides, as a dict: it tells the returned handle where the servers listen.
    Waits until MediaMTX serves; stops it and raises if it exits or times out.
    """
    binary = binary or mediamtx_binary()
    if binary is None:
        raise FileNotFoundError("mediamtx not built: run hack/build-mediamtx.sh")
    cfg = dict(effective)
    cwd = Path(cwd)
    cwd.mkdir(parents=True, exist_ok=True)
    group = group or _default_group
    proc = group.start(name, [str(binary), str(config_path)], cwd=cwd, env=env)
    mtx = MediaMTX(process=proc, config=cfg, config_path=Path(config_path), workdir=cwd, auth=auth)

    def serving() -> bool:
        if not proc.alive():
            raise RuntimeError(f"mediamtx exited with {proc.returncode}:\n{proc.tail()}")
        if cfg.get("api"):
            mtx.api().get_json("/v3/paths/list")
            return True
        for server, key in (("rtsp", "rtspAddress"), ("rtmp", "rtmpAddress")):
            port = _address_port(cfg.get(key)) if cfg.get(server) else None
            if port:
                with socket.create_connection((LOOPBACK, port), timeout=0.5):
                    return True
        return "listener opened" in proc.log_text()

    try:
        wait_for(serving, timeout, interval=0.1, what=f"{name} to serve")
    except (TimeoutError, RuntimeError):
        proc.stop()
        raise
    return mtx


# ------------------------------------------------------------------------ TLS


def make_self_signed_cert(workdir: Path, cn: str = "localhost") -> tuple[Path, Path]:
    """A self-signed certificate and key (RSA 2048, 1 day) made with openssl, for
    RTMPS receivers. Returns (cert, key)."""
    workdir.mkdir(parents=True, exist_ok=True)
    cert, key = workdir / "server.crt", workdir / "server.key"
    if not (cert.exists() and key.exists()):
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-sha256",
                "-nodes",
                "-days",
                "1",
                "-subj",
                f"/CN={cn}",
                "-addext",
                f"subjectAltName=DNS:{cn},IP:127.0.0.1,IP:::1",
                "-keyout",
                str(key),
                "-out",
                str(cert),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
    return cert, key


def make_ca_signed_cert(workdir: Path, cn: str = "localhost") -> tuple[Path, Path, Path]:
    """A test CA and a server certificate it signed (SAN localhost and 127.0.0.1), made
    with openssl. Returns (ca cert, server cert, server key)."""
    workdir.mkdir(parents=True, exist_ok=True)
    ca, ca_key = workdir / "ca.crt", workdir / "ca.key"
    cert, key, csr, ext = workdir / "server.crt", workdir / "server.key", workdir / "server.csr", workdir / "san.ext"

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-sha256", "-nodes", "-days", "1", "-subj", "/CN=streamdist test CA",
            "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-sha256", "-nodes", "-subj", f"/CN={cn}", "-keyout", str(key),
            "-out", str(csr))  # fmt: skip
    ext.write_text(f"subjectAltName=DNS:{cn},IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-days", "1",
            "-sha256", "-extfile", str(ext), "-out", str(cert))  # fmt: skip
    return ca, cert, key


# ---------------------------------------------------------------------- sources

SOURCE_PROTOCOLS = ("udp", "srt", "rtmp", "rtsp")


def pattern_args(
    *,
    audio: str = "aac",
    size: str = DEFAULT_SIZE,
    fps: int = DEFAULT_FPS,
    gop_seconds: float = DEFAULT_GOP_SECONDS,
    video_bitrate: str = "800k",
    duration: float | None = None,
    realtime: bool = True,
) -> list[str]:
    """FFmpeg input+encode arguments for the lavfi test pattern: testsrc2 video in
    H.264 (baseline-friendly, zerolatency, fixed ``gop_seconds`` GOP with no scene-cut
    keyframes) and a 1 kHz sine in AAC or MP2 (``audio="mp2"``: what many broadcast
    MPEG-TS encoders send). ``realtime`` paces input at 1x, as a live encoder does."""
    if audio not in ("aac", "mp2"):
        raise ValueError("audio must be 'aac' or 'mp2'")
    gop = max(1, round(fps * gop_seconds))
    dur = [] if duration is None else ["-t", f"{duration}"]
    re_ = ["-re"] if realtime else []
    return [
        *re_,
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={size}:rate={fps}",
        *re_,
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=1000:sample_rate=48000",
        *dur,
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-tune",
        "zerolatency",
        "-pix_fmt",
        "yuv420p",
        "-g",
        str(gop),
        "-keyint_min",
        str(gop),
        "-sc_threshold",
        "0",
        "-b:v",
        video_bitrate,
        "-maxrate",
        video_bitrate,
        "-bufsize",
        video_bitrate,
        "-c:a",
        audio,
        "-b:a",
        "128k",
        "-ar",
        "48000",
        "-ac",
        "2",
    ]


def source_output_args(protocol: str, url: str, passphrase: str | None = None) -> list[str]:
    """Muxer and URL for publishing to ``url`` over ``protocol``.

    udp: MPEG-TS in 1316-byte datagrams (7 TS packets, the usual IPTV size);
    srt: MPEG-TS, caller mode, optional passphrase; rtmp/rtmps: FLV;
    rtsp: RTSP over TCP (interleaved), so no UDP ports are needed.
    """
    if protocol == "udp":
        sep = "&" if "?" in url else "?"
        return [
            "-f",
            "mpegts",
            "-mpegts_flags",
            "+resend_headers",
            url + ("" if "pkt_size" in url else f"{sep}pkt_size=1316"),
        ]
    if protocol == "srt":
        if passphrase and "passphrase=" not in url:
            sep = "&" if "?" in url else "?"
            url = f"{url}{sep}passphrase={urllib.parse.quote(passphrase)}"
        return ["-f", "mpegts", url]
    if protocol in ("rtmp", "rtmps"):
        return ["-f", "flv", url]
    if protocol == "rtsp":
        return ["-f", "rtsp", "-rtsp_transport", "tcp", url]
    raise ValueError(f"unknown protocol {protocol!r}")


def start_source(
    protocol: str,
    url: str,
    *,
    group: ProcessGroup | None = None,
    audio: str = "aac",
    passphrase: str | None = None,
    duration: float | None = None,
    name: str | None = None,
    extra_output_args: Sequence[str] = (),
    **pattern: Any,
) -> ManagedProcess:
    """Publish the lavfi test pattern to ``url`` over ``protocol`` (udp, srt, rtmp,
    rtmps, rtsp) until stopped (or for ``duration`` seconds)."""
    argv = [
        *FFMPEG,
        *pattern_args(audio=audio, duration=duration, **pattern),
        *extra_output_args,
        *source_output_args(protocol, url, passphrase),
    ]
    return (group or _default_group).start(name or f"source-{protocol}", argv)


# -------------------------------------------------------------------- receivers


def record(
    input_url: str,
    out_file: Path,
    *,
    seconds: float | None = None,
    input_args: Sequence[str] = (),
    group: ProcessGroup | None = None,
    name: str = "recorder",
) -> ManagedProcess:
    """Copy whatever ``input_url`` carries into an MPEG-TS file (no re-encode), for
    ``seconds`` or until stopped. ``input_args`` go before ``-i`` (e.g. rtsp
    ``-rtsp_transport tcp``; these are added for rtsp:// automatically)."""
    pre = list(input_args)
    if input_url.startswith("rtsp") and "-rtsp_transport" not in pre:
        pre = ["-rtsp_transport", "tcp", *pre]
    dur = [] if seconds is None else ["-t", f"{seconds}"]
    argv = [
        *FFMPEG,
        "-y",
        *pre,
        "-i",
        input_url,
        *dur,
        "-map",
        "0",
        "-c",
        "copy",
        "-f",
        "mpegts",
        str(out_file),
    ]
    return (group or _default_group).start(name, argv)


def start_udp_recorder(
    port: int, out_file: Path, *, seconds: float | None = None, group: ProcessGroup | None = None, host: str = LOOPBACK
) -> ManagedProcess:
    """An MPEG-TS/UDP destination: FFmpeg bound to host:port writing a .ts file.

    ``timeout`` (µs) makes it exit 10 s after the last datagram rather than wait
    forever; ``overrun_nonfatal`` keeps it going through bursts."""
    url = f"udp://{host}:{port}?timeout=10000000&overrun_nonfatal=1&fifo_size=1000000"
    return record(
        url,
        out_file,
        seconds=seconds,
        group=group,
        name=f"udp-recorder-{port}",
        input_args=["-analyzeduration", "3000000", "-probesize", "5000000"],
    )


def _srt_uri(host: str, port: int, mode: str, passphrase: str | None, extra: Mapping[str, str] | None = None) -> str:
    q = {"mode": mode, **(extra or {})}
    if passphrase:
        q["passphrase"] = passphrase
    return f"srt://{host}:{port}?" + urllib.parse.urlencode(q, safe=":")


def _slt_recorder(
    uri: str, out_file: Path, seconds: float | None, autoreconnect: bool, name: str, group: ProcessGroup
) -> ManagedProcess:
    """srt-live-transmit from ``uri`` to a file (it writes to stdout: sh redirects)."""
    argv = ["srt-live-transmit", "-q", f"-a:{'yes' if autoreconnect else 'no'}"]
    if seconds is not None:
        argv.append(f"-t:{max(1, round(seconds))}")
    argv += [uri, "file://con"]
    cmd = " ".join(shlex.quote(a) for a in argv) + " > " + shlex.quote(str(out_file))
    return group.start(name, ["sh", "-c", f"exec {cmd}"])


def start_srt_listener_recorder(port: int, out_file: Path, *, tool: str = "ffmpeg", **kw: Any) -> ManagedProcess:
    """Destination of an SRT *caller* output: listens on host:port (UDP) and records
    the MPEG-TS it receives to ``out_file``.

    ``tool="srt-live-transmit"`` uses libsrt's own tool instead of FFmpeg, to check
    an output against an SRT peer that is not FFmpeg; its file is the raw TS.
    ``kw``: passphrase, seconds, group, host (as ``_srt_recorder``)."""
    return _srt_recorder("listener", port, out_file, tool=tool, **kw)


def start_srt_caller_recorder(port: int, out_file: Path, *, tool: str = "srt-live-transmit", **kw: Any) -> ManagedProcess:
    """Client of an SRT *listener* output (``srt://...?mode=listener``): calls
    host:port and records what it is sent.

    The default, srt-live-transmit, keeps re-dialling (``-a:yes``) until the listener
    is up, so the recorder can be started before the output pod; FFmpeg as a caller
    gives up at once when nobody listens yet. ``kw``: passphrase, seconds, streamid,
    group, host (as ``_srt_recorder``)."""
    return _srt_recorder("caller", port, out_file, tool=tool, **kw)


def _srt_recorder(
    mode: str,
    port: int,
    out_file: Path,
    *,
    tool: str,
    passphrase: str | None = None,
    seconds: float | None = None,
    streamid: str | None = None,
    group: ProcessGroup | None = None,
    host: str = LOOPBACK,
) -> ManagedProcess:
    group = group or _default_group
    extra = {"streamid": streamid} if streamid else {}
    if tool == "srt-live-transmit":
        uri = _srt_uri(host, port, mode, passphrase, extra or None)
        return _slt_recorder(uri, out_file, seconds, mode == "caller", f"slt-{mode}-{port}", group)
    # timeout (µs): exit 10 s after the data stops instead of hanging
    url = _srt_uri(host, port, mode, passphrase, {**extra, "timeout": "10000000"})
    return record(url, out_file, seconds=seconds, group=group, name=f"srt-{mode}-{port}")


@dataclass
class ReceiverServer:
    """A second MediaMTX standing in for every pushed destination type: RTMP, RTMPS
    (self-signed), RTSP and SRT. What an output pushed to ``path`` is read back with
    ``record(path, ...)`` (over RTSP from this server)."""

    mediamtx: MediaMTX
    cert: Path
    key: Path
    srt_passphrase: str | None = None

    def rtmp_url(self, path: str) -> str:
        return self.mediamtx.rtmp_url(path)

    def rtmps_url(self, path: str) -> str:
        return self.mediamtx.rtmps_url(path)

    def rtsp_url(self, path: str) -> str:
        return self.mediamtx.rtsp_url(path)

    def srt_url(self, path: str) -> str:
        return self.mediamtx.srt_url(path, "publish", self.srt_passphrase)

    def wait_path_ready(self, path: str, timeout: float = 15.0) -> PathSample:
        return self.mediamtx.wait_path_ready(path, timeout)

    def record(self, path: str, out_file: Path, seconds: float, group: ProcessGroup | None = None) -> ManagedProcess:
        return record(self.rtsp_url(path), out_file, seconds=seconds, group=group, name=f"receiver-read-{path}")

    def stop(self) -> None:
        self.mediamtx.stop()


def start_receiver_server(
    workdir: Path,
    *,
    group: ProcessGroup | None = None,
    srt_passphrase: str | None = None,
    name: str = "receiver",
) -> ReceiverServer:
    """Start a MediaMTX accepting publishes on RTMP, RTMPS, RTSP and SRT (any path)."""
    workdir = Path(workdir)
    cert, key = make_self_signed_cert(workdir / "tls")
    defaults: dict[str, Any] = {}
    if srt_passphrase:
        defaults["srtPublishPassphrase"] = srt_passphrase
    cfg = mediamtx_config(
        api_port=free_tcp_port(),
        rtsp_port=free_tcp_port(),
        rtmp_port=free_tcp_port(),
        rtmps_port=free_tcp_port(),
        srt_port=free_udp_port(),
        tls_cert=(cert, key),
        path_defaults=defaults or None,
    )
    mtx = start_mediamtx(cfg, workdir, group=group, name=name)
    return ReceiverServer(mediamtx=mtx, cert=cert, key=key, srt_passphrase=srt_passphrase)


# ----------------------------------------------------------------------- ffprobe


@dataclass(frozen=True)
class StreamProbe:
    index: int
    codec_type: str
    codec_name: str
    frames: int
    duration: float | None
    width: int | None = None
    height: int | None = None
    sample_rate: int | None = None
    channels: int | None = None


@dataclass(frozen=True)
class ProbeResult:
    streams: tuple[StreamProbe, ...]
    duration: float | None
    format_name: str

    def first(self, codec_type: str) -> StreamProbe | None:
        return next((s for s in self.streams if s.codec_type == codec_type), None)

    @property
    def video(self) -> StreamProbe | None:
        return self.first("video")

    @property
    def audio(self) -> StreamProbe | None:
        return self.first("audio")

    @property
    def codecs(self) -> dict[str, str]:
        """{codec_type: codec_name} of the first stream of each type."""
        out: dict[str, str] = {}
        for s in self.streams:
            out.setdefault(s.codec_type, s.codec_name)
        return out


def _num(value: Any, cast: Callable[[Any], Any]) -> Any:
    try:
        return cast(value) if value not in (None, "N/A", "") else None
    except (TypeError, ValueError):
        return None


def ffprobe_streams(path: Path | str, *, decode: bool = True, timeout: float = 120.0) -> ProbeResult:
    """Codecs, frame counts and durations of a media file (or URL).

    ``decode=True`` counts *decoded* frames (``-count_frames``), which proves the
    stream is decodable, not just muxed; ``decode=False`` counts packets (fast).
    """
    count = ["-count_frames"] if decode else ["-count_packets"]
    entry = "nb_read_frames" if decode else "nb_read_packets"
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            *count,
            "-of",
            "json",
            "-show_entries",
            f"stream=index,codec_type,codec_name,{entry},duration,width,height,sample_rate,channels"
            ":format=duration,format_name",
            str(path),
        ],
        check=True,
        capture_output=True,
        timeout=timeout,
        text=True,
    )
    doc = json.loads(out.stdout or "{}")
    streams = tuple(
        StreamProbe(
            index=int(s.get("index", 0)),
            codec_type=str(s.get("codec_type", "")),
            codec_name=str(s.get("codec_name", "")),
            frames=_num(s.get(entry), int) or 0,
            duration=_num(s.get("duration"), float),
            width=_num(s.get("width"), int),
            height=_num(s.get("height"), int),
            sample_rate=_num(s.get("sample_rate"), int),
            channels=_num(s.get("channels"), int),
        )
        for s in doc.get("streams", [])
    )
    fmt = doc.get("format", {})
    return ProbeResult(
        streams=streams, duration=_num(fmt.get("duration"), float), format_name=str(fmt.get("format_name", ""))
    )


def assert_h264_aac(
    probe: ProbeResult, min_seconds: float = 5.0, fps: int = DEFAULT_FPS, audio_codec: str = "aac"
) -> None:
    """The standard acceptance of a recorded output: H.264 video with at least
    ``min_seconds`` of decoded frames, and decodable audio of ``audio_codec``."""
    video, audio = probe.video, probe.audio
    assert video is not None, f"no video stream: {probe}"
    assert video.codec_name == "h264", f"video codec {video.codec_name}"
    assert video.frames >= int(min_seconds * fps * 0.95), (
        f"{video.frames} video frames < {min_seconds}s at {fps} fps: {probe}"
    )
    assert audio is not None, f"no audio stream: {probe}"
    assert audio.codec_name == audio_codec, f"audio codec {audio.codec_name}"
    # AAC: 1024 samples per frame at 48 kHz = 46.875 frames/s; MP2: 1152 -> 41.67
    per_second = 48000 / (1024 if audio_codec == "aac" else 1152)
    assert audio.frames >= int(min_seconds * per_second * 0.9), f"{audio.frames} audio frames < {min_seconds}s: {probe}"
