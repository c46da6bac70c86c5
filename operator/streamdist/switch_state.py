"""What the backup switch says of itself (its ``GET /v1/state``), parsed for the
operator: which source is on air, and every switch with the gap it measured.

Why the switch's own word and not MediaMTX's: the switch keeps one publisher on the
readers' path across every switch (so readers see one stream), so MediaMTX sees no
change of source at all; and only the switch can measure the gap at its cut (the
output time between the last frame of one source and the first of the next). The
switch serves it on the router pod's network, to the operator's control-API
credential only (switch_render); the health poll fetches it with the router's other
health (handlers.health).
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SOURCES = ("primary", "backup", "slate")
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Switched:
    """One switch: what went on air, from what, why, when (the switch's clock, ISO
    8601 with milliseconds) and the gap at the cut (None for the first)."""

    to: str
    source: str | None
    gap_ms: int | None
    reason: str
    at: str

    def as_status(self) -> dict[str, Any]:
        return {"from": self.source, "to": self.to, "gapMs": self.gap_ms, "reason": self.reason, "at": self.at}


@dataclass(frozen=True)
class SwitchState:
    on_air: str | None
    switches: tuple[Switched, ...] = ()

    @property
    def last(self) -> Switched | None:
        return self.switches[-1] if self.switches else None


class SwitchStateError(RuntimeError):
    pass


def _switched(item: Any) -> Switched | None:
    if not isinstance(item, Mapping) or item.get("to") not in SOURCES or not isinstance(item.get("at"), str):
        return None
    gap = item.get("gapMs")
    source = item.get("from")
    return Switched(
        to=item["to"],
        source=source if source in SOURCES else None,
        gap_ms=gap if isinstance(gap, int) and not isinstance(gap, bool) and gap >= 0 else None,
        reason=str(item.get("reason") or ""),
        at=item["at"],
    )


def parse(doc: Any) -> SwitchState:
    """The state from the switch's JSON; what does not parse is left out.

    A cut back to what was already on air (the switch restarting its publisher) is
    no switch: only changes are kept."""
    if not isinstance(doc, Mapping):
        raise SwitchStateError("unexpected response: not an object")
    on_air = doc.get("onAir")
    items = doc.get("switches") if isinstance(doc.get("switches"), list) else []
    found = [s for s in (_switched(i) for i in items or []) if s is not None and s.source != s.to]
    return SwitchState(on_air if on_air in SOURCES else None, tuple(sorted(found, key=lambda s: s.at)))


def new_switches(state: SwitchState, last_at: str | None, limit: int = 5) -> tuple[Switched, ...]:
    """Switches after ``last_at`` (the status' lastSwitch.at), the latest ``limit``: a
    status write or Event lost to an operator restart is not posted twice, and a
    flapping source cannot flood Events. The first switch (nothing on air before) is
    the start, not a switch."""
    fresh = [s for s in state.switches if s.source is not None and (last_at is None or s.at > last_at)]
    return tuple(fresh[-limit:])


def fetch(host: str, port: int, user: str, password: str, timeout: float = 2.0) -> SwitchState:
    """GET /v1/state of one router's switch with the operator's credential."""
    request = urllib.request.Request(f"http://{host}:{port}/v1/state", headers={"Accept": "application/json"})
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    try:
        with _DIRECT.open(request, timeout=timeout) as resp:
            body = resp.read()
    except urllib.error.HTTPError as exc:
        raise SwitchStateError(f"switch state: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise SwitchStateError(f"switch state: {getattr(exc, 'reason', exc)}") from None
    try:
        return parse(json.loads(body))
    except ValueError as exc:
        raise SwitchStateError(f"switch state: invalid JSON: {exc}") from None
