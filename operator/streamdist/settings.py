"""Operator settings, read once from the environment the chart sets.

Kept in one frozen object so renderers stay pure: they receive settings as an
argument instead of reading the environment themselves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .destinations import DestinationPolicy

# The official MediaMTX image clusters use; the same release hack/build-mediamtx.sh
# builds for tests (tests/unit/test_settings.py keeps the two in step).
MEDIAMTX_IMAGE = "docker.io/bluenviron/mediamtx:1.20.1"
# No registry publishes the FFmpeg image: hack/build-images.sh builds it under this name
# (images/ffmpeg/Dockerfile's equivalent) and `make demo` loads it into the cluster.
FFMPEG_IMAGE = "localhost/streamdist/ffmpeg:0.1.0"


@dataclass(frozen=True)
class Settings:
    mediamtx_image: str = MEDIAMTX_IMAGE
    ffmpeg_image: str = FFMPEG_IMAGE
    image_pull_policy: str = "IfNotPresent"
    port_min: int = 20000
    port_max: int = 20999
    namespaces: tuple[str, ...] = field(default_factory=tuple)
    # How often unsettled outputs and every input's health are looked at again.
    resync_seconds: float = 5.0
    metrics_port: int = 9090
    # The input thumbnails for those RBAC allows (thumbnails.py); 0 serves none.
    thumbnail_port: int = 8081
    # Read each router's control API for input health. Off where routers are not real
    # (KWOK test clusters): their Service addresses lead nowhere.
    health_poll: bool = True
    # Read every running output pod's metrics (FFmpeg's progress, SRT link statistics)
    # for status.link/rttMs/lossPercent/droppedFrames/speed and Degraded. Off by default
    # where health polling is off (KWOK: pod addresses lead nowhere).
    telemetry: bool = True
    telemetry_seconds: float = 10.0
    # Where output pods serve it (render.TELEMETRY_PORT); another only for the benchmark.
    telemetry_port: int = 9998
    # kopf peering: "" runs standalone; else the peering object's name, our priority
    # and the identity kopf writes our keep-alives under.
    peering: str = ""
    priority: int = 0
    identity: str = ""
    # The kubelet may hold a crashing pod in back-off this much longer than the spec
    # allows before the operator replaces it (scheduling + image start jitter).
    backoff_grace_seconds: float = 3.0
    # The Secret ("namespace/name") holding the installation key every router
    # credential is derived from; created by the operator when missing.
    key_secret: str = "default/streamdist-key"
    # A NetworkPolicy per input (off only where the CNI ignores them).
    network_policies: bool = True
    # A confidence monitor in every router pod (images/ffmpeg/streamdist_confidence.py):
    # black, frozen and silent inputs as conditions and metrics, a thumbnail. On by
    # default (3 % of a core per 1080p30 input, bench/RESULTS.md "confidence monitor").
    confidence_monitor: bool = True
    # Black, frozen or silent this long sets the condition.
    confidence_hold_seconds: float = 5.0
    # Where the operator's own pods run and how they are labelled: the routers'
    # NetworkPolicies let them (and only them, besides outputs) reach the control API.
    # Empty when the operator is not a pod (a host process): then no such rule.
    operator_namespace: str = ""
    operator_labels: tuple[tuple[str, str], ...] = ()
    cluster_domain: str = "cluster.local"
    # The destination policy (destinations.DestinationPolicy): CIDRs and host names
    # refused on top of the defaults, and defaults allowed back.
    destination_deny: tuple[str, ...] = ()
    destination_allow: tuple[str, ...] = ()

    @property
    def destination_policy(self) -> DestinationPolicy:
        return DestinationPolicy(self.destination_deny, self.destination_allow, self.cluster_domain)

    @property
    def port_range(self) -> range:
        return range(self.port_min, self.port_max + 1)


def from_env(env: dict[str, str] | None = None) -> Settings:
    """Settings from STREAMDIST_* variables; anything unset keeps its default."""
    env = dict(os.environ if env is None else env)
    lo, _, hi = env.get("STREAMDIST_PORT_RANGE", "20000-20999").partition("-")
    namespaces = tuple(n.strip() for n in env.get("STREAMDIST_NAMESPACES", "").split(",") if n.strip())
    return Settings(
        mediamtx_image=env.get("STREAMDIST_MEDIAMTX_IMAGE", MEDIAMTX_IMAGE),
        ffmpeg_image=env.get("STREAMDIST_FFMPEG_IMAGE", FFMPEG_IMAGE),
        image_pull_policy=env.get("STREAMDIST_IMAGE_PULL_POLICY", "IfNotPresent"),
        port_min=int(lo),
        port_max=int(hi or lo),
        namespaces=namespaces,
        resync_seconds=float(env.get("STREAMDIST_RESYNC_SECONDS", "5")),
        metrics_port=int(env.get("STREAMDIST_METRICS_PORT", "9090")),
        thumbnail_port=int(env.get("STREAMDIST_THUMBNAIL_PORT", "8081")),
        health_poll=_flag(env.get("STREAMDIST_HEALTH_POLL", "true")),
        telemetry=_flag(env.get("STREAMDIST_TELEMETRY", env.get("STREAMDIST_HEALTH_POLL", "true"))),
        telemetry_seconds=float(env.get("STREAMDIST_TELEMETRY_SECONDS", "10")),
        telemetry_port=int(env.get("STREAMDIST_TELEMETRY_PORT", "9998")),
        peering=env.get("STREAMDIST_PEERING", ""),
        priority=int(env.get("STREAMDIST_PRIORITY", "0") or 0),
        identity=env.get("POD_ID", ""),
        key_secret=env.get("STREAMDIST_KEY_SECRET") or f"{env.get('POD_NAMESPACE') or 'default'}/streamdist-key",
        network_policies=_flag(env.get("STREAMDIST_NETWORK_POLICIES", "true")),
        confidence_monitor=_flag(env.get("STREAMDIST_CONFIDENCE_MONITOR", "true")),
        confidence_hold_seconds=float(env.get("STREAMDIST_CONFIDENCE_HOLD_SECONDS", "5")),
        operator_namespace=env.get("POD_NAMESPACE", ""),
        operator_labels=_labels(env.get("STREAMDIST_OPERATOR_SELECTOR", "")),
        cluster_domain=env.get("STREAMDIST_CLUSTER_DOMAIN", "cluster.local"),
        destination_deny=_list(env.get("STREAMDIST_DESTINATION_DENY", "")),
        destination_allow=_list(env.get("STREAMDIST_DESTINATION_ALLOW", "")),
    )


def _list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _flag(value: str) -> bool:
    return value.lower() not in ("false", "0", "no", "off")


def _labels(selector: str) -> tuple[tuple[str, str], ...]:
    """``k=v,k2=v2`` as sorted pairs."""
    pairs = (item.split("=", 1) for item in selector.split(",") if "=" in item)
    return tuple(sorted((k.strip(), v.strip()) for k, v in pairs))
