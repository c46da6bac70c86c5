"""1. Control plane at scale: N inputs x 20 outputs applied at once (one multi-document
file, one ``kubectl apply``) on the real apiserver with KWOK nodes.

Per size, on a fresh control plane and a fresh operator process:

* apply -> Pod: from the moment ``kubectl apply`` starts to the output's Pod arriving
  on a watch (what a user waits for), and from the StreamOutput itself arriving on the
  watch to its Pod (what the operator controls: kubectl creates 1,000 objects one
  request at a time, so at 50 x 20 the later objects only exist seconds after the
  apply started);
* apply -> phase: to the first non-empty ``status.phase``, and to ``Streaming``
  (KWOK marks a pod Running as soon as the scheduler has bound it);
* settled: every output Streaming; then the operator must stay quiet (no write for
  two resync periods) before its requests are counted from the audit log;
* operator peak RSS (VmHWM of a process started just for this size) and CPU seconds
  (utime+stime from apply to quiet).
"""

from __future__ import annotations

import time
from typing import Any

from . import cluster
from .cluster import ADMIN_USER, OPERATOR_USER, RssSampler
from .common import Opts, Result, Table, counts, cpu_seconds, say, summary, verdict

NAME = "scale"
TITLE = "control plane at scale (real apiserver, KWOK nodes)"
FULL_SIZES = ((1, 20), (10, 20), (50, 20))
QUICK_SIZES = ((1, 5),)
# p95 apply->Pod targets (s) per size, RSS target (MB) and writes per output.
POD_P95_TARGET = {(10, 20): 1.0, (50, 20): 2.0}
RSS_TARGET_MB = {(50, 20): 150.0}
WRITES_PER_OUTPUT_TARGET = 4.0


def run(opts: Opts) -> Result:
    res = Result(NAME, TITLE)
    sizes = QUICK_SIZES if opts.quick else FULL_SIZES
    lat = Table(
        "latency from `kubectl apply` (s): p50 / p95 / max",
        ["size", "outputs", "kubectl", "apply->Pod", "SO->Pod", "apply->phase", "apply->Streaming",
         "apply->input ready", "settled", "p95 target"],
    )
    cost = Table(
        "operator cost and API requests to settle",
        ["size", "peak RSS MB", "CPU s", "writes", "writes/output", "output's own/output", "reads/output", "pods made",
         "status patches (metrics)", "all clients' requests/output (metrics)", "targets"],
    )  # fmt: skip
    breakdown = Table("the operator's requests (audit log of its identity)", ["size", "what", "count"])
    for inputs, per in sizes:
        size = f"{inputs}x{per}"
        say(opts, f"{NAME}: {size}")
        fig = measure(opts, inputs, per)
        res.figures[size] = fig
        target = POD_P95_TARGET.get((inputs, per))
        lat.add(
            size,
            fig["outputs"],
            fig["kubectl_s"],
            _trip(fig["apply_pod"]),
            _trip(fig["so_pod"]),
            _trip(fig["apply_phase"]),
            _trip(fig["apply_streaming"]),
            _trip(fig["inputs_phase"]),
            fig["settled_s"],
            f"<{target:g}s: apply {verdict(fig['apply_pod'][1], target)}, SO {verdict(fig['so_pod'][1], target)}"
            if target
            else "",
        )
        if not fig["settled"]:
            lat.notes.append(
                f"{size} did NOT settle: {fig['streaming']}/{fig['outputs']} outputs Streaming, "
                f"{fig['inputs_ready']}/{inputs} inputs ready"
            )
        rss_t = RSS_TARGET_MB.get((inputs, per))
        w = WRITES_PER_OUTPUT_TARGET
        targets = [
            f"writes<={w:g}/output: all {_le(fig['writes_per_output'], w)}, "
            f"output's own {_le(fig['output_writes_per_output'], w)}"
        ]
        if rss_t:
            targets.append(f"RSS<{rss_t:g}MB {verdict(fig['rss_mb'], rss_t)}")
        cost.add(
            size,
            fig["rss_mb"],
            fig["cpu_s"],
            fig["writes"],
            fig["writes_per_output"],
            fig["output_writes_per_output"],
            fig["reads_per_output"],
            fig["pods_created"],
            fig["status_patches_metrics"],
            fig["all_requests_per_output"],
            "; ".join(targets),
        )
        breakdown.add(size, "requests", counts(fig["by_what"]))
        breakdown.add(size, "status patches by what they changed", counts(fig["patch_changes"]))
    lat.notes.append(
        "apply->X counts from the start of `kubectl apply`; SO->Pod from the StreamOutput's own watch event "
        "(kubectl creates objects one by one: its column is how long that took for all of them)"
    )
    lat.notes.append(
        "input ready: the input's phase Waiting (its MediaMTX Deployment available); settled: every output "
        "Streaming and every input ready, seconds from the start of `kubectl apply`"
    )
    cost.notes.append(
        "writes: the operator's create/patch/update/delete requests from the apply until it was quiet for "
        f"{2 * cluster.RESYNC_SECONDS:g}s (inputs' ConfigMap/Deployment/Services/status included), from the "
        "audit log of its own identity; output's own: its Pod, its status patches, its Events; reads: its "
        "get/list requests and finished watches; status patches: "
        "apiserver_request_total PATCH streamoutputs/status + streaminputs/status (only the operator writes these); "
        "all clients': every apiserver_request_total request in the same span (kubectl, scheduler, KWOK, "
        "controller-manager, the operator, the benchmark's own reads) per output"
    )
    res.tables += [lat, cost, breakdown]
    return res


