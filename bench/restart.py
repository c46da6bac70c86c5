"""3. Operator restart: SIGKILL the operator with every output settled, start it again,
time the re-adoption, and prove nothing was duplicated or lost.

Before the kill, every tenth output's pod is given ``restartCount: 3`` (a status
patch, as a kubelet would write after three FFmpeg restarts) and the benchmark waits
until those outputs report ``reconnects: 3``, so "no count lost" tests a count.

After ``kill -9`` and a fresh start:

* live: the operator's liveness endpoint answers;
* indexed: its own /metrics (built from kopf's indexes) list every output as Streaming;
* reconciled: it has run at least as many StreamOutput reconciles as there are outputs
  (``streamdist_reconcile_duration_seconds_count``);
* marker: a new StreamOutput, applied right after the start, has its Pod (kopf runs
  no handler before its indexes are filled, so the operator is acting on events again).

Re-adopted = the later of "reconciled" and "marker". Then, after a quiet period,
every output's pod must be the same (name and UID), pods == outputs, statuses
(phase, reconnects, pod) unchanged, and the operator must have written nothing for
the old outputs.
"""

from __future__ import annotations

import json
import time
from typing import Any

from . import cluster
from .cluster import OPERATOR_USER, Cluster, Watcher
from .common import Opts, Result, Table, counts, cpu_seconds, measured, mem_kb, say, wait_until

NAME = "restart"
TITLE = "operator restart (SIGKILL) with every output settled"
TARGET_S = 30.0
MARKER_INPUT = "in-marker"
MARKER_OUTPUT = "out-marker"
RESTARTED = 3  # restartCount given to every tenth output's pod


def run(opts: Opts) -> Result:
    inputs, per = (2, 20) if opts.quick else (50, 20)
    res = measured(opts, NAME, TITLE, f"{inputs}x{per}", lambda: measure(opts, inputs, per))
    fig = res.figures
    t = Table(
        f"re-adoption of {fig['outputs']} outputs ({inputs}x{per}) after kill -9 (seconds from the kill)",
        ["live", "indexed", "reconciled", "marker pod", "re-adopted", f"target <{TARGET_S:g}s"],
    )
    t.add(fig["live_s"], fig["indexed_s"], fig["reconciled_s"], fig["marker_s"], fig["readopted_s"],
          "ok" if fig["readopted_s"] is not None and fig["readopted_s"] < TARGET_S else "MISSED")  # fmt: skip
    c = Table(
        "what the restart changed",
        ["pods before", "pods after", "new pods", "deleted pods", "statuses changed", "reconnects before",
         "reconnects after", "writes (not marker)", "CPU s", "RSS MB"],
    )  # fmt: skip
    c.add(
        fig["pods_before"],
        fig["pods_after"],
        fig["duplicate_pods"],
        fig["deleted_pods"],
        fig["statuses_changed"],
        fig["reconnects_before"],
        fig["reconnects_after"],
        fig["old_writes"],
        fig["cpu_s"],
        fig["rss_mb"],
    )
    c.notes.append(
        f"pods counted without the marker's; new/deleted pods: watch events for the old outputs since the kill; "
        f"reconnects: sum over outputs (every tenth pod was given restartCount {RESTARTED} before the kill); "
        "CPU/RSS: the restarted operator from its start to the end of the quiet period"
    )
    if fig["old_writes_by_what"]:
        c.notes.append("writes after the restart, not for the marker: " + counts(fig["old_writes_by_what"]))
    for line in fig["patch_bodies"]:
        c.notes.append(f"status patch after the restart: {line}")
    res.tables += [t, c]
    return res


def _status_key(st: dict[str, Any]) -> tuple[Any, ...]:
    return (st.get("phase"), int(st.get("reconnects") or 0), st.get("pod"))


