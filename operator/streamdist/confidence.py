"""What an input's confidence monitor says (its ``GET /v1/state``), and the input
conditions ``Black``, ``Frozen`` and ``Silent`` decided from it.

The monitor (images/ffmpeg/streamdist_confidence.py) is a sidecar of the router pod:
one FFmpeg decoding the readers' path's keyframes at thumbnail size. It serves its
state, metrics and the latest keyframe as a JPEG to the operator's control-API
credential only (switch_render.MONITOR_PORT). Observe (``fetch``), decide
(``conditions``, ``transitions``: pure, table-tested), act (the health poll writes the
conditions and posts the Events).

Why conditions change only when the monitor's own verdict does: the monitor already
waits ``--hold-seconds`` before it calls a picture black, frozen or silent, so a
steady input (black or not) gives the same conditions at every poll and the status is
not written; the message names the hold, never a duration that grows.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .status import Cond

KINDS = ("black", "frozen", "silent")
# condition type, the reason while it lasts, what it says (the hold is the monitor's)
_WORDING = {
    "black": ("Black", "BlackPicture", "the picture has been black"),
    "frozen": ("Frozen", "FrozenPicture", "the picture has not changed"),
    "silent": ("Silent", "SilentAudio", "the audio has been silent"),
}
CONDITION_TYPES = tuple(t for t, _, _ in _WORDING.values())
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ConfidenceError(RuntimeError):
    pass


@dataclass(frozen=True)
class ConfidenceState:
    running: bool  # the monitor's FFmpeg reads the input
    hold_seconds: float
    active: frozenset[str]  # of KINDS
    thumbnail_age: float | None = None


def parse(doc: Any) -> ConfidenceState:
    """The state from the monitor's JSON; a kind that does not parse is not active."""
    if not isinstance(doc, Mapping):
        raise ConfidenceError("unexpected response: not an object")
    hold = doc.get("holdSeconds")
    age = doc.get("thumbnailAgeSeconds")
    active = frozenset(k for k in KINDS if isinstance(doc.get(k), Mapping) and doc[k].get("active") is True)
    return ConfidenceState(
        running=doc.get("running") is True,
        hold_seconds=float(hold) if isinstance(hold, int | float) and not isinstance(hold, bool) else 0.0,
        active=active,
        thumbnail_age=float(age) if isinstance(age, int | float) and not isinstance(age, bool) else None,
    )


def conditions(state: ConfidenceState | None, receiving: bool | None) -> list[Cond]:
    """Black, Frozen and Silent of one input.

    True while the monitor says so; False while it reads the input and says not;
    Unknown while there is nothing to judge (no source, the monitor not reading or not
    answering): a lost source is the Receiving condition's news, not a black picture."""
    out = []
    for kind in KINDS:
        ctype, reason, words = _WORDING[kind]
        if state is None:
            out.append(Cond(ctype, "Unknown", "MonitorUnavailable", "the confidence monitor has not answered"))
        elif not receiving or not state.running:
            out.append(Cond(ctype, "Unknown", "NotMonitoring", "no source to judge"))
        elif kind in state.active:
            out.append(Cond(ctype, "True", reason, f"{words} for more than {state.hold_seconds:g} s"))
        else:
            out.append(Cond(ctype, "False", "Nominal", f"not {ctype.lower()} for {state.hold_seconds:g} s or more"))
    return out


def carried(previous: list[dict[str, Any]] | None) -> list[Cond] | None:
    """Black, Frozen and Silent as last written, for an input whose router has not been
    polled yet (an operator replica that just started or took over): judging them
    Unknown until the first poll would post a Cleared and a new Warning Event for a
    picture that stayed black all along. None when any of them was never written."""
    before = {c.get("type"): c for c in previous or []}
    if not all(t in before for t in CONDITION_TYPES):
        return None
    return [Cond(t, *(str(before[t].get(k) or "") for k in ("status", "reason", "message"))) for t in CONDITION_TYPES]


def transitions(previous: list[dict[str, Any]] | None, new: list[Cond]) -> list[tuple[str, str, str]]:
    """The Events to post for ``new``: (type, reason, message) when a condition turns
    True (Warning) or turns from True to anything else (Normal, ``<Type>Cleared``).
    Unknown after Unknown, False after False and True after True post nothing."""
    before = {c.get("type"): c.get("status") for c in previous or []}
    events = []
    for cond in new:
        was = before.get(cond.type)
        if cond.status == "True" and was != "True":
            events.append(("Warning", cond.reason, f"{cond.type}: {cond.message}"))
        elif was == "True" and cond.status != "True":
            events.append(("Normal", f"{cond.type}Cleared", f"{cond.type} cleared: {cond.message}"))
    return events


def get(host: str, port: int, path: str, user: str, password: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """GET one of the monitor's endpoints with the operator's credential."""
    request = urllib.request.Request(f"http://{host}:{port}{path}")
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    try:
        with _DIRECT.open(request, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise ConfidenceError(f"confidence monitor: {getattr(exc, 'reason', exc)}") from None


def fetch(host: str, port: int, user: str, password: str, timeout: float = 2.0) -> ConfidenceState:
    """GET /v1/state of one router's confidence monitor."""
    code, body = get(host, port, "/v1/state", user, password, timeout)
    if code != 200:
        raise ConfidenceError(f"confidence monitor: HTTP {code}")
    try:
        return parse(json.loads(body))
    except ValueError as exc:
        raise ConfidenceError(f"confidence monitor: invalid JSON: {exc}") from None