def _trip(v: tuple[float, float, float]) -> str:
    return " / ".join(f"{x:.2f}" for x in v)


def _le(value: float, limit: float) -> str:
    return "ok" if value <= limit else "MISSED"


def measure(opts: Opts, inputs: int, per: int) -> dict[str, Any]:
    outputs = inputs * per
    settle_timeout = 60 + outputs * 0.4
    with cluster.scenario(opts.dir(f"{NAME}-{inputs}x{per}"), inputs, per) as sc:
        cl, ns, pid, watcher = sc.cl, sc.ns, sc.pid, sc.watcher
        rss = RssSampler(pid)
        rss.start()
        time.sleep(1.0)  # let the fresh operator finish its first idle resync
        metrics0 = cl.metrics()
        audit0 = cl.audit.offset()
        cpu0 = cpu_seconds(pid) or 0.0
        t0 = time.monotonic()
        kubectl_s = cl.apply(ns, sc.manifest())
        done = sc.settled(settle_timeout, interval=0.2)
        t_settled = time.monotonic()
        if not done:
            say(opts, f"{NAME}: only {watcher.streaming_count()}/{outputs} Streaming after {settle_timeout:.0f}s")
        quiet = cl.wait_quiet(OPERATOR_USER, 2 * cluster.RESYNC_SECONDS, timeout=120, start=audit0)
        cpu1 = cpu_seconds(pid) or 0.0
        audit1 = cl.audit.offset()
        metrics1 = cl.metrics()
        rss.stop()
        watcher.stop()
        op_reqs = cl.audit.requests(OPERATOR_USER, audit0, audit1)
        kubectl_writes = [r for r in cl.audit.requests(ADMIN_USER, audit0, audit1) if r.write]

    with watcher.lock:
        outs = dict(watcher.outputs)
        pods = dict(watcher.pods)
        pod_out = dict(watcher.pod_output)
    first_pod: dict[str, float] = {}
    for pname, st in pods.items():
        o = pod_out.get(pname, "")
        if st.first_seen is not None and (o not in first_pod or st.first_seen < first_pod[o]):
            first_pod[o] = st.first_seen
    names = [cluster.output_name(i, j) for i in range(inputs) for j in range(per)]
    apply_pod = [first_pod[n] - t0 for n in names if n in first_pod]
    so_pod = [first_pod[n] - outs[n].first_seen for n in names if n in first_pod and outs.get(n) and outs[n].first_seen]
    apply_phase = [outs[n].first_phase - t0 for n in names if outs.get(n) and outs[n].first_phase]
    apply_stream = [outs[n].streaming - t0 for n in names if outs.get(n) and outs[n].streaming]
    with watcher.lock:
        ins = {n: s for n, s in watcher.inputs.items()}
    input_up = [s.phases["Waiting"] - t0 for s in ins.values() if "Waiting" in s.phases]  # router ready
    writes = [r for r in op_reqs if r.write]
    # writes for the outputs themselves: their pods, their status, Events (inputs post
    # none while their phases are Pending/Waiting, the only ones they reach on KWOK)
    out_writes = [r for r in writes if r.resource in ("pods", "events") or r.resource == "streamoutputs"]
    reads = [r for r in op_reqs if not r.write]
    delta = metrics1 - metrics0
    patches = sum(v for (verb, res_, sub), v in delta.items() if verb == "PATCH" and sub == "status"
                  and res_ in ("streamoutputs", "streaminputs"))  # fmt: skip
    missing = len(names) - len(apply_pod)
    all_requests = sum(v for v in delta.values() if v > 0)
    return {
        "outputs": outputs,
        "inputs": inputs,
        "kubectl_s": kubectl_s,
        "kubectl_writes": len(kubectl_writes),
        "apply_pod": summary(apply_pod),
        "so_pod": summary(so_pod),
        "apply_phase": summary(apply_phase),
        "apply_streaming": summary(apply_stream),
        "pods_seen": len(apply_pod),
        "pods_missing": missing,
        "streaming": len(apply_stream),
        "settled": bool(done),
        "settled_s": (t_settled - t0) if done else float("nan"),
        "inputs_phase": summary(input_up),
        "inputs_ready": len(input_up),
        "quiet_after_s": quiet,
        "rss_mb": max(rss.hwm_kb, rss.peak_kb) / 1024,
        "cpu_s": cpu1 - cpu0,
        "wall_s": t_settled - t0,
        "writes": len(writes),
        "writes_per_output": len(writes) / outputs,
        "output_writes_per_output": len(out_writes) / outputs,
        "reads_per_output": len(reads) / outputs,
        "by_what": dict(cluster.count_by_what(op_reqs)),
        "patch_changes": dict(cluster.patch_changes(op_reqs)),
        "pods_created": sum(1 for r in writes if r.what == "create pods" and r.code < 300),
        "status_patches_metrics": patches,
        "all_requests_per_output": all_requests / outputs,
        "watch_errors": list(watcher.errors),
    }
