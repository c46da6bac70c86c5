"""Schedules across a failover of two peered replicas: SIGKILL of the active one in the
middle of two windows. The window still open keeps its pod (nothing re-created when the
other replica takes over); the window that closed while no replica acted is closed as
soon as the other one resumes (it looks at everything at once)."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from streamdist_dev.controlplane import ControlPlane
from streamdist_dev.kubectl import Kubectl
from streamdist_dev.operator import OperatorProcess
from tests.integration.test_schedule_boundaries import (
    BOUNDARY_S,
    HARNESS_S,
    PodLog,
    _ahead,
    _mono,
    _one_off,
    _output,
    _reasons,
)
from tests.reliability.support import poll, user_kubeconfig

pytestmark = pytest.mark.timeout(600)
REPO = Path(__file__).resolve().parents[2]
PEERING = "sched-peering"


def _replicas(cp: ControlPlane, tmp_path: Path) -> tuple[OperatorProcess, OperatorProcess]:
    """A (priority 2, acts) and B (priority 1, waits), peered."""
    cp.kubectl("apply", "-f", str(REPO / "charts/streamdist/crds/kopf-peerings.yaml"))
    cp.kubectl("wait", "--for=condition=Established", "crd/clusterkopfpeerings.kopf.dev", "--timeout=60s")
    cp.apply({"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": PEERING}})
    env = {"STREAMDIST_PEERING": PEERING}
    return tuple(  # type: ignore[return-value]
        OperatorProcess(user_kubeconfig(cp, f"sched-{n}", tmp_path / n), tmp_path / n, {**env, "STREAMDIST_PRIORITY": p})
        for n, p in (("a", "2"), ("b", "1"))
    )


def _resumed_at(b: OperatorProcess) -> float | None:
    """When B's own loop saw it acts again (its log line), on the monotonic clock."""
    for line in b.logs().splitlines():
        if line.startswith("{") and '"resumed stale_pods=' in line:
            return _mono(datetime.fromisoformat(json.loads(line)["timestamp"]))
    return None


def _uid(k: Kubectl, name: str) -> str | None:
    live = [p for p in k.items("pods", f"streamdist.io/output={name}") if not p["metadata"].get("deletionTimestamp")]
    return live[0]["metadata"]["uid"] if len(live) == 1 else None


def test_a_failover_keeps_an_open_window_and_closes_one_that_ended_meanwhile(
        control_plane: ControlPlane, operator: OperatorProcess, rk: Kubectl, tmp_path: Path):
    k, cp = rk, control_plane
    a, b = _replicas(cp, tmp_path)
    operator.stop()  # the suite's standalone operator would act beside them
    try:
        b.start()
        a.start()
        poll("B pauses", lambda: "paused peering=" + PEERING in b.logs(), timeout=60, detail=lambda: b.logs()[-2000:])
        k.apply_file("examples/inputs/udp.yaml")
        poll("router", lambda: k.status("si", "studio-udp").get("endpoint"), timeout=60)
        start = _ahead(4)
        short_end = start + timedelta(seconds=8)
        with PodLog(cp.kubeconfig, k.ns) as log:
            k("apply", "-f", "-", input=_output("long", _one_off(start, start + timedelta(minutes=10))) + "---\n" +
              _output("short", _one_off(start, short_end)).replace("playout.example:5000", "playout.example:5001"))
            long_uid = poll("long's pod", lambda: _uid(k, "long"), timeout=30)
            short_uid = poll("short's pod", lambda: _uid(k, "short"), timeout=30)
            a.kill()
            poll("B resumes", lambda: _resumed_at(b), timeout=150, detail=lambda: b.logs()[-2000:])
            poll("short closed", lambda: log.first(short_uid, deleting=True), timeout=30)
            time.sleep(6)  # B's next resync too
            resumed = _resumed_at(b) or 0.0
            closed = (log.first(short_uid, deleting=True) or 0.0) - max(resumed, _mono(short_end))
            print(f"\nfailover: B resumed {resumed - _mono(short_end):.1f} s after the short window's end; "
                  f"its stop asked {closed:.3f} s after B resumed")
            assert resumed > _mono(short_end), "the window closed while no replica acted"
            assert closed < BOUNDARY_S + HARNESS_S
            assert _uid(k, "long") == long_uid, "the open window's pod is kept"
            assert [uid for _, uid in log.added()].count(long_uid) == 1 and len(log.added()) == 2, "nothing re-created"
        assert k.status("so", "long")["phase"] == "Streaming" and k.status("so", "short")["phase"] == "Scheduled"
        assert "WindowClosed" in _reasons(k, "short")
    finally:
        a.kill()
        b.stop()
        operator.start()
