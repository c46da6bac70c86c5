"""Pure rendering: models in, Kubernetes manifests and MediaMTX config out.

Nothing here talks to a cluster or reads the environment, so `streamdist render`,
the unit tests and the media tests see exactly what the operator applies.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import yaml
from jinja2 import Environment, PackageLoader, StrictUndefined

from . import credentials, switch_render, urls
from .credentials import Publisher, RouterCredentials
from .models import API_VERSION, CREDENTIAL_PROTOCOLS, StreamInput, StreamOutput, TLSSpec, backup_shares_listener
from .settings import Settings

MANAGED_BY = {"app.kubernetes.io/managed-by": "streamdist"}
RTSP_PORT = 8554
API_PORT = 9997
METRICS_PORT = 9998
# Config keys of the pinned MediaMTX release (v1.20): `rtspTransports` (was `protocols`)
# and the `udp+mpegts://` source scheme (was `udp://`).
RTSP_TRANSPORTS_KEY = "rtspTransports"
UDP_SOURCE_SCHEME = "udp+mpegts"
DESTINATION_ENV = "STREAMDIST_DESTINATION"
# The read credential of an output's input, from the input's credentials Secret.
READ_USER_ENV = "STREAMDIST_READ_USER"
READ_PASSWORD_ENV = "STREAMDIST_READ_PASSWORD"
# host:port of the input's router: the entrypoint waits for it before starting FFmpeg.
INPUT_ADDRESS_ENV = "STREAMDIST_INPUT_ADDRESS"
CREDENTIALS_SUFFIX = "-credentials"
# `streamdist render` has no cluster and no installation key: it derives the router
# credentials it shows from this fixed key, which no running operator uses.
RENDER_KEY = "streamdist-render-only"
# The order of authInternalUsers in the rendered config: MediaMTX's env overrides
# address the publisher's entry by its index.
PUBLISHER_INDEX = 2
LOOPBACK_NETS = ("127.0.0.1/32", "::1/128")
# The FFmpeg image's entrypoint (images/ffmpeg/streamdist-ffmpeg): FFmpeg with every
# occurrence of its last argument (the destination) in its log replaced by this env's value.
FFMPEG_COMMAND = "streamdist-ffmpeg"
APPLIED_DIGEST_ANNOTATION = "streamdist.io/applied-digest"
# On an output's pod: the resourceVersion of the destination's Secret it was made with.
SECRET_VERSION_ANNOTATION = "streamdist.io/secret-version"
# The same image's backup switch (images/ffmpeg/streamdist_switch.py).
SWITCH_COMMAND = switch_render.COMMAND
MASKED_DESTINATION_ENV = "STREAMDIST_MASKED_DESTINATION"
# Seconds FFmpeg waits on a silent socket before it gives up and exits (so the kubelet
# restarts it). Microseconds, as FFmpeg's -timeout/-rw_timeout expect.
IO_TIMEOUT_US = 5_000_000
# How long a (re)started output probes its RTSP input, in microseconds. The SDP already
# describes every track, but the FLV and RTSP muxers refuse a video track without its
# size, which FFmpeg learns from the first video packets. Measured with the recovery
# bench's harness (six restarts each): the first byte came 0.70 or 2.16 s after FFmpeg's
# start at 0.5 s, 0.46-0.51 s at 0.25 s; at 0.1 s an MPEG-TS ingest often had sent no
# video yet and the FLV/RTSP muxers failed.
ANALYZE_US = 250_000
# Every output pod serves FFmpeg's progress (and libsrt's link statistics) in
# Prometheus' format on this port (the image's entrypoint, streamdist-ffmpeg).
TELEMETRY_PORT = urls.OUTPUT_METRICS_PORT
TELEMETRY_ENV = "STREAMDIST_TELEMETRY_LISTEN"
# FFmpeg writes its -progress key=value blocks to fd 3, which the entrypoint reads,
# every PROGRESS_PERIOD seconds; -nostats leaves its stderr to warnings and errors.
PROGRESS_ARGS = ("-nostats", "-progress", "pipe:3", "-stats_period", "2")
# SRT destinations: FFmpeg muxes MPEG-TS into a pipe; libsrt's srt-live-transmit (Debian
# srt-tools) sends it on and reports the link's statistics (JSON lines, totals, every
# SRT_STATS_PACKETS packets sent); it exits when the link breaks (-a no: the kubelet's
# restart is the reconnect). The entrypoint splits the argv at "|".
SRT_RELAY = "srt-live-transmit"
SRT_STATS_PACKETS = 250
SRT_RELAY_ARGS = (SRT_RELAY, "-a", "no", "-s", str(SRT_STATS_PACKETS), "-f", "-pf", "json", "file://con")
FLV_AUDIO = frozenset({"aac", "mpeg-4 audio", "mp3", "mpeg-1/2 audio layer 3"})

POD_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


@cache
def _env() -> Environment:
    return Environment(
        loader=PackageLoader("streamdist", "templates"),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def ui_page() -> str:
    """The control room's page (its forms' fields written once, by a macro)."""
    return _env().get_template("ui-index.html.j2").render()


# libyaml's safe loader: the same documents as yaml.SafeLoader, an order of magnitude
# faster (every reconcile renders; measured 8 ms -> 0.6 ms per output pod).
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _docs(template: str, **values: Any) -> list[dict[str, Any]]:
    text = _env().get_template(template).render(**values)
    return [d for d in yaml.load_all(text, Loader=_LOADER) if d]


def digest(value: Any, length: int = 10) -> str:
    """Stable short hash of any JSON-able value (names pods, marks config versions)."""
    raw = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(raw).hexdigest()[:length]


def owner_reference(kind: str, name: str, uid: str) -> dict[str, Any]:
    """Children are garbage-collected with their StreamInput/StreamOutput."""
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def input_labels(name: str) -> dict[str, str]:
    return {**MANAGED_BY, "app.kubernetes.io/name": "mediamtx", "streamdist.io/input": name}


def output_labels_of(input_name: str) -> dict[str, str]:
    """What every output pod of an input carries (the router's NetworkPolicy selects it)."""
    return {**MANAGED_BY, "app.kubernetes.io/name": "ffmpeg", "streamdist.io/input": input_name}


def output_labels(input_name: str, output_name: str) -> dict[str, str]:
    return {**output_labels_of(input_name), "streamdist.io/output": output_name}


# --- inputs -------------------------------------------------------------------


def ingest_protocol(protocol: str) -> str:
    """Kubernetes Service protocol of an ingest: SRT rides on UDP, RTMP/RTSP on TCP."""
    return "UDP" if protocol in ("udp", "srt") else "TCP"


@dataclass(frozen=True)
class Ingest:
    """One way a source comes in: the primary, and optionally the backup."""

    role: Literal["primary", "backup"]
    protocol: str
    port: int  # the Service port (and MediaMTX's listener, except RTSP's shared 8554)
    path: str  # the MediaMTX path the source publishes to or is pulled into
    listener: bool  # has a Service/container port of its own

    @property
    def container_port(self) -> int:
        """RTSP publishers share MediaMTX's RTSP server with the readers."""
        return RTSP_PORT if self.protocol == "rtsp" else self.port

    @property
    def service_protocol(self) -> str:
        return ingest_protocol(self.protocol)

    @property
    def port_name(self) -> str:
        return "ingest" if self.role == "primary" else "backup"


def primary_path(name: str, has_backup: bool) -> str:
    """The primary source's MediaMTX path: the readers' path itself, unless a backup
    switch feeds the readers' path (then the primary publishes to its own)."""
    return f"{name}-primary" if has_backup else name


def ingests(inp: StreamInput, port: int) -> list[Ingest]:
    """The primary (on the reader path itself unless there is a backup) and the backup."""
    name, backup = inp.metadata.name, inp.spec.backup
    if backup is None:
        return [Ingest("primary", inp.spec.protocol, port, name, True)]
    shares = backup_shares_listener(inp.spec.protocol, backup.protocol)
    backup_port = port if shares else backup.port
    assert backup_port is not None  # the model requires it when the listener is not shared
    return [
        Ingest("primary", inp.spec.protocol, port, primary_path(name, True), True),
        Ingest("backup", backup.protocol, backup_port, f"{name}-backup", not shares),
    ]


def _server_port(all_ingests: list[Ingest], protocol: str) -> int | None:
    return next((i.port for i in all_ingests if i.protocol == protocol), None)


@dataclass(frozen=True)
class RouterPlan:
    """What an input's router needs beyond its spec: the credentials it accepts."""

    credentials: RouterCredentials
    publisher: Publisher | None = None  # from spec.publishSecretRef
    srt_passphrase: str | None = None  # from spec.passphraseSecretRef

    @classmethod
    def for_render(cls, inp: StreamInput) -> RouterPlan:
        """Stand-ins for `streamdist render` and tests: derived from RENDER_KEY."""
        meta = inp.metadata
        creds = credentials.for_input(RENDER_KEY, meta.namespace, meta.name, meta.uid)
        publisher = Publisher("publisher", "from-publishSecretRef") if inp.spec.publish_secret_ref else None
        passphrase = "from-passphraseSecretRef" if inp.spec.passphrase_secret_ref else None
        return cls(creds, publisher, passphrase)


def _udp_source(inp: StreamInput) -> str:
    """MediaMTX filters a UDP source by one address only: a single-host allowedSources."""
    if len(inp.spec.allowed_sources) != 1:
        return ""
    net = ipaddress.ip_network(inp.spec.allowed_sources[0])
    return f"?source={net.network_address}" if net.num_addresses == 1 else ""


def _users(inp: StreamInput, plan: RouterPlan, all_ingests: list[Ingest], monitor: bool) -> list[dict[str, Any]]:
    """authInternalUsers: the operator, the readers, the publisher, the switch and the
    confidence monitor (both sidecars: no credential, the pod's loopback only).

    Passwords are MediaMTX `sha256:` hashes; the publisher's user and password come
    from env (the input's credentials Secret), the file holding unguessable stand-ins.
    """
    creds, name = plan.credentials, inp.metadata.name
    users: list[dict[str, Any]] = [
        {"user": creds.api_user, "pass": credentials.hashed(creds.api_password), "ips": [],
         "permissions": [{"action": "api"}, {"action": "metrics"}]},
        {"user": creds.read_user, "pass": credentials.hashed(creds.read_password), "ips": [],
         "permissions": [{"action": "read", "path": name}]},
    ]  # fmt: skip
    published = [i.path for i in all_ingests if i.protocol in CREDENTIAL_PROTOCOLS]
    if published:
        stand_in = credentials.hashed(creds.api_password + "/publisher")
        users.append({"user": stand_in, "pass": stand_in, "ips": list(inp.spec.allowed_sources),
                      "permissions": [{"action": "publish", "path": p} for p in published]})  # fmt: skip
    local: list[dict[str, str]] = []
    if inp.spec.backup:
        local += [{"action": "api"}, {"action": "publish", "path": name},
                  *({"action": "read", "path": p} for p in (i.path for i in all_ingests))]  # fmt: skip
    if monitor:
        local.append({"action": "read", "path": name})  # the readers' path, as outputs see it
    if local:
        users.append({"user": "any", "pass": "", "ips": list(LOOPBACK_NETS), "permissions": local})
    return users


def mediamtx_config(inp: StreamInput, port: int, plan: RouterPlan | None = None, monitor: bool = False) -> str:
    """The mediamtx.yml the router of this input runs with (``monitor``: with a
    confidence monitor sidecar reading the readers' path)."""
    plan = plan or RouterPlan.for_render(inp)
    all_ingests = ingests(inp, port)
    return (
        _env()
        .get_template("mediamtx.yml.j2")
        .render(
            name=inp.metadata.name,
            namespace=inp.metadata.namespace,
            ingests=all_ingests,
            backup=inp.spec.backup,
            rtmp_port=_server_port(all_ingests, "rtmp"),
            srt_port=_server_port(all_ingests, "srt"),
            rtsp_port=RTSP_PORT,
            api_port=API_PORT,
            metrics_port=METRICS_PORT,
            rtsp_transports_key=RTSP_TRANSPORTS_KEY,
            udp_scheme=UDP_SOURCE_SCHEME,
            udp_source=_udp_source(inp),
            slate=inp.spec.slate,
            users=_users(inp, plan, all_ingests, monitor),
        )
    )


def credentials_secret_name(input_name: str) -> str:
    return f"{input_name}{CREDENTIALS_SUFFIX}"


def _credentials_data(inp: StreamInput, plan: RouterPlan) -> dict[str, str]:
    """The input's credentials Secret: read by its output pods and its router only."""
    creds = plan.credentials
    data = {credentials.READ_USER_KEY: creds.read_user, credentials.READ_PASSWORD_KEY: creds.read_password}
    if "srt" in inp.spec.protocols:
        data[credentials.SRT_READ_PASSPHRASE_KEY] = creds.srt_read_passphrase
    if plan.publisher:
        data[credentials.PUBLISH_USER_KEY] = plan.publisher.user
        data[credentials.PUBLISH_PASSWORD_KEY] = plan.publisher.password
    if plan.srt_passphrase:
        data[credentials.SRT_PASSPHRASE_KEY] = plan.srt_passphrase
    return data


def _env_path(path: str) -> str:
    """A path's name as MediaMTX's env overrides spell it (it lowercases it back)."""
    return path.upper()


def _router_env(inp: StreamInput, plan: RouterPlan, secret: str) -> list[dict[str, Any]]:
    """MediaMTX env overrides, every value from the input's credentials Secret."""

    def ref(name: str, key: str) -> dict[str, Any]:
        return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}

    env = []
    if plan.publisher:
        env += [ref(f"MTX_AUTHINTERNALUSERS_{PUBLISHER_INDEX}_USER", credentials.PUBLISH_USER_KEY),
                ref(f"MTX_AUTHINTERNALUSERS_{PUBLISHER_INDEX}_PASS", credentials.PUBLISH_PASSWORD_KEY)]  # fmt: skip
    srt_paths = [i.path for i in ingests(inp, 0) if i.protocol == "srt"]
    if plan.srt_passphrase:
        key = credentials.SRT_PASSPHRASE_KEY
        env += [ref(f"MTX_PATHS_{_env_path(p)}_SRTPUBLISHPASSPHRASE", key) for p in srt_paths]
    if srt_paths:
        env.append(ref(f"MTX_PATHS_{_env_path(inp.metadata.name)}_SRTREADPASSPHRASE",
                       credentials.SRT_READ_PASSPHRASE_KEY))  # fmt: skip
    return env


