"""Pure rendering: models in, Kubernetes manifests and MediaMTX config out.

Nothing here talks to a cluster or reads the environment, so `streamdist render`,
the unit tests and the media tests see exactly what the operator applies.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import yaml
from jinja2 import Environment, PackageLoader, StrictUndefined

from . import urls
from .models import API_VERSION, StreamInput, StreamOutput, backup_shares_listener
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
# The FFmpeg image's entrypoint (images/ffmpeg/streamdist-ffmpeg): FFmpeg with every
# occurrence of its last argument (the destination) in its log replaced by this env's value.
FFMPEG_COMMAND = "streamdist-ffmpeg"
APPLIED_DIGEST_ANNOTATION = "streamdist.io/applied-digest"
# The same image's backup switch (images/ffmpeg/streamdist_switch.py).
SWITCH_COMMAND = "streamdist-switch"
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


def output_labels(input_name: str, output_name: str) -> dict[str, str]:
    return {
        **MANAGED_BY,
        "app.kubernetes.io/name": "ffmpeg",
        "streamdist.io/input": input_name,
        "streamdist.io/output": output_name,
    }


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


def ingests(inp: StreamInput, port: int) -> list[Ingest]:
    """The primary (on the reader path itself unless there is a backup) and the backup."""
    name, backup = inp.metadata.name, inp.spec.backup
    if backup is None:
        return [Ingest("primary", inp.spec.protocol, port, name, True)]
    shares = backup_shares_listener(inp.spec.protocol, backup.protocol)
    backup_port = port if shares else backup.port
    assert backup_port is not None  # the model requires it when the listener is not shared
    return [
        Ingest("primary", inp.spec.protocol, port, f"{name}-primary", True),
        Ingest("backup", backup.protocol, backup_port, f"{name}-backup", not shares),
    ]


def _server_port(all_ingests: list[Ingest], protocol: str) -> int | None:
    return next((i.port for i in all_ingests if i.protocol == protocol), None)


def mediamtx_config(inp: StreamInput, port: int) -> str:
    """The mediamtx.yml the router of this input runs with."""
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
            slate=inp.spec.slate,
        )
    )


def render_input(inp: StreamInput, port: int, settings: Settings) -> list[dict[str, Any]]:
    """ConfigMap, Deployment and the two Services of one input's MediaMTX router."""
    meta = inp.metadata
    config = mediamtx_config(inp, port)
    passphrase = inp.spec.passphrase_secret_ref
    values = {
        "name": meta.name,
        "namespace": meta.namespace,
        "labels": input_labels(meta.name),
        "selector": input_labels(meta.name),
        "owner": owner_reference("StreamInput", meta.name, meta.uid),
        "config": config,
        "config_hash": digest(config),
        "image": settings.mediamtx_image,
        "pull_policy": settings.image_pull_policy,
        "passphrase_ref": passphrase.model_dump() if passphrase else None,
        "ingests": [i for i in ingests(inp, port) if i.listener],
        "switch": _switch_container(inp, settings),
        "service_type": inp.spec.service.type,
        "rtsp_port": RTSP_PORT,
        "api_port": API_PORT,
        "metrics_port": METRICS_PORT,
        "pod_security": POD_SECURITY,
        "container_security": CONTAINER_SECURITY,
    }
    docs = (
        _docs("input-configmap.yaml.j2", **values)
        + _docs("input-deployment.yaml.j2", **values)
        + _docs("input-services.yaml.j2", **values)
    )
    # What was applied, on the Deployment (which the operator indexes): after a restart
    # an unchanged input is adopted as it is instead of applied again.
    docs[1]["metadata"].setdefault("annotations", {})[APPLIED_DIGEST_ANNOTATION] = digest(docs)
    return docs


def applied_digest(docs: list[dict[str, Any]]) -> str:
    """The digest render_input put on an input's Deployment."""
    return str(docs[1]["metadata"]["annotations"][APPLIED_DIGEST_ANNOTATION])


