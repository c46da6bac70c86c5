"""Pydantic models of the two kinds, mirroring crds/*.yaml.

The CRD schema rejects most bad specs at `kubectl apply`; these models exist so the
operator, `streamdist render` and the tests all work on typed values with the same
defaults the CRD applies, and so a spec that slipped past the schema (an old CRD, a
render of a hand-written file) still fails with a readable message instead of a
KeyError deep in a template.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

GROUP = "streamdist.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

InputProtocol = Literal["udp", "srt", "rtmp", "rtsp"]
ServiceType = Literal["ClusterIP", "NodePort", "LoadBalancer"]

# Kubernetes object names used as label values and Service names: a DNS-1035 label.
# Shorter than 63 so that derived names ("<input>-ingest", "<output>-<hash>") fit too.
NAME_RE = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
# What the API server takes for a namespace (DNS-1123 label), a Secret's or ConfigMap's
# name (DNS-1123 subdomain) and a data key: checked with fullmatch, never `$` (which
# lets a trailing newline through) before any template sees them.
NAMESPACE_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
DATA_KEY = r"[-._a-zA-Z0-9]+"
# The router's own ports: an ingest on one of them would collide with RTSP, API or metrics.
ROUTER_PORTS = frozenset({8554, 9997, 9998})
MAX_INPUT_NAME = 56
MAX_OUTPUT_NAME = 54
MIN_PORT = 1024
MAX_PORT = 65535


class _Model(BaseModel):
    """Base: camelCase field names as in the CRD, unknown fields rejected."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class SecretKeyRef(_Model):
    name: str = Field(min_length=1, max_length=253)
    key: str = Field(min_length=1, max_length=253)

    @model_validator(mode="after")
    def _names(self) -> SecretKeyRef:
        if not re.fullmatch(SUBDOMAIN, self.name):
            raise ValueError("name must be a DNS-1123 subdomain (lowercase letters, digits, '-' and '.')")
        if not re.fullmatch(DATA_KEY, self.key):
            raise ValueError("key must be letters, digits, '-', '_' and '.'")
        return self


class ServiceSpec(_Model):
    type: ServiceType = "ClusterIP"


class ConfigMapKeyRef(SecretKeyRef):
    """A ConfigMap's key: the same naming rules as a Secret's."""


class ImageFrom(_Model):
    config_map_key_ref: ConfigMapKeyRef = Field(alias="configMapKeyRef")


PixelFormat = Literal["yuv420p", "yuvj420p", "yuv422p", "yuv444p", "yuv420p10le"]
VideoProfile = Literal["baseline", "main", "high", "high10", "high422", "high444", "main10"]
HEX_COLOR = r"^#[0-9a-fA-F]{6}$"
# Printable text only: the slate draws it (a control character would not show).
SLATE_TEXT = r"^[^\x00-\x1f\x7f]*$"
FRAME_RATE = r"^[0-9]{1,6}(\.[0-9]{1,3}|/[0-9]{1,5})?$"


class Fallback(_Model):
    """The slate readers get while no source is on air.

    The tracks (``video``, ``audio``, ``sampleRate``, ``channelCount``) must be those
    the source publishes, so that a reader's stream keeps its shape across a switch.
    With a backup the switch makes the slate in the source's own format, learned from
    its tracks; ``width``/``height`` (and ``frameRate``, ``pixelFormat``, ``profile``)
    name that format before any source has published. ``color``, ``text`` and
    ``imageFrom`` say what it shows. Without a backup MediaMTX's built-in slate plays
    ("STREAM IS OFFLINE", 1920x1080), and those fields are refused.
    """

    video: Literal["H264", "H265"] = "H264"
    audio: Literal["MPEG4Audio", "none"] = "MPEG4Audio"
    sample_rate: int = Field(default=48000, alias="sampleRate", ge=8000, le=96000)
    channel_count: int = Field(default=2, alias="channelCount", ge=1, le=8)
    width: int | None = Field(default=None, ge=16, le=7680)
    height: int | None = Field(default=None, ge=16, le=4320)
    frame_rate: str = Field(default="25", alias="frameRate", pattern=FRAME_RATE)
    pixel_format: PixelFormat = Field(default="yuv420p", alias="pixelFormat")
    profile: VideoProfile | None = None
    color: str = Field(default="#000000", pattern=HEX_COLOR)
    text: str | None = Field(default=None, max_length=200, pattern=SLATE_TEXT)
    image_from: ImageFrom | None = Field(default=None, alias="imageFrom")

    @model_validator(mode="after")
    def _size(self) -> Fallback:
        if (self.width is None) != (self.height is None):
            raise ValueError("fallback.width and fallback.height go together: both or neither")
        return self

    @property
    def switch_fields(self) -> list[str]:
        """The fields only the backup switch's slate honours, as given in the spec."""
        return [alias for name, alias in SWITCH_FIELDS.items() if name in self.model_fields_set]