def render_input(
    inp: StreamInput, port: int, settings: Settings, plan: RouterPlan | None = None
) -> list[dict[str, Any]]:
    """Secret, ConfigMap, NetworkPolicy, Deployment and the two Services of one input."""
    plan = plan or RouterPlan.for_render(inp)
    values = _input_values(inp, port, settings, plan)
    # Apply order: what the router reads and what guards it exist before it starts.
    docs = [*_docs("input-secret.yaml.j2", **values), *_docs("input-configmap.yaml.j2", **values)]
    if settings.network_policies:
        docs += _docs("input-networkpolicy.yaml.j2", **values, **_policy_values(inp, settings, ingests(inp, port)))
    docs += [*_docs("input-deployment.yaml.j2", **values), *_docs("input-services.yaml.j2", **values)]
    # What was applied, on the Deployment (which the operator indexes): after a restart
    # an unchanged input is adopted as it is instead of applied again.
    find(docs, "Deployment")["metadata"].setdefault("annotations", {})[APPLIED_DIGEST_ANNOTATION] = digest(docs)
    return docs


def _input_values(inp: StreamInput, port: int, settings: Settings, plan: RouterPlan) -> dict[str, Any]:
    """What the input templates are rendered from."""
    meta = inp.metadata
    config = mediamtx_config(inp, port, plan, settings.confidence_monitor)
    secret_data = _credentials_data(inp, plan)
    return {
        "name": meta.name,
        "namespace": meta.namespace,
        "labels": input_labels(meta.name),
        "selector": input_labels(meta.name),
        "owner": owner_reference("StreamInput", meta.name, meta.uid),
        "config": config,
        "config_hash": digest(config),
        "credentials_hash": digest(secret_data),
        "secret_name": credentials_secret_name(meta.name),
        "secret_data": secret_data,
        "env": _router_env(inp, plan, credentials_secret_name(meta.name)),
        "image": settings.mediamtx_image,
        "pull_policy": settings.image_pull_policy,
        "ingests": [i for i in ingests(inp, port) if i.listener],
        "switch": _switch_container(inp, settings),
        "switch_volumes": switch_render.volumes(inp),
        "monitor": _monitor_container(inp, settings),
        "state_port": switch_render.STATE_PORT if inp.spec.backup else None,
        "monitor_port": switch_render.MONITOR_PORT if settings.confidence_monitor else None,
        "config_files": {switch_render.CREDENTIAL_KEY: switch_render.credential_file(plan.credentials)}
        if inp.spec.backup or settings.confidence_monitor
        else {},
        "service_type": inp.spec.service.type,
        "local_traffic": bool(inp.spec.allowed_sources) and inp.spec.service.type != "ClusterIP",
        "rtsp_port": RTSP_PORT,
        "api_port": API_PORT,
        "metrics_port": METRICS_PORT,
        "pod_security": POD_SECURITY,
        "container_security": CONTAINER_SECURITY,
    }


