"""Act: carry out a decision (output_plan, input_plan) with the fewest API calls, in an
order that never has two FFmpegs on one destination, and remember what was done."""

from __future__ import annotations

from typing import Any

from .. import metrics
from ..input_plan import InputDecision
from ..output_plan import SERVICE_DELETED, OutputDecision
from . import status_writes
from .context import Context, logline
from .memory import InputKey, OutputKey


def act_output(ctx: Context, key: OutputKey, body: dict[str, Any], decision: OutputDecision) -> None:
    """Deletes first, then children, then the new pod; status and Events last. The
    schedule's timer is armed before any of it: a failed call does not lose it."""
    ctx.timers.arm(key, decision.wake)
    for pod in decision.deletes:
        ctx.kube.delete_pod(key.namespace, pod.name, pod.uid, grace_seconds=pod.grace)
        logline("pod-deleted", namespace=key.namespace, output=key.name, pod=pod.name)
    memory = ctx.memory.output(key)
    if decision.delete_service:
        ctx.kube.delete_service(key.namespace, key.name, body["metadata"].get("uid", ""))
        memory.extras = SERVICE_DELETED
    for extra in decision.extras:
        ctx.kube.apply_owned(extra)  # NameConflict: the caller decides again
    if decision.extras:
        memory.extras = decision.extras_digest
    if decision.create is not None and ctx.kube.create(decision.create):
        logline("pod-created", namespace=key.namespace, output=key.name, pod=decision.create["metadata"]["name"])
    if decision.failures is not None:
        memory.failures = decision.failures
    if decision.reset_flow:
        memory.flow = None
    _report(ctx, key, body, decision.status, decision.events)


def act_input(ctx: Context, key: InputKey, body: dict[str, Any], decision: InputDecision) -> None:
    """Status and Events; the switch gaps into their histogram once the status that
    shows them is written (a reconcile that repeats it counts nothing twice)."""
    if _report(ctx, key, body, decision.status, decision.events):
        metrics.observe_switch_gaps(key.namespace, key.name, decision.switch_gaps)


def _report(ctx: Context, key: InputKey | OutputKey, body: dict[str, Any], status: Any, events: Any) -> bool:
    """Write the status when it changed; its Events only then (a repeat posts nothing).
    True when it was written."""
    if status is None:
        return False
    before = status_writes.previous_status(ctx, key, body).get("phase")
    if not status_writes.write(ctx, key, body, status):
        return False
    if status.get("phase") and status["phase"] != before:
        kind = status_writes.kind_of(key)
        logline("transition", kind=kind, namespace=key.namespace, name=key.name, phase=status["phase"])
    for event in events:
        status_writes.post(ctx, key, body, event)
    return True