def _switch_container(inp: StreamInput, settings: Settings) -> dict[str, Any] | None:
    """The backup switch: a sidecar (FFmpeg image) relaying the live source into the
    readers' path, MediaMTX having no switch of its own (images/ffmpeg/streamdist_switch.py)."""
    if inp.spec.backup is None:
        return None
    return {
        "image": settings.ffmpeg_image,
        "command": [SWITCH_COMMAND],
        "args": [
            "--path", inp.metadata.name,
            "--api", f"http://127.0.0.1:{API_PORT}",
            "--rtsp", f"rtsp://127.0.0.1:{RTSP_PORT}",
        ],
    }  # fmt: skip


def input_read_url(namespace: str, input_name: str) -> str:
    """Where every output of an input pulls from, inside the cluster."""
    return f"rtsp://{input_name}.{namespace}.svc:{RTSP_PORT}/{input_name}"


def ingest_url(protocol: str, host: str, port: int, path: str) -> str:
    """The address an encoder sends to, in the form its protocol needs."""
    if protocol == "srt":
        return f"srt://{host}:{port}?streamid=publish:{path}"
    if protocol in ("rtmp", "rtsp"):
        return f"{protocol}://{host}:{port}/{path}"
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
        # A listener waits for its receiver as long as it takes; a caller gives up.
        return ["-f", "mpegts"] if dest.listener else ["-f", "mpegts", *timeout]
    # UDP has no peer to fail: a dead destination is never noticed (by design of UDP).
    return ["-f", "mpegts"]


def ffmpeg_args(source: str, destination_arg: str, plan: OutputPlan) -> list[str]:
    """FFmpeg's argv (after the program name): pull RTSP/TCP, copy video, push.

    The destination is one argv element, the last (the image's masking entrypoint
    relies on that); when it comes from a Secret it is the Kubernetes env reference
    $(STREAMDIST_DESTINATION), expanded by the kubelet, so the key is in no manifest.
    """
    return [
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "warning",
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
        destination_arg,
    ]


def _output_env(dest: urls.Destination, secret_ref: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The destination from its Secret, and the masked form the entrypoint shows instead."""
    env: list[dict[str, Any]] = [{"name": MASKED_DESTINATION_ENV, "value": dest.masked}]
    if secret_ref:
        env.insert(0, {"name": DESTINATION_ENV, "valueFrom": {"secretKeyRef": secret_ref}})
    return env


def pod_name(out: StreamOutput, revision: str) -> str:
    return f"{out.metadata.name}-{revision}"


def render_output(out: StreamOutput, plan: OutputPlan, settings: Settings) -> list[dict[str, Any]]:
    """The FFmpeg Pod of one output, plus its Service when it is an SRT listener."""
    meta = out.metadata
    secret_ref = out.spec.url_from.secret_key_ref.model_dump() if out.spec.url_from else None
    destination_arg = f"$({DESTINATION_ENV})" if secret_ref else str(out.spec.url)
    args = ffmpeg_args(input_read_url(meta.namespace, out.spec.input), destination_arg, plan)
    listen_port = plan.destination.port if plan.destination.listener else None
    revision = digest(
        {
            "command": FFMPEG_COMMAND,
            "args": args,
            "secret": secret_ref,
            "image": settings.ffmpeg_image,
            "replacement": plan.replacement,
            "secretVersion": plan.secret_version,
        }
    )
    labels = output_labels(out.spec.input, meta.name)
    values = {
        "name": meta.name,
        "namespace": meta.namespace,
        "pod_name": pod_name(out, revision),
        "labels": labels,
        "selector": {"streamdist.io/output": meta.name, **MANAGED_BY},
        "annotations": {"streamdist.io/revision": revision},
        "owner": owner_reference("StreamOutput", meta.name, meta.uid),
        "image": settings.ffmpeg_image,
        "pull_policy": settings.image_pull_policy,
        "command": [FFMPEG_COMMAND],
        "args": args,
        "env": _output_env(plan.destination, secret_ref),
        "listen_port": listen_port,
        "service_type": out.spec.service.type,
        "pod_security": POD_SECURITY,
        "container_security": CONTAINER_SECURITY,
    }
    docs = _docs("output-pod.yaml.j2", **values)
    if listen_port:
        docs += _docs("output-service.yaml.j2", **values)
    return docs
