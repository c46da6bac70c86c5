"""StreamInput: parse, take a port, render the router, apply it, report."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from pydantic import ValidationError

from .. import credentials, ports, render
from ..kube import NameConflict
from ..metrics import RECONCILE_SECONDS
from ..models import SecretKeyRef, StreamInput, explain, parse_input
from ..secret_policy import Refusal, Usage
from ..status import Cond, conditions, input_phase, now_iso, quantize_bitrate
from .context import Applied, Context, Endpoints, InputObservation, Key, logline
from .reporting import previous_status, report

KIND = "StreamInput"


def reconcile(ctx: Context, key: Key) -> None:
    """Level-triggered: safe to run on every event and on every resync tick."""
    body = ctx.idx.one(ctx.idx.inputs, key)
    if body is None:
        forget(ctx, key)
        return
    with ctx.lock("si", key), RECONCILE_SECONDS.labels(KIND).time():
        _reconcile(ctx, key, body)


def forget(ctx: Context, key: Key) -> None:
    """An input is gone: its port is free again (children go by garbage collection)."""
    with ctx.port_lock:
        ctx.assigned.pop(key, None)
    ctx.applied.pop(key, None)
    ctx.health.pop(key, None)
    ctx.forget(KIND, key)


def _reconcile(ctx: Context, key: Key, body: dict[str, Any]) -> None:
    meta = body["metadata"]
    try:
        inp = parse_input(body)
    except ValidationError as exc:
        _fail(ctx, body, "InvalidSpec", explain(exc))
        return
    plan = router_plan(ctx, inp)
    if isinstance(plan, Refusal):
        _fail(ctx, body, plan.reason, plan.message)
        return
    assignment = _take_port(ctx, key, inp, meta.get("creationTimestamp", ""), body.get("status") or {})
    if assignment.port is None:
        if assignment.conflict_with:
            other = "/".join(assignment.conflict_with)
            _fail(ctx, body, "PortConflict", f"port {inp.spec.port} is already used by StreamInput {other}")
        else:
            _fail(ctx, body, "NoFreePort", f"no free port left in {ctx.settings.port_min}-{ctx.settings.port_max}")
        return
    try:
        applied = _apply_children(ctx, key, inp, assignment.port, plan)
    except NameConflict as exc:
        _fail(ctx, body, "NameConflict", f"{exc}; rename this StreamInput")
        return
    _report(ctx, body, inp, assignment.port, applied.endpoints)


def router_plan(ctx: Context, inp: StreamInput) -> render.RouterPlan | Refusal:
    """The router's credentials, with the publisher's and the SRT passphrase from the
    Secrets the spec names (only Secrets that opted in, values checked)."""
    spec, ns = inp.spec, inp.metadata.namespace
    publisher = passphrase = None
    if spec.publish_secret_ref:
        got = _secret(ctx, ns, spec.publish_secret_ref, "publish", "InvalidPublishCredential")
        if isinstance(got, Refusal):
            return got
        publisher = credentials.parse_publisher(got)
    if spec.passphrase_secret_ref:
        got = _secret(ctx, ns, spec.passphrase_secret_ref, "passphrase", "InvalidPassphrase")
        if isinstance(got, Refusal):
            return got
        passphrase = got
    return render.RouterPlan(ctx.router_credentials(ns, inp.metadata.name, inp.metadata.uid), publisher, passphrase)


_CHECKS = {"publish": credentials.parse_publisher, "passphrase": credentials.check_srt_passphrase}


def _secret(ctx: Context, ns: str, ref: SecretKeyRef, usage: Usage, invalid: str) -> str | Refusal:
    """A Secret value that may be used for `usage` and passes its check."""
    got = ctx.read_secret(ns, ref, usage)
    if isinstance(got, Refusal):
        return got
    try:
        _CHECKS[usage](got[0])
    except credentials.CredentialError as exc:
        return Refusal(invalid, str(exc))
    return got[0]


def _take_port(ctx: Context, key: Key, inp: StreamInput, created: str, status: dict[str, Any]) -> ports.Assignment:
    with ctx.port_lock:
        claims = list(_claims(ctx))
        mine = next((c for c in claims if c.key == key), None)
        result = ports.assign(mine, key, created, inp.spec.port, claims, ctx.settings.port_range)
        if result.port is not None:
            ctx.assigned[key] = result.port
        return result


def _claims(ctx: Context) -> list[ports.Claim]:
    """Every port held: in statuses, fixed in specs, or just handed out in memory."""
    out: dict[Key, ports.Claim] = {}
    for key, store in ctx.idx.inputs.items():
        for body in store:
            status = body.get("status") or {}
            spec_port = (body.get("spec") or {}).get("port")
            failed = status.get("phase") == "Failed"
            port = spec_port or (None if failed else status.get("port")) or ctx.assigned.get(key)
            created = body["metadata"].get("creationTimestamp", "")
            if port:
                out[key] = ports.Claim(key, int(port), created)
            backup_port = ((body.get("spec") or {}).get("backup") or {}).get("port")
            if backup_port:
                # A backup's own listener: never handed out to anyone, this input included.
                backup_key = (key[0], f"{key[1]} (backup)")
                out[backup_key] = ports.Claim(backup_key, int(backup_port), created)
    return list(out.values())


def _apply_children(ctx: Context, key: Key, inp: StreamInput, port: int, plan: render.RouterPlan) -> Applied:
    """Apply the Secret, ConfigMap, NetworkPolicy, Deployment and Services; remember them."""
    docs = render.render_input(inp, port, ctx.settings, plan)
    digest = render.applied_digest(docs)
    last = ctx.applied.get(key)
    if last and last.digest == digest:
        return last
    services = _adopt(ctx, key, docs, digest)
    if services is None:
        stored = {(d["kind"], d["metadata"]["name"]): ctx.kube.apply_owned(d) for d in docs}
        inside, ingest = (stored[("Service", s["metadata"]["name"])] for s in render.input_services(docs))
        logline("router-applied", namespace=key[0], input=key[1], digest=digest)
    else:
        inside, ingest = services
        logline("router-adopted", namespace=key[0], input=key[1], digest=digest)
    endpoints = tuple(ingest_endpoint(inp, i, ingest) for i in render.ingests(inp, port))
    ips = frozenset(ip for s in (inside, ingest) if (ip := (s.get("spec") or {}).get("clusterIP")) and ip != "None")
    creds = plan.credentials
    api_host = (inside.get("spec") or {}).get("clusterIP") or ""
    applied = Applied(digest, endpoints, api_host, ips, (creds.api_user, creds.api_password))
    ctx.applied[key] = applied
    return applied


def _adopt(
    ctx: Context, key: Key, docs: list[dict[str, Any]], digest: str
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """After a restart: children an earlier run applied, unchanged (the digest on the
    Deployment says so), need only their two Services read, not everything re-applied."""
    router = ctx.idx.one(ctx.idx.routers, key) or {}
    if router.get("appliedDigest") != digest:
        return None
    inside, ingest = (ctx.kube.get(doc) for doc in render.input_services(docs))
    return (inside, ingest) if inside and ingest else None


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


def _report(ctx: Context, body: dict[str, Any], inp: StreamInput, port: int, endpoints: Endpoints) -> None:
    key = (inp.metadata.namespace, inp.metadata.name)
    router = ctx.idx.one(ctx.idx.routers, key) or {}
    router_ready = int(router.get("readyReplicas") or 0) >= 1
    previous = previous_status(ctx, KIND, body)
    seen = ctx.health.get(key) if router_ready else None
    phase, ready, recv = input_phase(router_ready, _receiving(seen))
    active = active_source(inp, seen)
    conds = [ready, recv] + ([on_air(active)] if inp.spec.slate else [])
    status = {
        "observedGeneration": inp.metadata.generation,
        "phase": phase,
        "port": port,
        "endpoint": endpoints[0],
        **({"backupEndpoint": endpoints[1]} if len(endpoints) > 1 else {}),
        **health_fields(previous, seen),
        **({"activeSource": active} if active else {}),
        "conditions": conditions(previous.get("conditions"), conds, inp.metadata.generation, now_iso()),
    }
    reason = {"Live": "SourceLive", "Waiting": "Waiting" if previous.get("phase") != "Live" else "SourceLost"}.get(
        phase, ready.reason
    )
    report(ctx, KIND, body, status, reason, recv.message if phase in ("Live", "Waiting") else ready.message)
    switched = previous.get("activeSource")
    if active and switched and switched != active:
        cond = on_air(active)
        ctx.kube.event(
            {**body, "kind": KIND}, "Normal" if active == "primary" else "Warning", cond.reason, cond.message
        )


def active_source(inp: StreamInput, seen: InputObservation | None) -> str | None:
    """primary, backup or fallback: what readers of an input with a slate get now.

    With a backup, the readers' path is fed by the switch's relay, whose RTSP session
    names its role; anything else online there counts as the primary."""
    if not inp.spec.slate or seen is None or seen.sample is None:
        return None
    if not seen.sample.online:
        return "fallback"
    return "backup" if inp.spec.backup and seen.relay == "backup" else "primary"


def on_air(active: str | None) -> Cond:
    if active == "primary":
        return Cond("OnAir", "True", "SwitchedToPrimary", "the source is on air")
    if active == "backup":
        return Cond("OnAir", "True", "SwitchedToBackup", "the primary source is gone: the backup is on air")
    if active == "fallback":
        return Cond("OnAir", "True", "SwitchedToFallback", "no source: the fallback slate is on air")
    return Cond("OnAir", "Unknown", "HealthUnknown", "MediaMTX's control API has not answered yet")


def _receiving(seen: InputObservation | None) -> bool | None:
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


def _fail(ctx: Context, body: dict[str, Any], reason: str, message: str) -> None:
    generation = body["metadata"].get("generation", 0)
    previous = previous_status(ctx, KIND, body)
    conds = [Cond("Ready", "False", reason, message), Cond("Receiving", "Unknown", reason, "router not running")]
    status = {
        "observedGeneration": generation,
        "phase": "Failed",
        "port": None,
        "endpoint": "",
        "conditions": conditions(previous.get("conditions"), conds, generation, now_iso()),
    }
    report(ctx, KIND, body, status, reason, message)
