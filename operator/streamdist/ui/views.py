"""What the browser gets of each object: a whitelist, never the object itself.

A StreamOutput's spec.url may hold a stream key or passphrase, and so may the
last-applied-configuration annotation and managedFields that carry a copy of it.
So nothing is passed through wholesale: each view names the fields it copies, and
copies only scalars (a nested object could carry anything). The destination shown is
status.destination, which the operator masks; a Secret is shown by reference only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

Scalar = str | int | float | bool | None

# Figures the telemetry work adds to status when it lands; shown when present.
OUTPUT_FIGURES = ("bitrateKbps", "rttMs", "lossPercent", "droppedFrames", "speed")
INPUT_FIGURES = ("bitrateKbps", "readers", "rttMs", "lossPercent")


def _scalar(value: Any) -> Scalar:
    return value if isinstance(value, str | int | float | bool) else None


def _pick(src: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Scalar]:
    return {k: _scalar(src.get(k)) for k in keys if _scalar(src.get(k)) is not None}


def _section(obj: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    got = obj.get(name)
    return got if isinstance(got, Mapping) else {}


def meta_view(obj: Mapping[str, Any]) -> dict[str, Scalar]:
    return _pick(_section(obj, "metadata"), ("namespace", "name", "uid", "resourceVersion", "creationTimestamp"))


def ref_view(ref: Any) -> dict[str, Scalar] | None:
    """A Secret reference {name, key}: names only, the page never reads the Secret."""
    return _pick(ref, ("name", "key")) if isinstance(ref, Mapping) else None


def conditions_view(status: Mapping[str, Any]) -> list[dict[str, Scalar]]:
    conds = status.get("conditions")
    keys = ("type", "status", "reason", "message", "lastTransitionTime")
    return [_pick(c, keys) for c in conds if isinstance(c, Mapping)] if isinstance(conds, list) else []


def input_view(obj: Mapping[str, Any]) -> dict[str, Any]:
    spec, status = _section(obj, "spec"), _section(obj, "status")
    sources = spec.get("allowedSources")
    return {
        **meta_view(obj),
        "protocol": _scalar(spec.get("protocol")) or "udp",
        "serviceType": _scalar(_section(spec, "service").get("type")) or "ClusterIP",
        "maxOutputs": _scalar(spec.get("maxOutputs")),
        "passphraseSecret": ref_view(spec.get("passphraseSecretRef")),
        "publishSecret": ref_view(spec.get("publishSecretRef")),
        "allowedSources": [s for s in sources if isinstance(s, str)] if isinstance(sources, list) else [],
        "backup": _pick(_section(spec, "backup"), ("protocol", "port")) or None,
        **_pick(status, ("phase", "port", "endpoint", "backupEndpoint", "activeSource", "lastSourceTime")),
        "tracks": [t for t in status.get("tracks") or [] if isinstance(t, str)],
        "figures": _pick(status, INPUT_FIGURES),
        "conditions": conditions_view(status),
    }


def output_view(obj: Mapping[str, Any]) -> dict[str, Any]:
    spec, status = _section(obj, "spec"), _section(obj, "status")
    url_from = _section(spec, "urlFrom")
    return {
        **meta_view(obj),
        "input": _scalar(spec.get("input")),
        "suspend": spec.get("suspend") is True,
        "secret": ref_view(url_from.get("secretKeyRef")),
        "reconnect": _pick(_section(spec, "reconnect"), ("delaySeconds", "maxDelaySeconds")),
        **_pick(status, ("phase", "protocol", "destination", "reconnects", "lastError", "endpoint", "pod")),
        "figures": _pick(status, OUTPUT_FIGURES),
        "conditions": conditions_view(status),
    }


def event_view(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A core/v1 Event about one of the two kinds: who it is about and what it says."""
    involved = _section(obj, "involvedObject")
    meta = _section(obj, "metadata")
    when = obj.get("lastTimestamp") or obj.get("eventTime") or meta.get("creationTimestamp")
    return {
        **meta_view(obj),
        "object": _pick(involved, ("kind", "name", "namespace", "uid")),
        **_pick(obj, ("type", "reason", "message", "count")),
        "time": _scalar(when),
    }


VIEWS = {"StreamInput": input_view, "StreamOutput": output_view, "Event": event_view}
