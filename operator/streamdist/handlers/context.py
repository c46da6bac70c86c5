"""What every handler shares: the API wrapper, settings, kopf's live indexes, locks.

kopf fills the indexes from its watches before it calls any handler, so a handler that
runs right after an operator restart already sees every input, output and pod; the
periodic resync reads the same live indexes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from .. import credentials, secret_policy
from ..kube import Kube
from ..mediamtx import InputHealth, PathSample
from ..models import SecretKeyRef
from ..secret_policy import Refusal, Usage
from ..settings import Settings

log = logging.getLogger("streamdist")
SECRET_TTL = 30.0
Key = tuple[str, str]


@dataclass
class Indexes:
    """kopf.Index objects (live mappings of key -> Store of values)."""

    inputs: Mapping[Key, Any] = field(default_factory=dict)
    outputs: Mapping[Key, Any] = field(default_factory=dict)
    outputs_by_input: Mapping[Key, Any] = field(default_factory=dict)
    pods: Mapping[Key, Any] = field(default_factory=dict)
    routers: Mapping[Key, Any] = field(default_factory=dict)

    def one(self, index: Mapping[Key, Any], key: Key) -> dict[str, Any] | None:
        store = index.get(key)
        if not store:
            return None
        return next(iter(store))  # type: ignore[no-any-return]

    # (namespace, pod name) the index still lists but that are gone: kopf keeps
    # entries of objects deleted while this replica was paused.
    stale: set[tuple[str, str]] = field(default_factory=set)

    def all(self, index: Mapping[Key, Any], key: Key) -> list[dict[str, Any]]:
        items = list(index.get(key) or [])
        if self.stale and index is self.pods:
            items = [p for p in items if (p["metadata"]["namespace"], p["metadata"]["name"]) not in self.stale]
        return items


Endpoints = tuple[str, ...]  # where encoders send: the primary's, then the backup's


@dataclass(frozen=True)
class Applied:
    digest: str
    endpoints: Endpoints
    api_host: str  # ClusterIP of the input's in-cluster Service (control API)
    service_ips: frozenset[str] = frozenset()  # ClusterIPs of both Services: never a destination
    api_auth: tuple[str, str] = ("", "")  # the operator's control-API user and password


@dataclass(frozen=True)
class InputObservation:
    """One poll of a router: health, or why it could not be read."""

    health: InputHealth | None
    sample: PathSample | None
    error: str = ""
    relay: str | None = None  # with a backup: whose relay feeds the readers' path (primary, backup)


@dataclass(frozen=True)
class Flow:
    """Bytes MediaMTX sent to one output's FFmpeg, to measure bitrate and stalls."""

    bytes_sent: int
    at: float  # monotonic seconds of the sample
    grew_at: float  # last time the counter moved
    bitrate_kbps: int | None = None


@dataclass
class Context:
    kube: Kube
    settings: Settings
    idx: Indexes = field(default_factory=Indexes)
    # Ports handed out but not yet visible in an input's status (two creates at once).
    assigned: dict[Key, int] = field(default_factory=dict)
    port_lock: threading.Lock = field(default_factory=threading.Lock)
    # What was last applied per input: skip identical applies, remember the API host.
    applied: dict[Key, Applied] = field(default_factory=dict)
    # Latest MediaMTX health per input, and per output what flows to its FFmpeg.
    health: dict[Key, InputObservation] = field(default_factory=dict)
    flow: dict[Key, Flow] = field(default_factory=dict)
    # Secrets that opted in, read at most every SECRET_TTL seconds: (read at, value).
    secrets: dict[tuple[str, str, str, str], tuple[float, tuple[str, str]]] = field(default_factory=dict)
    # The installation key every router credential is derived from (read at start-up).
    key: str = ""
    # Digest of the extra children (SRT listener Service) last applied per output.
    applied_extras: dict[Key, str] = field(default_factory=dict)
    # Status last written per (kind, namespace, name): (uid, status).
    written: dict[tuple[str, str, str], tuple[str, dict[str, Any]]] = field(default_factory=dict)
    # Consecutive failures per output (kubelet restarts + replacements) since it streamed.
    failures: dict[Key, int] = field(default_factory=dict)
    paused: bool = False
    _locks: defaultdict[tuple[str, Key], threading.Lock] = field(default_factory=lambda: defaultdict(threading.Lock))
    _guard: threading.Lock = field(default_factory=threading.Lock)

    @contextmanager
    def lock(self, kind: str, key: Key) -> Iterator[None]:
        """Serialise work on one object across kopf's workers and the resync loop."""
        with self._guard:
            lock = self._locks[(kind, key)]
        with lock:
            yield

    def forget(self, kind: str, key: Key) -> None:
        """An object is gone: drop what memory holds about it."""
        self.written.pop((kind, *key), None)
        self.applied_extras.pop(key, None)
        self.flow.pop(key, None)
        self.failures.pop(key, None)

    def read_secret(self, namespace: str, ref: SecretKeyRef, usage: Usage) -> tuple[str, str] | Refusal:
        """(value, resourceVersion) of a Secret key that opted in to `usage`, read again
        only after SECRET_TTL; else why it may not be used.

        Watching Secrets would need list/watch on every Secret of the cluster; a short
        cache keeps the operator at `get` on the ones it is pointed at, and a rotation
        shows within the TTL. A refusal is not cached: a label added shows at once.
        The label is checked on metadata alone before any value is fetched.
        """
        cache_key = (namespace, ref.name, ref.key, usage)
        now = time.monotonic()
        cached = self.secrets.get(cache_key)
        if cached and now - cached[0] < SECRET_TTL:
            return cached[1]
        refused = secret_policy.refusal(self.kube.secret_meta(namespace, ref.name), usage)
        if refused:
            self.secrets.pop(cache_key, None)
            return refused
        found = self.kube.read_secret_key(namespace, ref.name, ref.key)
        if found is None:
            return secret_policy.missing_key(usage)
        self.secrets[cache_key] = (now, found)
        return found

    def router_credentials(self, namespace: str, name: str, uid: str) -> credentials.RouterCredentials:
        """The credentials an input's router accepts, derived from the installation key."""
        return credentials.for_input(self.key, namespace, name, uid)

    def bind(self, **indexes: Mapping[Key, Any]) -> None:
        """Remember kopf's live indexes the first time a handler receives them."""
        for name, index in indexes.items():
            setattr(self.idx, name, index)


def logline(event: str, **fields: Any) -> None:
    """One structured line per event; callers pass masked values only."""
    log.info("%s %s", event, " ".join(f"{k}={v!s}" for k, v in fields.items()))