SWITCH_FIELDS = {
    "width": "width", "height": "height", "frame_rate": "frameRate", "pixel_format": "pixelFormat",
    "profile": "profile", "color": "color", "text": "text", "image_from": "imageFrom",
}  # fmt: skip


class Backup(_Model):
    """A second ingest the router puts on air while the primary is gone.

    Same protocol as the primary (except udp): the same listener, path ``<input>-backup``,
    so no port. Otherwise a listener of its own, on ``port``.
    """

    protocol: InputProtocol = "udp"
    port: int | None = Field(default=None, ge=MIN_PORT, le=MAX_PORT)
    # Silence after which the source on air counts as lost and the switch cuts away.
    loss_after_ms: int = Field(default=300, alias="lossAfterMs", ge=50, le=10000)


# Ingests that carry a publisher's credential: every one but UDP (MPEG-TS has no place for it).
CREDENTIAL_PROTOCOLS = frozenset({"srt", "rtmp", "rtsp"})
MAX_ALLOWED_SOURCES = 32


class StreamInputSpec(_Model):
    protocol: InputProtocol = "udp"
    port: int | None = Field(default=None, ge=MIN_PORT, le=MAX_PORT)
    service: ServiceSpec = ServiceSpec()
    max_outputs: int = Field(default=20, ge=1, le=200, alias="maxOutputs")
    passphrase_secret_ref: SecretKeyRef | None = Field(default=None, alias="passphraseSecretRef")
    publish_secret_ref: SecretKeyRef | None = Field(default=None, alias="publishSecretRef")
    allowed_sources: tuple[str, ...] = Field(default=(), alias="allowedSources", max_length=MAX_ALLOWED_SOURCES)
    fallback: Fallback | None = None
    backup: Backup | None = None

    @property
    def protocols(self) -> frozenset[str]:
        """Every protocol a source may arrive with: the primary's and the backup's."""
        return frozenset({self.protocol, *([self.backup.protocol] if self.backup else [])})

    @model_validator(mode="after")
    def _ports(self) -> StreamInputSpec:
        ports = [self.port, self.backup.port if self.backup else None]
        if any(p in ROUTER_PORTS for p in ports):
            raise ValueError("port and backup.port must not be 8554, 9997 or 9998 (the router's RTSP, API and metrics)")
        return self

    @model_validator(mode="after")
    def _cidrs(self) -> StreamInputSpec:
        for cidr in self.allowed_sources:
            try:
                if "/" not in cidr:
                    raise ValueError
                ipaddress.ip_network(cidr, strict=True)
            except ValueError:
                raise ValueError("allowedSources must list CIDRs (address/prefix, host bits zero)") from None
        return self

    @model_validator(mode="after")
    def _passphrase_needs_srt(self) -> StreamInputSpec:
        uses_srt = self.protocol == "srt" or (self.backup is not None and self.backup.protocol == "srt")
        if self.passphrase_secret_ref is not None and not uses_srt:
            raise ValueError("passphraseSecretRef is only meaningful with protocol srt (primary or backup)")
        return self

    @model_validator(mode="after")
    def _backup_port(self) -> StreamInputSpec:
        if self.backup is None:
            return self
        if backup_shares_listener(self.protocol, self.backup.protocol):
            if self.backup.port is not None:
                raise ValueError(
                    f"backup.port must be unset: a {self.backup.protocol} backup shares the primary's listener"
                )
        elif self.backup.port is None:
            raise ValueError(f"backup.port is required: a {self.backup.protocol} backup needs a listener of its own")
        elif self.backup.port == self.port:
            raise ValueError("backup.port must differ from port")
        return self

    @model_validator(mode="after")
    def _switch_slate(self) -> StreamInputSpec:
        if self.fallback is not None and self.backup is None and self.fallback.switch_fields:
            raise ValueError(
                "fallback width, height, frameRate, pixelFormat, profile, color, text and imageFrom need spec.backup: "
                "the backup switch makes that slate (without a backup MediaMTX's built-in slate plays)"
            )
        return self

    @model_validator(mode="after")
    def _publisher_credential(self) -> StreamInputSpec:
        if self.protocols & CREDENTIAL_PROTOCOLS and self.publish_secret_ref is None:
            raise ValueError(
                "publishSecretRef is required: srt, rtmp and rtsp ingests take only credentialed publishers"
            )
        if self.publish_secret_ref is not None and not self.protocols & CREDENTIAL_PROTOCOLS:
            raise ValueError("publishSecretRef needs an srt, rtmp or rtsp ingest (udp carries no credential)")
        return self

    @property
    def slate(self) -> Fallback | None:
        """The offline slate's tracks: a backup needs one too, to switch without dropping readers."""
        return self.fallback or (Fallback() if self.backup else None)


def backup_shares_listener(primary: str, backup: str) -> bool:
    """SRT, RTMP and RTSP tell paths apart on one listener; UDP MPEG-TS cannot."""
    return primary == backup and backup != "udp"


