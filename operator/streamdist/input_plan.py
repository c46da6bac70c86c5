"""Deciding a StreamInput's status and Events from what was seen: pure, table-tested.

The input's reconcile applies its router first (handlers.inputs); what the router, its
Services and the latest health poll then show arrives here as `SeenInput`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import confidence, events, ingest, render, switch_state
from .events import Event
from .handlers.memory import Endpoints, InputObservation
from .models import StreamInput
from .status import Cond, conditions, input_phase, now_iso, quantize_bitrate
from .switch_state import Switched


@dataclass(frozen=True)
class SeenInput:
    body: dict[str, Any]
    input: StreamInput
    port: int
    endpoints: Endpoints
    router_ready: bool
    observation: InputObservation | None  # the latest health poll (None while the router is not ready)
    previous: dict[str, Any] = field(default_factory=dict)
    now: datetime | None = None
    monitored: bool = False  # the router pod runs the confidence monitor (Black, Frozen, Silent)
    telemetry: bool = False  # the ingest's figures are read (status.ingest, Degraded)


@dataclass(frozen=True)
class InputDecision:
    status: dict[str, Any]
    events: tuple[Event, ...] = ()
    # Each new switch of the backup switch: (what went on air, its gap in ms), for the
    # switch-gap histogram once the status that shows it is written.
    switch_gaps: tuple[tuple[str, int], ...] = ()


def plan_input(seen: SeenInput) -> InputDecision:
    """Phase, endpoints, health and conditions of an input whose router was applied."""
    inp, previous = seen.input, seen.previous
    observation = seen.observation if seen.router_ready else None
    # not polled yet (a replica that just started or took over): the last phase holds
    kept = previous.get("phase") if observation is None else None
    phase, ready, recv = input_phase(seen.router_ready, receiving(observation), kept)
    active = active_source(inp, observation)
    conds = [ready, recv] + ([on_air(active)] if inp.spec.slate else [])
    judged = confidence.conditions(observation.confidence if observation else None, receiving(observation))
    if seen.router_ready and observation is None:  # not polled yet: what was written holds, as the phase does
        judged = confidence.carried(previous.get("conditions")) or judged
    conds += judged if seen.monitored else []
    conds += [ingest_degraded(seen, observation)] if seen.telemetry else []
    switches = new_switches(inp, observation, previous)
    status = {
        "observedGeneration": inp.metadata.generation,
        "phase": phase,
        "port": seen.port,
        "endpoint": seen.endpoints[0],
        **({"backupEndpoint": seen.endpoints[1]} if len(seen.endpoints) > 1 else {}),
        **health_fields(previous, observation),
        **(ingest_fields(previous, observation) if seen.telemetry else {}),
        **({"activeSource": active} if active else {}),
        **({"lastSwitch": switches[-1].as_status()} if switches else {}),
        "conditions": conditions(previous.get("conditions"), conds, inp.metadata.generation, now_iso(seen.now)),
    }
    lost = "Waiting" if previous.get("phase") != "Live" else "SourceLost"
    reason = {"Live": "SourceLive", "Waiting": lost}.get(phase, ready.reason)
    message = recv.message if phase in ("Live", "Waiting") else ready.message
    found = [events.transition(previous, status, reason, message), *map(switch_event, switches)]
    if seen.monitored:  # an Event when Black, Frozen or Silent turns True, and when it clears
        found += [Event(*e) for e in confidence.transitions(previous.get("conditions"), judged)]
    found.append(events.degraded(previous, status, "the input") if seen.telemetry else None)
    if not inp.spec.backup:  # the switch reports its own switches (above); MediaMTX's slate does not
        cond = on_air(active)
        found.append(events.switched(previous.get("activeSource"), active, cond.reason, cond.message))
    gaps = tuple((s.to, s.gap_ms) for s in switches if s.gap_ms is not None)
    return InputDecision(status, tuple(e for e in found if e), gaps)


def new_switches(inp: StreamInput, seen: InputObservation | None, previous: dict[str, Any]) -> tuple[Switched, ...]:
    """The backup switch's switches not in status yet (status.lastSwitch marks the last)."""
    if not inp.spec.backup or seen is None or seen.switch is None:
        return ()
    return switch_state.new_switches(seen.switch, (previous.get("lastSwitch") or {}).get("at"))


def switch_event(switched: Switched) -> Event | None:
    """The Event of one switch: what is on air now, and the gap readers had at the cut."""
    cond = on_air(SLATE_AS_ACTIVE.get(switched.to, switched.to))
    gap = f"; {switched.gap_ms} ms without frames at the switch" if switched.gap_ms is not None else ""
    return events.switched(switched.source, switched.to, cond.reason, cond.message + gap)