def _policy_values(inp: StreamInput, settings: Settings, all_ingests: list[Ingest]) -> dict[str, Any]:
    """Who may reach the router: its outputs (RTSP), the operator (API, metrics), and
    publishers (the ingest ports; allowedSources, or everyone)."""
    ingest_ports = [{"port": i.container_port, "protocol": i.service_protocol} for i in all_ingests if i.listener]
    if any(i.protocol == "rtsp" for i in all_ingests):
        ingest_ports.append({"port": RTSP_PORT, "protocol": "TCP"})  # RTSP publishers share the readers' port
    sources = [{"ipBlock": {"cidr": c}} for c in inp.spec.allowed_sources]
    operator = None
    if settings.operator_namespace:
        operator = {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": settings.operator_namespace}},
            "podSelector": {"matchLabels": dict(settings.operator_labels)},
        }
    return {
        "readers": output_labels_of(inp.metadata.name),
        "operator_peer": operator,
        "operator_ports": [API_PORT, METRICS_PORT, *([switch_render.STATE_PORT] if inp.spec.backup else []),
                           *([switch_render.MONITOR_PORT] if settings.confidence_monitor else [])],
        "ingest_ports": [dict(p) for p in {tuple(sorted(p.items())): p for p in ingest_ports}.values()],
        "sources": sources,
    }


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The one rendered document of `kind` (and `name`, where a kind comes twice)."""
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    if len(found) != 1:
        raise LookupError(f"rendered {len(found)} {kind} documents named {name or 'any'}")
    return found[0]


def applied_digest(docs: list[dict[str, Any]]) -> str:
    """The digest render_input put on an input's Deployment."""
    return str(find(docs, "Deployment")["metadata"]["annotations"][APPLIED_DIGEST_ANNOTATION])