class CAFrom(_Model):
    config_map_key_ref: ConfigMapKeyRef = Field(alias="configMapKeyRef")


class TLSSpec(_Model):
    """RTMPS only: the server's certificate is verified against the system CAs, or the
    CA bundle of `caFrom`, unless `insecureSkipVerify`."""

    insecure_skip_verify: bool = Field(default=False, alias="insecureSkipVerify")
    ca_from: CAFrom | None = Field(default=None, alias="caFrom")

    @model_validator(mode="after")
    def _one(self) -> TLSSpec:
        if self.insecure_skip_verify and self.ca_from is not None:
            raise ValueError("tls.caFrom and tls.insecureSkipVerify exclude each other")
        return self


class UrlFrom(_Model):
    secret_key_ref: SecretKeyRef = Field(alias="secretKeyRef")


class ReconnectSpec(_Model):
    delay_seconds: int = Field(default=2, ge=1, le=300, alias="delaySeconds")
    max_delay_seconds: int = Field(default=30, ge=1, le=3600, alias="maxDelaySeconds")

    @model_validator(mode="after")
    def _ordered(self) -> ReconnectSpec:
        if self.max_delay_seconds < self.delay_seconds:
            raise ValueError("reconnect.maxDelaySeconds must be >= reconnect.delaySeconds")
        return self


class Window(_Model):
    """One window of spec.schedule: one-off (start, end) or recurring (cron, duration,
    timeZone). Only the types here: schedule.compile_schedule checks the rules, so a
    window that slipped past the CRD is refused as InvalidSchedule, not InvalidSpec."""

    start: str | None = Field(default=None, max_length=64)
    end: str | None = Field(default=None, max_length=64)
    cron: str | None = Field(default=None, max_length=128)
    duration: str | None = Field(default=None, max_length=32)
    time_zone: str | None = Field(default=None, alias="timeZone", max_length=64)


class Schedule(_Model):
    """When the output is on air (schedule.py): outside every window it has no pod."""

    windows: tuple[Window, ...] = ()
    lead_seconds: int = Field(default=0, alias="leadSeconds")


class StreamOutputSpec(_Model):
    input: str = Field(min_length=1, max_length=MAX_INPUT_NAME)
    url: str | None = Field(default=None, min_length=1, max_length=2048)
    url_from: UrlFrom | None = Field(default=None, alias="urlFrom")
    suspend: bool = False
    service: ServiceSpec = ServiceSpec()
    reconnect: ReconnectSpec = ReconnectSpec()
    tls: TLSSpec = TLSSpec()
    schedule: Schedule | None = None

    @model_validator(mode="after")
    def _one_destination(self) -> StreamOutputSpec:
        if (self.url is None) == (self.url_from is None):
            raise ValueError("exactly one of url and urlFrom must be set")
        return self


class Meta(_Model):
    """The part of metadata the operator reads."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)
    name: str
    namespace: str = "default"
    uid: str = ""
    generation: int = 0

    @model_validator(mode="after")
    def _namespace(self) -> Meta:
        if not NAMESPACE_RE.fullmatch(self.namespace):
            raise ValueError("metadata.namespace must be a DNS-1123 label of at most 63 characters")
        return self


class StreamInput(_Model):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)
    metadata: Meta
    spec: StreamInputSpec = StreamInputSpec()

    @model_validator(mode="after")
    def _name(self) -> StreamInput:
        _check_name(self.metadata.name, MAX_INPUT_NAME)
        return self


class StreamOutput(_Model):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)
    metadata: Meta
    spec: StreamOutputSpec

    @model_validator(mode="after")
    def _name(self) -> StreamOutput:
        _check_name(self.metadata.name, MAX_OUTPUT_NAME)
        return self


def _check_name(name: str, limit: int) -> None:
    if len(name) > limit or not NAME_RE.fullmatch(name):
        raise ValueError(
            f"metadata.name must be a DNS-1035 label of at most {limit} characters "
            "(lowercase letters, digits and '-', starting with a letter)"
        )


def parse_input(body: dict[str, Any]) -> StreamInput:
    """Parse a StreamInput object as the API server (or a YAML file) gives it."""
    return StreamInput.model_validate(_plain(body))


def parse_output(body: dict[str, Any]) -> StreamOutput:
    """Parse a StreamOutput object as the API server (or a YAML file) gives it."""
    return StreamOutput.model_validate(_plain(body))


def _plain(body: Any) -> dict[str, Any]:
    """kopf hands over read-only mappings; pydantic wants plain dicts."""
    return {
        "metadata": dict(body.get("metadata") or {}),
        "spec": _to_dict(body.get("spec") or {}),
    }


def _to_dict(value: Any) -> Any:
    if hasattr(value, "items"):
        return {k: _to_dict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_dict(v) for v in value]
    return value


def explain(error: ValidationError) -> str:
    """One line a person can act on, from a pydantic error (no input values echoed)."""
    parts = []
    for item in error.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in item["loc"] if p not in ("spec",))
        msg = item["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)
