"""StreamInput reconcile: parse, resolve its Secrets, take a port, apply the router's
children (or adopt them), then decide status and Events (input_plan, pure) and act."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from .. import credentials, ports, render
from ..input_plan import SeenInput, ingest_endpoint, plan_failure, plan_input
from ..kube import NameConflict
from ..metrics import RECONCILE_SECONDS, forget_input
from ..models import SecretKeyRef, StreamInput, explain, parse_input
from ..secret_policy import Refusal, Usage
from . import executor, status_writes
from .context import Context, Key, logline
from .memory import Applied, InputKey

KIND = "StreamInput"


def reconcile(ctx: Context, key: Key) -> None:
    """Level-triggered: safe to run on every event and on every resync tick."""
    ikey = InputKey(*key)
    body = ctx.idx.one(ctx.idx.inputs, key)
    if body is None:
        ctx.memory.forget(ikey)  # its port is free again; children go by garbage collection
        forget_input(*key)
        return
    with ctx.lock(ikey), RECONCILE_SECONDS.labels(KIND).time():
        applied = _run(ctx, ikey, body)
        previous = status_writes.previous_status(ctx, ikey, body)
        if isinstance(applied, Refusal):
            decision = plan_failure(body, previous, applied.reason, applied.message)
        else:
            decision = plan_input(observe(ctx, ikey, body, *applied, previous))
        executor.act_input(ctx, ikey, body, decision)


def _run(ctx: Context, key: InputKey, body: dict[str, Any]) -> tuple[StreamInput, int, Applied] | Refusal:
    """The router applied (or adopted, or unchanged), or why it cannot be."""
    try:
        inp = parse_input(body)
    except ValidationError as exc:
        return Refusal("InvalidSpec", explain(exc))
    plan = router_plan(ctx, inp)
    if isinstance(plan, Refusal):
        return plan
    assignment = _take_port(ctx, key, inp, body["metadata"].get("creationTimestamp", ""))
    if assignment.port is None:
        if assignment.conflict_with:
            other = "/".join(assignment.conflict_with)
            return Refusal("PortConflict", f"port {inp.spec.port} is already used by StreamInput {other}")
        return Refusal("NoFreePort", f"no free port left in {ctx.settings.port_min}-{ctx.settings.port_max}")
    try:
        return inp, assignment.port, _apply_children(ctx, key, inp, assignment.port, plan)
    except NameConflict as exc:
        return Refusal("NameConflict", f"{exc}; rename this StreamInput")


def observe(
    ctx: Context, key: InputKey, body: dict[str, Any], inp: StreamInput, port: int, applied: Applied,
    previous: dict[str, Any],
) -> SeenInput:  # fmt: skip
    router = ctx.idx.one(ctx.idx.routers, (key.namespace, key.name)) or {}
    return SeenInput(
        body=body,
        input=inp,
        port=port,
        endpoints=applied.endpoints,
        router_ready=int(router.get("readyReplicas") or 0) >= 1,
        observation=ctx.memory.input(key).observation,
        previous=previous,
        now=datetime.now(UTC),
        monitored=ctx.settings.confidence_monitor,
        telemetry=ctx.settings.telemetry,
    )


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


def _take_port(ctx: Context, key: InputKey, inp: StreamInput, created: str) -> ports.Assignment:
    """A port for the input, handed out one input at a time (remembered until in status)."""
    with ctx.port_lock:
        claims = _claims(ctx)
        me = (key.namespace, key.name)
        mine = next((c for c in claims if c.key == me), None)
        result = ports.assign(mine, me, created, inp.spec.port, claims, ctx.settings.port_range)
        if result.port is not None:
            ctx.memory.input(key).port = result.port
        return result


def _claims(ctx: Context) -> list[ports.Claim]:
    """Every port held: in statuses, fixed in specs, or just handed out in memory."""
    out: dict[Key, ports.Claim] = {}
    remembered = {(k.namespace, k.name): record.port for k, record in ctx.memory.inputs()}
    for key, bodies in ctx.idx.items(ctx.idx.inputs):
        for body in bodies:
            spec, status = body.get("spec") or {}, body.get("status") or {}
            held = None if status.get("phase") == "Failed" else status.get("port")
            port = spec.get("port") or held or remembered.get(key)
            created = body["metadata"].get("creationTimestamp", "")
            if port:
                out[key] = ports.Claim(key, int(port), created)
            backup_port = (spec.get("backup") or {}).get("port")
            if backup_port:
                # A backup's own listener: never handed out to anyone, this input included.
                backup_key = (key[0], f"{key[1]} (backup)")
                out[backup_key] = ports.Claim(backup_key, int(backup_port), created)
    return list(out.values())


def _apply_children(ctx: Context, key: InputKey, inp: StreamInput, port: int, plan: render.RouterPlan) -> Applied:
    """Apply the Secret, ConfigMap, NetworkPolicy, Deployment and Services; remember them."""
    docs = render.render_input(inp, port, ctx.settings, plan)
    digest = render.applied_digest(docs)
    memory = ctx.memory.input(key)
    if memory.applied and memory.applied.digest == digest:
        return memory.applied
    services = _adopt(ctx, key, docs, digest)
    if services is None:
        stored = {(d["kind"], d["metadata"]["name"]): ctx.kube.apply_owned(d) for d in docs}
        inside, ingest = (stored[("Service", s["metadata"]["name"])] for s in render.input_services(docs))
        logline("router-applied", namespace=key.namespace, input=key.name, digest=digest)
    else:
        inside, ingest = services
        logline("router-adopted", namespace=key.namespace, input=key.name, digest=digest)
    endpoints = tuple(ingest_endpoint(inp, i, ingest) for i in render.ingests(inp, port))
    ips = frozenset(ip for s in (inside, ingest) if (ip := (s.get("spec") or {}).get("clusterIP")) and ip != "None")
    creds = plan.credentials
    api_host = (inside.get("spec") or {}).get("clusterIP") or ""
    memory.applied = Applied(digest, endpoints, api_host, ips, (creds.api_user, creds.api_password))
    return memory.applied


def _adopt(
    ctx: Context, key: InputKey, docs: list[dict[str, Any]], digest: str
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """After a restart: children an earlier run applied, unchanged (the digest on the
    Deployment says so), need only their two Services read, not everything re-applied."""
    router = ctx.idx.one(ctx.idx.routers, (key.namespace, key.name)) or {}
    if router.get("appliedDigest") != digest:
        return None
    inside, ingest = (ctx.kube.get(doc) for doc in render.input_services(docs))
    return (inside, ingest) if inside and ingest else None