def input_services(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The in-cluster Service and the ingest Service of a rendered input."""
    services = [d for d in docs if d["kind"] == "Service"]
    inside = next(s for s in services if not s["metadata"]["name"].endswith("-ingest"))
    ingest = next(s for s in services if s["metadata"]["name"].endswith("-ingest"))
    return inside, ingest


def _switch_container(inp: StreamInput, settings: Settings) -> dict[str, Any] | None:
    """The backup switch: a sidecar (FFmpeg image) putting the live source on the
    readers' path, MediaMTX having no switch of its own (switch_render)."""
    return switch_render.container(inp, settings.ffmpeg_image, API_PORT, RTSP_PORT)


def _monitor_container(inp: StreamInput, settings: Settings) -> dict[str, Any] | None:
    """The confidence monitor: a sidecar (FFmpeg image) watching the readers' path for
    black, frozen and silent (switch_render.monitor_args); None while switched off."""
    if not settings.confidence_monitor:
        return None
    return {
        "image": settings.ffmpeg_image,
        "command": ["/bin/sh", "-c", switch_render.MONITOR_SUPERVISOR, switch_render.MONITOR_COMMAND],
        "args": switch_render.monitor_args(inp, RTSP_PORT, settings.confidence_hold_seconds),
        "port": switch_render.MONITOR_PORT,
        "mounts": [{"name": switch_render.CONFIG_VOLUME, "mountPath": switch_render.CONFIG_DIR, "readOnly": True}],
    }


def input_read_url(namespace: str, input_name: str) -> str:
    """Where every output of an input pulls from, inside the cluster; the read credential
    is expanded by the kubelet from the pod's env (the rendered pod holds no secret)."""
    userinfo = f"$({READ_USER_ENV}):$({READ_PASSWORD_ENV})@"
    return f"rtsp://{userinfo}{input_name}.{namespace}.svc:{RTSP_PORT}/{input_name}"


def ingest_url(protocol: str, host: str, port: int, path: str, publisher: Publisher | None = None) -> str:
    """The address an encoder sends to, in the form its protocol needs; with the
    publisher's credential where one is given (status shows the form without it)."""
    user, password = (publisher.user, publisher.password) if publisher else ("", "")
    if protocol == "srt":
        return f"srt://{host}:{port}?streamid=publish:{path}" + (f":{user}:{password}" if publisher else "")
    if protocol == "rtmp":
        return f"rtmp://{host}:{port}/{path}" + (f"?user={user}&pass={password}" if publisher else "")
    if protocol == "rtsp":
        return f"rtsp://{f'{user}:{password}@' if publisher else ''}{host}:{port}/{path}"
    return f"udp://{host}:{port}"


# --- outputs ------------------------------------------------------------------


@dataclass(frozen=True)
class OutputPlan:
    """What an output needs beyond its spec: resolved destination and revision inputs."""

    destination: urls.Destination
    # Codec names of the input's audio tracks when known; decides copy vs AAC for FLV.
    input_audio: tuple[str, ...] = ()
    # Bumped by the operator each time it replaces a pod held too long in back-off.
    replacement: int = 0
    # resourceVersion of the Secret behind urlFrom: a rotated key means a new pod.
    secret_version: str = ""


def audio_codec_args(dest: urls.Destination, input_audio: tuple[str, ...]) -> list[str]:
    """FLV carries only AAC or MP3: transcode audio for RTMP(S) unless it already is."""
    if dest.scheme not in ("rtmp", "rtmps"):
        return ["-c:a", "copy"]
    if input_audio and all(codec.lower() in FLV_AUDIO for codec in input_audio):
        return ["-c:a", "copy"]
    return ["-c:a", "aac", "-b:a", "160k", "-ar", "48000"]


def muxer_args(dest: urls.Destination) -> list[str]:
    """Muxer and protocol options per destination scheme.

    -rw_timeout makes FFmpeg give up on a destination that stops accepting data
    (a dead RTMP server otherwise hangs it forever). It must not be -timeout on an
    rtmp URL: that puts FFmpeg's RTMP client into listen mode.
    """
    timeout = ["-rw_timeout", str(IO_TIMEOUT_US)]
    if dest.scheme == "rtsp":
        # The RTSP muxer ignores -rw_timeout; its socket timeout is -timeout.
        return ["-f", "rtsp", "-rtsp_transport", "tcp", "-timeout", str(IO_TIMEOUT_US)]
    if dest.scheme in ("rtmp", "rtmps"):
        return ["-f", "flv", "-flvflags", "no_duration_filesize", *timeout]
    if dest.scheme == "srt":
        # into the pipe to srt-live-transmit, which owns the SRT socket (relay_args)
        return ["-f", "mpegts"]
    # UDP has no peer to fail: a dead destination is never noticed (by design of UDP).
    return ["-f", "mpegts"]


SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"  # Debian's ca-certificates, in the FFmpeg image
CA_DIR = "/etc/streamdist/ca"
CA_FILE = "ca.crt"


def tls_args(dest: urls.Destination, tls: TLSSpec) -> list[str]:
    """RTMPS verifies the server's certificate (FFmpeg's default is not to)."""
    if dest.scheme != "rtmps":
        return []
    if tls.insecure_skip_verify:
        return ["-tls_verify", "0"]
    return ["-tls_verify", "1", "-ca_file", f"{CA_DIR}/{CA_FILE}" if tls.ca_from else SYSTEM_CA]


def ffmpeg_args(source: str, destination_arg: str, plan: OutputPlan, tls: Sequence[str] = ()) -> list[str]:
    """The entrypoint's argv (after its name): FFmpeg pulling RTSP/TCP, copying video and
    pushing; for SRT, FFmpeg into a pipe, then "|" and srt-live-transmit (relay_args).

    The destination is one argv element, the last (the image's masking entrypoint
    relies on that); when it comes from a Secret it is the Kubernetes env reference
    $(STREAMDIST_DESTINATION), expanded by the kubelet, so the key is in no manifest.
    """
    srt = plan.destination.scheme == "srt"
    return [
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "warning",
        *PROGRESS_ARGS,
        "-rtsp_transport",
        "tcp",
        "-timeout",
        str(IO_TIMEOUT_US),
        "-analyzeduration",
        str(ANALYZE_US),
        "-i",
        source,
        "-map",
        "0:v?",
        "-map",
        "0:a?",
        "-c:v",
        "copy",
        *audio_codec_args(plan.destination, plan.input_audio),
        *muxer_args(plan.destination),
        *tls,
        *(relay_args(destination_arg) if srt else [destination_arg]),
    ]


def relay_args(destination_arg: str) -> list[str]:
    """FFmpeg's output is its stdout; srt-live-transmit reads it and sends it to the
    destination (in FFmpeg's option dialect: the entrypoint translates it for libsrt)."""
    return ["pipe:1", "|", *SRT_RELAY_ARGS, destination_arg]


def _output_env(out: StreamOutput, dest: urls.Destination, secret_ref: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The input's read credential and the destination from their Secrets, and the
    masked destination the entrypoint shows instead of the real one."""
    read = credentials_secret_name(out.spec.input)
    env: list[dict[str, Any]] = [
        {"name": READ_USER_ENV, "valueFrom": {"secretKeyRef": {"name": read, "key": credentials.READ_USER_KEY}}},
        {"name": READ_PASSWORD_ENV,
         "valueFrom": {"secretKeyRef": {"name": read, "key": credentials.READ_PASSWORD_KEY}}},
    ]  # fmt: skip
    if secret_ref:
        env.append({"name": DESTINATION_ENV, "valueFrom": {"secretKeyRef": secret_ref}})
    address = f"{out.spec.input}.{out.metadata.namespace}.svc:{RTSP_PORT}"
    return [*env, {"name": MASKED_DESTINATION_ENV, "value": dest.masked}, {"name": INPUT_ADDRESS_ENV, "value": address},
            {"name": TELEMETRY_ENV, "value": f"0.0.0.0:{TELEMETRY_PORT}"}]  # fmt: skip


def pod_name(out: StreamOutput, revision: str) -> str:
    return f"{out.metadata.name}-{revision}"


def render_output(out: StreamOutput, plan: OutputPlan, settings: Settings) -> list[dict[str, Any]]:
    """The FFmpeg Pod of one output, plus its Service when it is an SRT listener."""
    meta = out.metadata
    secret_ref = out.spec.url_from.secret_key_ref.model_dump() if out.spec.url_from else None
    destination_arg = f"$({DESTINATION_ENV})" if secret_ref else str(out.spec.url)
    tls = tls_args(plan.destination, out.spec.tls)
    args = ffmpeg_args(input_read_url(meta.namespace, out.spec.input), destination_arg, plan, tls)
    ca_ref = out.spec.tls.ca_from.config_map_key_ref.model_dump() if out.spec.tls.ca_from and tls else None
    listen_port = plan.destination.port if plan.destination.listener else None
    revision = digest({"command": FFMPEG_COMMAND, "args": args, "secret": secret_ref, "image": settings.ffmpeg_image,
                       "replacement": plan.replacement, "secretVersion": plan.secret_version,
                       **({"ca": ca_ref} if ca_ref else {})})  # fmt: skip
    labels = output_labels(out.spec.input, meta.name)
    values = {
        "name": meta.name,
        "namespace": meta.namespace,
        "pod_name": pod_name(out, revision),
        "labels": labels,
        "selector": {"streamdist.io/output": meta.name, **MANAGED_BY},
        "annotations": {
            "streamdist.io/revision": revision,
            **({SECRET_VERSION_ANNOTATION: plan.secret_version} if secret_ref else {}),
        },
        "owner": owner_reference("StreamOutput", meta.name, meta.uid),
        "image": settings.ffmpeg_image,
        "pull_policy": settings.image_pull_policy,
        "command": [FFMPEG_COMMAND],
        "args": args,
        "env": _output_env(out, plan.destination, secret_ref),
        "ca": {"configMap": ca_ref, "dir": CA_DIR, "file": CA_FILE} if ca_ref else None,
        "listen_port": listen_port,
        "telemetry_port": TELEMETRY_PORT,
        "service_type": out.spec.service.type,
        "pod_security": POD_SECURITY,
        "container_security": CONTAINER_SECURITY,
    }
    docs = _docs("output-pod.yaml.j2", **values)
    if listen_port:
        docs += _docs("output-service.yaml.j2", **values)
    return docs