def plan_failure(body: dict[str, Any], previous: dict[str, Any], reason: str, message: str,
                 now: datetime | None = None) -> InputDecision:  # fmt: skip
    """An input that cannot have its router: Failed, with why."""
    generation = body["metadata"].get("generation", 0)
    conds = [Cond("Ready", "False", reason, message), Cond("Receiving", "Unknown", reason, "router not running")]
    status = {
        "observedGeneration": generation,
        "phase": "Failed",
        "port": None,
        "endpoint": "",
        "conditions": conditions(previous.get("conditions"), conds, generation, now_iso(now)),
    }
    event = events.transition(previous, status, reason, message)
    return InputDecision(status, (event,) if event else ())


# The switch calls its slate "slate"; status.activeSource has called it "fallback".
SLATE_AS_ACTIVE = {"slate": "fallback"}


def active_source(inp: StreamInput, seen: InputObservation | None) -> str | None:
    """primary, backup or fallback: what readers of an input with a slate get now.

    With a backup, the switch says (its state endpoint); without one, MediaMTX's
    readers' path is either online (the source) or not (its slate)."""
    if not inp.spec.slate or seen is None or seen.sample is None:
        return None
    if inp.spec.backup:
        on = seen.switch.on_air if seen.switch else None
        return SLATE_AS_ACTIVE.get(on, on) if on else None
    return "primary" if seen.sample.online else "fallback"


def on_air(active: str | None) -> Cond:
    if active == "primary":
        return Cond("OnAir", "True", "SwitchedToPrimary", "the source is on air")
    if active == "backup":
        return Cond("OnAir", "True", "SwitchedToBackup", "the primary source is gone: the backup is on air")
    if active == "fallback":
        return Cond("OnAir", "True", "SwitchedToSlate", "no source: the slate is on air")
    return Cond("OnAir", "Unknown", "HealthUnknown", "what is on air has not been read yet")


def receiving(seen: InputObservation | None) -> bool | None:
    """A source publishes (with a fallback, the path is always available: ask `online`)."""
    if seen is None or seen.health is None:
        return None
    return seen.health.ready and (seen.sample.online if seen.sample else True)


def health_fields(previous: dict[str, Any], seen: InputObservation | None) -> dict[str, Any]:
    """status.tracks/bitrateKbps/readers/lastSourceTime from the latest poll."""
    if seen is None or seen.health is None:
        return {}
    health = seen.health
    last = health.last_source_time
    when = last.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if last else previous.get("lastSourceTime")
    return {
        "tracks": list(health.tracks),
        "bitrateKbps": quantize_bitrate(previous.get("bitrateKbps"), health.bitrate_kbps) if health.ready else 0,
        "readers": health.readers,
        "lastSourceTime": when,
    }


def ingest_fields(previous: dict[str, Any], seen: InputObservation | None) -> dict[str, Any]:
    """status.ingest from the latest poll (held while not polled; gone with the source)."""
    if seen is None or seen.health is None:
        return {}
    return ingest.status_fields(previous, seen.ingest.summary if seen.ingest else None) or {"ingest": None}


def ingest_degraded(seen: SeenInput, observation: InputObservation | None) -> Cond:
    """Degraded from the ingest's window; as last written while the router was not polled
    yet (a replica that just started or took over), as the phase holds."""
    if seen.router_ready and observation is None:
        kept = ingest.carried(seen.previous.get("conditions"))
        if kept is not None:
            return kept
    reading = observation.ingest if observation else None
    return ingest.degraded(reading.summary if reading else None, receiving(observation))


def ingest_endpoint(inp: StreamInput, ingest: render.Ingest, service: dict[str, Any]) -> str:
    """Where to send a source, as the Service type exposes it."""
    meta = inp.metadata
    kind = inp.spec.service.type
    if kind == "NodePort":
        ports_ = (service.get("spec") or {}).get("ports") or []
        name = ingest.port_name if ingest.listener else "ingest"
        node_port = next((p.get("nodePort") for p in ports_ if p.get("name") == name), None)
        return render.ingest_url(ingest.protocol, "<node-address>", int(node_port or ingest.port), ingest.path)
    if kind == "LoadBalancer":
        ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        host = (ingress[0].get("ip") or ingress[0].get("hostname")) if ingress else "<pending-load-balancer>"
        return render.ingest_url(ingest.protocol, host, ingest.port, ingest.path)
    return render.ingest_url(ingest.protocol, f"{meta.name}-ingest.{meta.namespace}.svc", ingest.port, ingest.path)