def measure(opts: Opts, inputs: int, per: int) -> dict[str, Any]:
    outputs = inputs * per
    work = opts.dir(f"{NAME}-{inputs}x{per}")
    docs = cluster.manifests(inputs, per)
    docs.insert(0, {"apiVersion": "streamdist.io/v1alpha1", "kind": "StreamInput", "metadata": {"name": MARKER_INPUT},
                    "spec": {"protocol": "udp"}})  # fmt: skip
    manifest = cluster.write_manifests(work / "manifest.yaml", docs)
    marker = cluster.write_manifests(work / "marker.yaml", [cluster.output_doc(MARKER_INPUT, MARKER_OUTPUT)])
    names = [cluster.output_name(i, j) for i in range(inputs) for j in range(per)]
    with Cluster(work / "cluster", nodes=cluster.nodes_for(outputs + inputs + 2)) as cl:
        ns = cl.namespace("bench")
        op = cl.start_operator()
        watcher = Watcher(cl.cp.kubeconfig, ns).start()
        cl.apply(ns, manifest)
        if not wait_until(lambda: watcher.settled(outputs, inputs + 1), 60 + outputs * 0.4):
            raise RuntimeError(f"only {watcher.streaming_count()}/{outputs} outputs Streaming")

        # every tenth output: its pod has restarted RESTARTED times
        restarted = names[::10]
        patch = json.dumps([{"op": "replace", "path": "/status/containerStatuses/0/restartCount", "value": RESTARTED}])
        for pod in watcher.live_pods():
            if watcher.pod_output.get(pod) in restarted:
                cl.cp.kubectl("patch", "pod", pod, "-n", ns, "--subresource=status", "--type=json", "-p", patch)

        def counted() -> bool:
            with watcher.lock:
                return all(int(watcher.outputs[n].status.get("reconnects") or 0) == RESTARTED for n in restarted)

        if not wait_until(counted, 60):
            raise RuntimeError("outputs did not report the pods' restartCount")
        cl.wait_quiet(OPERATOR_USER, 2 * cluster.RESYNC_SECONDS, timeout=120)

        with watcher.lock:
            before = {n: _status_key(watcher.outputs[n].status) for n in names}
            added0 = dict(watcher.pod_added)
            deleted0 = dict(watcher.pod_deleted)
        pods_before = {p: s.uid for p, s in watcher.live_pods().items()}

        say(opts, f"{NAME}: kill -9 with {len(pods_before)} pods")
        op.kill()
        t_kill = time.monotonic()
        audit0 = cl.audit.offset()
        op.start(timeout=120)  # returns once the liveness endpoint answers
        t_live = time.monotonic()
        assert op.proc is not None
        pid = op.proc.pid
        cpu0 = 0.0  # a fresh process: all its CPU counts
        cl.apply(ns, marker)
        marks: dict[str, float] = {}
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and len(marks) < 3:
            now = time.monotonic()
            if "marker" not in marks and watcher.pod_seen(MARKER_OUTPUT):
                marks["marker"] = watcher.pod_seen(MARKER_OUTPUT) or now
            try:
                text = cluster.operator_metrics(op.metrics_port)
            except OSError:
                text = ""
            streaming = cluster.metric_sum(text, "streamdist_output_phase{", 'phase="Streaming"')
            if "indexed" not in marks and streaming >= outputs:
                marks["indexed"] = now
            if "reconciled" not in marks and cluster.metric_sum(
                text, "streamdist_reconcile_duration_seconds_count", 'kind="StreamOutput"'
            ) >= outputs:
                marks["reconciled"] = now
            time.sleep(0.1)
        cl.wait_quiet(OPERATOR_USER, 2 * cluster.RESYNC_SECONDS, timeout=120, start=audit0)
        cpu1 = cpu_seconds(pid) or 0.0
        rss_mb = mem_kb(pid).get("VmHWM", 0) / 1024
        audit1 = cl.audit.offset()
        reqs = cl.audit.requests(OPERATOR_USER, audit0, audit1)
        with watcher.lock:
            after = {n: _status_key(watcher.outputs[n].status) for n in names}
            added = {o: c - added0.get(o, 0) for o, c in watcher.pod_added.items() if o != MARKER_OUTPUT}
            deleted = {o: c - deleted0.get(o, 0) for o, c in watcher.pod_deleted.items() if o != MARKER_OUTPUT}
        pods_after = {p: s.uid for p, s in watcher.live_pods().items() if watcher.pod_output.get(p) != MARKER_OUTPUT}
        watcher.stop()

    old_writes = [r for r in reqs if r.write and MARKER_OUTPUT not in r.name and r.resource != "events"]
    # events have generated names: count those about the marker as the marker's (it posts one when Streaming)
    events = [r for r in reqs if r.write and r.resource == "events"]
    old_writes += events[1:] if events else []
    rel = {k: v - t_kill for k, v in marks.items()}
    readopted = max(rel["marker"], rel["reconciled"]) if "marker" in rel and "reconciled" in rel else None
    return {
        "outputs": outputs,
        "live_s": t_live - t_kill,
        "indexed_s": rel.get("indexed"),
        "reconciled_s": rel.get("reconciled"),
        "marker_s": rel.get("marker"),
        "readopted_s": readopted,
        "pods_before": len(pods_before),
        "pods_after": len(pods_after),
        "same_pods": pods_before == pods_after,
        "duplicate_pods": sum(added.values()),
        "deleted_pods": sum(deleted.values()),
        "statuses_changed": sum(1 for n in names if before[n] != after[n]),
        "reconnects_before": sum(v[1] for v in before.values()),
        "reconnects_after": sum(v[1] for v in after.values()),
        "old_writes": len(old_writes),
        "old_writes_by_what": dict(cluster.count_by_what(old_writes)),
        "patch_bodies": cluster.status_patches([r for r in old_writes if r.subresource == "status"]),
        "cpu_s": cpu1 - cpu0,
        "rss_mb": rss_mb,
    }
