"""Schedules on a real apiserver (KWOK plays the kubelet), with windows a few seconds
ahead. How late each boundary is kept is measured on a watch of the pods in this
process (receive time, monotonic clock): the pod exists within 1 s after a window
opens, and its stop is asked for (deletionTimestamp: the kubelet sends FFmpeg SIGTERM)
within 1 s after the window closes. The figures are printed (pytest -s shows them).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import kubernetes
import pytest

from streamdist_dev.kubectl import Kubectl

# What the measurement itself may add: the watch's delivery to this process and this
# process's own scheduling, on a machine shared with the other suites.
HARNESS_S = 0.5
BOUNDARY_S = 1.0
OUTPUT_PODS = "app.kubernetes.io/managed-by=streamdist,streamdist.io/output"
PARIS_SUMMER = timezone(timedelta(hours=2))  # windows are written with an offset, as users do


@dataclass
class PodLog:
    """Every watch event of one namespace's output pods: (monotonic time, type, uid, deleting)."""

    kubeconfig: Any
    namespace: str
    events: list[tuple[float, str, str, bool]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> PodLog:
        api = kubernetes.config.new_client_from_config(config_file=str(self.kubeconfig))
        self._core = kubernetes.client.CoreV1Api(api)
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        assert ready.wait(30), "pod watch not established"
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _run(self, ready: threading.Event) -> None:
        from kubernetes.watch.watch import iter_resp_lines

        listed = self._core.list_namespaced_pod(self.namespace, label_selector=OUTPUT_PODS, _preload_content=False)
        rv = json.loads(listed.data)["metadata"]["resourceVersion"]
        resp = self._core.list_namespaced_pod(self.namespace, label_selector=OUTPUT_PODS, watch=True, resource_version=rv, timeout_seconds=5,
                                              _preload_content=False)
        ready.set()
        while not self._stop.is_set():
            for line in iter_resp_lines(resp):
                t = time.monotonic()
                ev = json.loads(line)
                meta = ev["object"]["metadata"]
                rv = meta.get("resourceVersion", rv)
                self.events.append((t, ev["type"], meta.get("uid", ""), bool(meta.get("deletionTimestamp"))))
            resp = self._core.list_namespaced_pod(self.namespace, label_selector=OUTPUT_PODS, watch=True, resource_version=rv, timeout_seconds=5,
                                                  _preload_content=False)

    def added(self) -> list[tuple[float, str]]:
        return [(t, uid) for t, kind, uid, _ in self.events if kind == "ADDED"]

    def first(self, uid: str, deleting: bool = False, kind: str = "") -> float | None:
        return next((t for t, k, u, d in self.events if u == uid and (d or not deleting) and (not kind or k == kind)),
                    None)


def _mono(at: datetime) -> float:
    """The monotonic time of a wall-clock instant (this machine's clocks, read together)."""
    return time.monotonic() + (at - datetime.now(UTC)).total_seconds()


def _iso(at: datetime) -> str:
    return at.astimezone(PARIS_SUMMER).isoformat(timespec="seconds")


def _z(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _output(name: str, windows: str, lead: int = 0) -> str:
    return (f"apiVersion: streamdist.io/v1alpha1\nkind: StreamOutput\nmetadata: {{name: {name}}}\n"
            f"spec:\n  input: studio-udp\n  url: 'udp://playout.example:5000'\n"
            f"  schedule:\n    leadSeconds: {lead}\n    windows:\n{windows}")


def _one_off(start: datetime, end: datetime) -> str:
    return f"    - {{start: '{_iso(start)}', end: '{_iso(end)}'}}\n"


def _ahead(seconds: float) -> datetime:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).replace(microsecond=0)


def _reasons(k: Kubectl, name: str) -> list[str]:
    return [e["reason"] for e in sorted(k.events(name), key=lambda e: e.get("lastTimestamp") or "")]


def _live_pods(k: Kubectl, name: str) -> list[dict]:
    return [p for p in k.items("pods", f"streamdist.io/output={name}") if not p["metadata"].get("deletionTimestamp")]


def test_two_windows_open_and_close_on_time(k: Kubectl, control_plane):
    """Two one-off windows 3 s apart (the second reuses the pod's name): each boundary
    kept within 1 s; Scheduled with nextStart before, nextStop inside, Events both ways."""
    k.apply_file("examples/inputs/udp.yaml")
    k.wait("router", lambda: k.status("si", "studio-udp").get("endpoint"))
    first = _ahead(8)
    windows = [(first, first + timedelta(seconds=5)), (first + timedelta(seconds=8), first + timedelta(seconds=13))]
    with PodLog(control_plane.kubeconfig, k.ns) as log:
        k("apply", "-f", "-", input=_output("show", "".join(_one_off(*w) for w in windows), lead=0))
        status = k.wait("Scheduled", lambda: (s := k.status("so", "show")).get("phase") == "Scheduled" and s)
        assert status["nextStart"] == _z(first) and "nextStop" not in status
        assert [c["reason"] for c in status["conditions"] if c["type"] == "Ready"] == ["OutsideWindow"]
        wide = k("get", "so", "show", "-o", "wide").stdout
        assert wide.split("\n")[0].split()[-4:] == ["NEXT", "START", "NEXT", "STOP"] and _z(first) in wide
        assert not _live_pods(k, "show")
        k.wait("inside the first window", lambda: k.status("so", "show").get("nextStop") == _z(windows[0][1]),
               timeout=20)
        k.wait("after both windows", lambda: datetime.now(UTC) > windows[1][1] + timedelta(seconds=2), timeout=30)
        k.wait("off air again", lambda: k.status("so", "show").get("phase") == "Scheduled")
        pods = log.added()
    assert len(pods) == 2, log.events
    figures = []
    for (t_added, uid), (start, end) in zip(pods, windows, strict=True):
        opened = t_added - _mono(start)
        deleting = log.first(uid, deleting=True)
        gone = log.first(uid, kind="DELETED")
        assert deleting is not None, "the pod's stop was asked for"
        closed = deleting - _mono(end)
        figures.append((opened, closed, gone - _mono(end) if gone else None))
    print(f"\nboundary lateness (s): {[tuple(round(x, 3) if x is not None else None for x in f) for f in figures]} "
          "(pod seen after open, stop asked after close, pod gone after close)")
    for opened, closed, _ in figures:
        assert 0 <= opened < BOUNDARY_S + HARNESS_S, figures
        assert 0 <= closed < BOUNDARY_S + HARNESS_S, figures
    reasons = _reasons(k, "show")
    assert reasons.count("WindowClosed") == 2, reasons
    assert "WindowOpened" in reasons, reasons  # Events of one reason may be aggregated into one
    status = k.status("so", "show")
    assert status["phase"] == "Scheduled" and "nextStart" not in status and "nextStop" not in status
    assert [c["reason"] for c in status["conditions"] if c["type"] == "Ready"] == ["NoWindowAhead"]
    assert status["reconnects"] == 0, "a window closing is not a failure"


def test_lead_starts_early_and_the_end_stays_exact(k: Kubectl, control_plane):
    k.apply_file("examples/inputs/udp.yaml")
    start = _ahead(10)
    end = start + timedelta(seconds=2)
    with PodLog(control_plane.kubeconfig, k.ns) as log:
        k("apply", "-f", "-", input=_output("early", _one_off(start, end), lead=4))
        k.wait("Scheduled", lambda: k.status("so", "early").get("nextStart") == _z(start - timedelta(seconds=4)))
        k.wait("closed", lambda: datetime.now(UTC) > end + timedelta(seconds=2), timeout=20)
        k.wait("off air", lambda: k.status("so", "early").get("phase") == "Scheduled")
        ((t_added, uid),) = log.added()
    opened = t_added - _mono(start - timedelta(seconds=4))
    closed = (log.first(uid, deleting=True) or 0) - _mono(end)
    print(f"\nlead 4 s: pod seen {opened:.3f} s after start-lead, stop asked {closed:.3f} s after the end")
    assert 0 <= opened < BOUNDARY_S + HARNESS_S and 0 <= closed < BOUNDARY_S + HARNESS_S


def test_a_restart_mid_window_recreates_nothing_and_a_window_closed_meanwhile_closes_at_start(
        k: Kubectl, control_plane, operator):
    k.apply_file("examples/inputs/udp.yaml")
    start = _ahead(3)
    end = start + timedelta(seconds=35)
    with PodLog(control_plane.kubeconfig, k.ns) as log:
        k("apply", "-f", "-", input=_output("mid", _one_off(start, end)))
        k.wait("Streaming", lambda: k.status("so", "mid").get("phase") == "Streaming", timeout=30)
        (pod,) = _live_pods(k, "mid")
        before = k.status("so", "mid")
        operator.kill()
        operator.start()
        time.sleep(7)  # two resync periods of the restarted operator
        assert [p["metadata"]["uid"] for p in _live_pods(k, "mid")] == [pod["metadata"]["uid"]]
        assert len(log.added()) == 1, "nothing re-created"
        after = k.status("so", "mid")
        assert (after["phase"], after["pod"], after["reconnects"]) == ("Streaming", before["pod"], before["reconnects"])
        assert after["nextStop"] == _z(end)
        operator.kill()
        k.wait("the window closes while the operator is down", lambda: datetime.now(UTC) > end + timedelta(seconds=1),
               timeout=60)
        assert _live_pods(k, "mid"), "nobody closed it meanwhile"
        started = time.monotonic()
        operator.start()
        live = time.monotonic()
        k.wait("closed at start", lambda: log.first(pod["metadata"]["uid"], deleting=True), timeout=30)
    closed = log.first(pod["metadata"]["uid"], deleting=True) or 0
    print(f"\na window closed while the operator was down: stop asked {closed - started:.3f} s after the process "
          f"started ({closed - live:.3f} s after it answered /healthz, {live - started:.3f} s after the start)")
    assert closed - live < 5.0
    k.wait("Scheduled", lambda: k.status("so", "mid").get("phase") == "Scheduled")
    assert "WindowClosed" in _reasons(k, "mid")


def test_a_recurring_window_keeps_the_minute(k: Kubectl, control_plane):
    """Every minute for 15 s: the next minute opens and closes on time."""
    k.apply_file("examples/inputs/udp.yaml")
    k.wait("past second 16 of the minute", lambda: 16 <= datetime.now(UTC).second <= 50, timeout=40)
    minute = (datetime.now(UTC) + timedelta(minutes=1)).replace(second=0, microsecond=0)
    windows = "    - {cron: '* * * * *', duration: 15s, timeZone: Europe/Paris}\n"
    with PodLog(control_plane.kubeconfig, k.ns) as log:
        k("apply", "-f", "-", input=_output("minutely", windows))
        k.wait("Scheduled", lambda: k.status("so", "minutely").get("nextStart") == _z(minute))
        k.wait("the window closed", lambda: datetime.now(UTC) > minute + timedelta(seconds=17), timeout=70)
        ((t_added, uid), *_) = log.added()
        deleting = log.first(uid, deleting=True)
    opened, closed = t_added - _mono(minute), (deleting or 0) - _mono(minute + timedelta(seconds=15))
    print(f"\nrecurring: pod seen {opened:.3f} s after the minute, stop asked {closed:.3f} s after :15")
    assert 0 <= opened < BOUNDARY_S + HARNESS_S and 0 <= closed < BOUNDARY_S + HARNESS_S


def test_two_outputs_share_a_destination_at_different_times(k: Kubectl, control_plane):
    """Off air an output claims no destination, and on air its claim lapses at its
    window's end: the next output to the same place starts on time, no DuplicateDestination."""
    k.apply_file("examples/inputs/udp.yaml")
    k.wait("router", lambda: k.status("si", "studio-udp").get("endpoint"))
    start = _ahead(8)
    handover = start + timedelta(seconds=5)
    with PodLog(control_plane.kubeconfig, k.ns) as log:
        k("apply", "-f", "-", input=_output("first", _one_off(start, handover)) + "---\n" +
          _output("second", _one_off(handover, handover + timedelta(seconds=5))))
        k.wait("both Scheduled", lambda: all(k.status("so", n).get("phase") == "Scheduled" for n in ("first", "second")))
        k.wait("both windows over", lambda: datetime.now(UTC) > handover + timedelta(seconds=7), timeout=30)
        added = log.added()
    assert len(added) == 2, log.events
    opened = [t - _mono(at) for (t, _), at in zip(added, (start, handover), strict=True)]
    print(f"\ntwo outputs, one destination: pods seen {[round(x, 3) for x in opened]} s after their windows opened")
    assert all(0 <= x < BOUNDARY_S + HARNESS_S for x in opened), opened
    for name in ("first", "second"):
        assert "DuplicateDestination" not in _reasons(k, name)
        assert k.status("so", name)["phase"] == "Scheduled"


@pytest.mark.parametrize(("window", "message"), [
    ("    - {cron: '0 19 * * FRI', duration: 2h, timeZone: Mars/Olympus_Mons}\n",
     "spec.schedule.windows[0].timeZone: not a time zone of the operator's time zone database"),
    ("    - {cron: '75 19 * * FRI', duration: 2h}\n", "spec.schedule.windows[0].cron: bad minute"),
])
def test_what_only_the_operator_can_refuse_is_invalid_schedule(k: Kubectl, window, message):
    k.apply_file("examples/inputs/udp.yaml")
    k("apply", "-f", "-", input=_output("bad", window))
    cond = k.wait("InvalidSchedule", lambda: (c := k.condition("so", "bad", "Ready")) and
                  c["reason"] == "InvalidSchedule" and c)
    assert cond["message"].startswith(message)
    assert "Olympus" not in cond["message"] and "75" not in cond["message"]
    assert k.status("so", "bad")["phase"] == "Invalid"
    assert k.wait("event", lambda: [e for e in k.events("bad") if e["reason"] == "InvalidSchedule"])
    assert not _live_pods(k, "bad")
