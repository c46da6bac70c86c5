"""The one reader of the API server's JSON audit log (``--audit-log-path``).

Tests ask it who was refused what (RBAC), who wrote while paused (peering); benchmarks
how many requests of which kind a scenario cost, from a remembered offset on.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


def policy(*rules: dict[str, Any], omit_stages: Sequence[str] = ("RequestReceived",)) -> str:
    """An audit Policy logging what ``rules`` select and nothing else."""
    doc = {"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": list(omit_stages),
           "rules": [*rules, {"level": "None"}]}
    return yaml.safe_dump(doc, sort_keys=False)


def audit_time(text: str) -> datetime:
    """An audit event's timestamp (RFC 3339, microseconds, Z)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Request:
    """One request of the audit log."""

    user: str
    verb: str
    group: str
    resource: str  # "pods"; a request without an object: its URI
    subresource: str
    namespace: str
    name: str
    code: int
    user_agent: str = ""
    at: str = ""  # when the apiserver answered (stageTimestamp, RFC 3339 with microseconds)
    body: Any = None  # the request body (audit level Request)
    received: str = ""  # when the apiserver received it

    @property
    def full_resource(self) -> str:
        """"pods", "streaminputs/status": what an RBAC rule names."""
        return self.resource + (f"/{self.subresource}" if self.subresource else "")

    @property
    def namespaced(self) -> bool:
        return bool(self.namespace)

    @property
    def write(self) -> bool:
        return self.verb in WRITE_VERBS

    @property
    def what(self) -> str:
        return f"{self.verb} {self.full_resource}"

    @property
    def seconds(self) -> float:
        """How long the apiserver took to answer (nan when the audit event lacks a time)."""
        if not self.received or not self.at:
            return float("nan")
        return (audit_time(self.at) - audit_time(self.received)).total_seconds()


def _request(ev: dict[str, Any]) -> Request:
    ref = ev.get("objectRef") or {}
    return Request(
        user=(ev.get("user") or {}).get("username", ""),
        verb=ev.get("verb", ""),
        group=ref.get("apiGroup", ""),
        resource=ref.get("resource", ev.get("requestURI", "?")),
        subresource=ref.get("subresource", ""),
        namespace=ref.get("namespace", ""),
        name=ref.get("name", ""),
        code=int((ev.get("responseStatus") or {}).get("code") or 0),
        user_agent=ev.get("userAgent", ""),
        at=ev.get("stageTimestamp", ""),
        body=ev.get("requestObject"),
        received=ev.get("requestReceivedTimestamp", ""),
    )


@dataclass
class AuditLog:
    """Reads the audit log, whole or between two offsets."""

    path: Path

    def offset(self) -> int:
        """End of the last complete line (the apiserver may be mid-line)."""
        try:
            with self.path.open("rb") as f:
                size = f.seek(0, 2)
                back = min(size, 1 << 20)
                f.seek(size - back)
                tail = f.read(back)
        except OSError:
            return 0
        nl = tail.rfind(b"\n")
        return size - back + nl + 1 if nl >= 0 else size - back

    def events(self, start: int = 0, end: int | None = None) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as f:
                f.seek(start)
                data = f.read() if end is None else f.read(max(0, end - start))
        except OSError:
            return []
        out = []
        for line in data.splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def requests(self, user: str | None = None, start: int = 0, end: int | None = None) -> list[Request]:
        """Every completed request (of ``user``), in the order they completed."""
        return [
            _request(ev)
            for ev in self.events(start, end)
            if ev.get("stage") == "ResponseComplete" and user in (None, (ev.get("user") or {}).get("username"))
        ]

    def last_words(self, user: str) -> list[Request]:
        """Every request of ``user`` on an object, started or done: a watch is logged when
        it starts and again when it ends, and the last word is kept."""
        seen: dict[str, Request] = {}
        for ev in self.events():
            if (ev.get("user") or {}).get("username") == user and ev.get("objectRef"):
                seen[ev["auditID"]] = _request(ev)
        return list(seen.values())

    def writes(self) -> list[Request]:
        """Every completed write request, in order."""
        return [r for r in self.requests() if r.write]
