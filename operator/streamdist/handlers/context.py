"""What every handler shares: the API wrapper, settings, kopf's live indexes, the memory
of each object (memory.py), the Secret cache and the per-object locks.

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
from ..models import SecretKeyRef
from ..secret_policy import Refusal, Usage
from ..settings import Settings
from .memory import Memory, ObjectKey
from .timers import Timers

log = logging.getLogger("streamdist")
SECRET_TTL = 30.0
Key = tuple[str, str]


@dataclass
class Indexes:
    """kopf.Index objects (live mappings of key -> Store of values).

    kopf changes them on its event loop while handlers read them in other threads:
    whole-index reads go through `keys` (one C-level copy of the key list, which a
    concurrent insert cannot interrupt) and single lookups, never a Python-level
    iteration of the mapping.
    """

    inputs: Mapping[Key, Any] = field(default_factory=dict)
    outputs: Mapping[Key, Any] = field(default_factory=dict)
    outputs_by_input: Mapping[Key, Any] = field(default_factory=dict)
    pods: Mapping[Key, Any] = field(default_factory=dict)
    routers: Mapping[Key, Any] = field(default_factory=dict)
    # (namespace, pod name) the index still lists but that are gone: kopf keeps
    # entries of objects deleted while this replica was paused.
    stale: set[tuple[str, str]] = field(default_factory=set)

    @staticmethod
    def keys(index: Mapping[Key, Any]) -> list[Key]:
        return list(index)

    def one(self, index: Mapping[Key, Any], key: Key) -> dict[str, Any] | None:
        store = index.get(key)
        if not store:
            return None
        return next(iter(store), None)

    def all(self, index: Mapping[Key, Any], key: Key) -> list[dict[str, Any]]:
        items = list(index.get(key) or [])
        if self.stale and index is self.pods:
            items = [p for p in items if (p["metadata"]["namespace"], p["metadata"]["name"]) not in self.stale]
        return items

    def items(self, index: Mapping[Key, Any]) -> list[tuple[Key, list[dict[str, Any]]]]:
        """A snapshot of (key, values) for every key present now."""
        return [(key, self.all(index, key)) for key in self.keys(index)]


@dataclass
class SecretCache:
    """Secrets that opted in, read at most every SECRET_TTL seconds: (read at, value).

    Watching Secrets would need list/watch on every Secret of the cluster; a short
    cache keeps the operator at `get` on the ones it is pointed at, and a rotation
    shows within the TTL. A refusal is not cached: a label added shows at once. The
    label is checked on metadata alone before any value is fetched.
    """

    _values: dict[tuple[str, str, str, str], tuple[float, tuple[str, str]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def read(self, kube: Kube, namespace: str, ref: SecretKeyRef, usage: Usage) -> tuple[str, str] | Refusal:
        """(value, resourceVersion) of a Secret key that opted in to `usage`; else why not."""
        cache_key = (namespace, ref.name, ref.key, usage)
        now = time.monotonic()
        with self._lock:
            cached = self._values.get(cache_key)
        if cached and now - cached[0] < SECRET_TTL:
            return cached[1]
        refused = secret_policy.refusal(kube.secret_meta(namespace, ref.name), usage)
        found = None if refused else kube.read_secret_key(namespace, ref.name, ref.key)
        with self._lock:
            if found is None:
                self._values.pop(cache_key, None)
            else:
                self._values[cache_key] = (now, found)
        return found or refused or secret_policy.missing_key(usage)


@dataclass
class Context:
    kube: Kube
    settings: Settings
    idx: Indexes = field(default_factory=Indexes)
    memory: Memory = field(default_factory=Memory)
    secrets: SecretCache = field(default_factory=SecretCache)
    timers: Timers = field(default_factory=Timers)  # schedule boundaries (handlers/timers.py)
    # The installation key every router credential is derived from (read at start-up).
    key: str = ""
    # Ports are handed out one input at a time (two creates at once must not share one).
    port_lock: threading.Lock = field(default_factory=threading.Lock)
    paused: bool = False
    _locks: defaultdict[ObjectKey, threading.Lock] = field(default_factory=lambda: defaultdict(threading.Lock))
    _guard: threading.Lock = field(default_factory=threading.Lock)

    @contextmanager
    def lock(self, key: ObjectKey) -> Iterator[None]:
        """Serialise work on one object across kopf's workers and the resync loop."""
        with self._guard:
            lock = self._locks[key]
        with lock:
            yield

    def read_secret(self, namespace: str, ref: SecretKeyRef, usage: Usage) -> tuple[str, str] | Refusal:
        return self.secrets.read(self.kube, namespace, ref, usage)

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
