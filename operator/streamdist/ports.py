"""Ingest port assignment: pure, so the "never the same port twice" rule is unit-tested.

A port belongs to the earliest-created input that claims it (fixed `spec.port` or an
already allocated `status.port`); a later input asking for it gets a PortConflict.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

Key = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True)
class Claim:
    key: Key
    port: int
    created: str  # creationTimestamp, RFC 3339: sorts chronologically as text


@dataclass(frozen=True)
class Assignment:
    port: int | None
    conflict_with: Key | None = None


def _rank(claim: Claim) -> tuple[str, Key]:
    return (claim.created, claim.key)


def assign(
    me: Claim | None, key: Key, created: str, fixed: int | None, claims: Iterable[Claim], ports: range
) -> Assignment:
    """The port for input `key`: its fixed port, its previous one, or the lowest free one.

    `me` is the input's current claim (its status.port), `claims` every other input's.
    """
    others = [c for c in claims if c.key != key]
    mine = Claim(key, fixed if fixed is not None else (me.port if me else 0), created)
    if mine.port:
        earlier = [c for c in others if c.port == mine.port and _rank(c) < _rank(mine)]
        if not earlier:
            return Assignment(mine.port)
        if fixed is not None:
            return Assignment(None, conflict_with=min(earlier, key=_rank).key)
    taken = {c.port for c in others}
    for port in ports:
        if port not in taken:
            return Assignment(port)
    return Assignment(None)
