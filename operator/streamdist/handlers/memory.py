"""What the operator remembers about each object between reconciles: one record each.

Keys carry the kind: a StreamInput and a StreamOutput of the same namespace and name
are two objects, and forgetting one never touches the other. `Memory.forget` is the
only place a record goes (the object is gone from kopf's index).

Threads. Reconciles run in kopf's worker threads and in the resync thread, one object
at a time (Context.lock). The health poll (resync thread) writes
`InputMemory.observation` and `OutputMemory.flow`, the telemetry poll (its own loop's
thread) `OutputMemory.telemetry`; the object's own reconcile writes every other field.
Fields are replaced whole by immutable values, never changed in place, so a reader in
another thread sees the old value or the new one. The maps of
records change under Memory's lock, and whole-memory reads take a snapshot under it:
no reader iterates a map another thread is inserting into.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..confidence import ConfidenceState
from ..ingest import Reading
from ..mediamtx import InputHealth, PathSample
from ..schedule import Placed
from ..switch_state import SwitchState
from ..telemetry import Sample, Summary

Endpoints = tuple[str, ...]  # where encoders send: the primary's, then the backup's


@dataclass(frozen=True)
class InputKey:
    namespace: str
    name: str


@dataclass(frozen=True)
class OutputKey:
    namespace: str
    name: str


ObjectKey = InputKey | OutputKey


@dataclass(frozen=True)
class Applied:
    """The router children last applied (or adopted) for an input."""

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
    switch: SwitchState | None = None  # with a backup: what the switch says is on air, and its switches
    # with the confidence monitor: black, frozen, silent (its thumbnail's age left out:
    # it moves every poll, and an observation that moves re-plans the input)
    confidence: ConfidenceState | None = None
    # what the router counts for the ingest (frames in error, SRT link), and its window's summary
    ingest: Reading | None = None


@dataclass(frozen=True)
class Flow:
    """Bytes MediaMTX sent to one output's FFmpeg, to measure bitrate and stalls."""

    bytes_sent: int
    at: float  # monotonic seconds of the sample
    grew_at: float  # last time the counter moved
    bitrate_kbps: int | None = None


@dataclass(frozen=True)
class OutputTelemetry:
    """The latest read of an output pod's own metrics, and the window's summary."""

    sample: Sample
    summary: Summary
    missed: int = 0  # reads of the same pod that failed since this one


@dataclass(frozen=True)
class Written:
    """The status last written for one object (uid: a re-created object starts afresh)."""

    uid: str
    status: dict[str, Any]


@dataclass
class InputMemory:
    port: int | None = None  # handed out, maybe not yet visible in status
    applied: Applied | None = None
    observation: InputObservation | None = None
    written: Written | None = None


@dataclass
class OutputMemory:
    flow: Flow | None = None
    telemetry: OutputTelemetry | None = None
    failures: int = 0  # consecutive failures (kubelet restarts + replacements) since it streamed
    extras: str = ""  # digest of the extra children (SRT listener Service) last applied
    written: Written | None = None
    placed: Placed | None = None  # where the output is in its schedule, until the next boundary


@dataclass(frozen=True)
class Claim:
    """An output sending to a destination (its digest): the earliest keeps it."""

    created: str  # creationTimestamp: RFC 3339 sorts as text
    name: str
    until: datetime | None = None  # on air by its schedule: the claim lapses at the window's end


@dataclass
class Memory:
    _inputs: dict[InputKey, InputMemory] = field(default_factory=dict)
    _outputs: dict[OutputKey, OutputMemory] = field(default_factory=dict)
    # (namespace, destination digest) -> the outputs that would send there; and the
    # digest each output last claimed (None: it sends nowhere now).
    _claims: dict[tuple[str, str], dict[OutputKey, Claim]] = field(default_factory=dict)
    _claimed: dict[OutputKey, str | None] = field(default_factory=dict)
    # Every output known to kopf has claimed once since the start: before that, none
    # starts a new pod (a newer duplicate must not start before its older twin is seen).
    settled: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def claim(self, key: OutputKey, digest: str | None, created: str, until: datetime | None = None) -> list[Claim]:
        """Record where an output sends (None: nowhere) and until when (None: for good);
        the other claims on that place."""
        with self._lock:
            self._release(key)
            self._claimed[key] = digest
            if digest is None:
                return []
            peers = self._claims.setdefault((key.namespace, digest), {})
            peers[key] = Claim(created, key.name, until)
            return [c for k, c in peers.items() if k != key]

    def claimed(self, keys: list[OutputKey]) -> bool:
        """Whether each of these outputs has said where it sends (after a start, not yet)."""
        with self._lock:
            return all(k in self._claimed for k in keys)

    def _release(self, key: OutputKey) -> None:
        digest = self._claimed.pop(key, None)
        peers = self._claims.get((key.namespace, digest or ""))
        if peers is not None:
            peers.pop(key, None)
            if not peers:
                del self._claims[(key.namespace, digest or "")]

    def input(self, key: InputKey) -> InputMemory:
        with self._lock:
            return self._inputs.setdefault(key, InputMemory())

    def output(self, key: OutputKey) -> OutputMemory:
        with self._lock:
            return self._outputs.setdefault(key, OutputMemory())

    def forget(self, key: ObjectKey) -> None:
        """The object is gone: everything remembered about it goes, nothing else."""
        with self._lock:
            if isinstance(key, InputKey):
                self._inputs.pop(key, None)
            else:
                self._outputs.pop(key, None)
                self._release(key)

    def inputs(self) -> list[tuple[InputKey, InputMemory]]:
        """A snapshot of every input's record."""
        with self._lock:
            return list(self._inputs.items())
