"""Live status on a real apiserver, KWOK playing the kubelet (issue 6).

The containers' failures come from the test-only KWOK Stages in tests/integration/kwok/
(see each file's header), which the ``control_plane`` fixture passes to KWOK:

- ``kubectl annotate pod P streamdist.test/crash=loop|hold`` makes a running FFmpeg
  container exit with FFmpeg's last words as termination message and wait in
  CrashLoopBackOff (restartCount+1); ``loop`` brings it back after
  ``streamdist.test/recover-after``, ``hold`` never does (the operator must replace it);
- every pod of an output named ``kwok-down-*`` fails right at its start and stays in
  back-off (a destination refusing every connection), replacement pods included;
- every pod of an output named ``kwok-badimage-*`` waits in ErrImagePull, then
  ImagePullBackOff.

Everything is asserted on what a user sees: ``kubectl get -o json``, ``kubectl get
events``, ``kubectl describe`` and a scrape of the operator's /metrics.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamdist_dev.controlplane import ControlPlaneError
from streamdist_dev.kubectl import Kubectl

pytestmark = pytest.mark.cluster

CANARY = "CANARYliveStatus0099"
STAGE_CANARY = "CANARYkwokStage0042"  # in the stage files' default termination message
URL = f"rtmp://live.example.com/app/{CANARY}"
# FFmpeg's stderr tail as FallbackToLogsOnError makes it the termination message.
LAST_WORDS = (
    "[flv @ 0x55d5c8a3e2c0] Failed to update header with correct duration.\n"
    "[out#0/flv @ 0x55d5c8a3f100] Error muxing a packet\n"
    f"rtmp://live.example.com/app/{CANARY}: Broken pipe"
)
LAST_WORDS_MASKED = "rtmp://live.example.com/app/***: Broken pipe"
GRACE = 3.0  # settings.backoff_grace_seconds (the operator's default)
NODES = ("kwok-node-0", "kwok-node-1")


# --- helpers ----------------------------------------------------------------------


def _output(name: str, url: str | None = None, delay: int = 2, max_delay: int = 30, input_name: str = "studio-udp") -> str:
    url = url or f"{URL}-{name}"  # one destination per output (two would be DuplicateDestination)
    return (
        "apiVersion: streamdist.io/v1alpha1\nkind: StreamOutput\n"
        f"metadata: {{name: {name}}}\n"
        f"spec:\n  input: {input_name}\n  url: '{url}'\n"
        f"  reconnect: {{delaySeconds: {delay}, maxDelaySeconds: {max_delay}}}\n"
    )


def _pods(k: Kubectl, output: str) -> list[dict[str, Any]]:
    return [p for p in k.items("pods", f"streamdist.io/output={output}") if not p["metadata"].get("deletionTimestamp")]


def _container(pod: dict[str, Any]) -> dict[str, Any]:
    return next(iter((pod.get("status") or {}).get("containerStatuses") or []), {})


def _restarts(pod: dict[str, Any]) -> int:
    return int(_container(pod).get("restartCount") or 0)


def _running(pod: dict[str, Any]) -> bool:
    return "running" in (_container(pod).get("state") or {})


def _waiting(pod: dict[str, Any]) -> str:
    return ((_container(pod).get("state") or {}).get("waiting") or {}).get("reason", "")


def _ts(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _ready(status: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})


def _start(k: Kubectl, *outputs: str, input_yaml: str = "examples/inputs/udp.yaml") -> None:
    k.apply_file(input_yaml)
    k("apply", "-f", "-", input="---\n".join(outputs))


def _streaming_pod(k: Kubectl, name: str, timeout: float = 40) -> dict[str, Any]:
    """Waits until the output streams from exactly one running pod; returns that pod."""

    def ready() -> dict[str, Any] | None:
        pods = _pods(k, name)
        status = k.status("so", name)
        if len(pods) == 1 and _running(pods[0]) and status.get("phase") == "Streaming" \
                and status.get("pod") == pods[0]["metadata"]["name"]:
            return pods[0]
        return None

    return k.wait(f"{name} Streaming from one running pod", ready, timeout=timeout)


def _crash(k: Kubectl, pod: str, mode: str = "loop", **opts: str) -> None:
    """Marks a pod for the crash stages (see tests/integration/kwok/pod-crash.yaml)."""
    notes = {"crash": mode, "crash-message": LAST_WORDS, **opts}
    k("annotate", "--overwrite", "pod", pod, *(f"streamdist.test/{key}={value}" for key, value in notes.items()))


def _events(k: Kubectl, name: str) -> list[dict[str, Any]]:
    return [e for e in k.events(name) if e["involvedObject"].get("kind") == "StreamOutput"]


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return resp.read().decode()


def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, dict(s.labels), s.value) for fam in text_string_to_metric_families(text) for s in fam.samples]


def _value(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float | None:
    for sname, slabels, value in samples:
        if sname == name and all(slabels.get(key) == val for key, val in labels.items()):
            return value
    return None


class Watch:
    """``kubectl get KIND -w --output-watch-events -o json``: every event, timestamped
    (wall clock) the moment kubectl prints it. Used to see every status write and
    every pod the operator makes, not just what a poll happens to catch."""

    def __init__(self, k: Kubectl, kind: str, selector: str = "", watch_only: bool = False) -> None:
        cp = k.cp
        args = [
            str(cp.kubectl_path), f"--kubeconfig={cp.kubeconfig}", f"--cache-dir={cp.state_dir / 'kubectl-cache'}",
            "-n", k.ns, "get", kind, "--watch", "--output-watch-events", "-o", "json",
        ]  # fmt: skip
        if selector:
            args += ["-l", selector]
        if watch_only:
            args.append("--watch-only")
        self.events: list[tuple[float, str, dict[str, Any]]] = []
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        decoder, buf = json.JSONDecoder(), ""
        fd = self.proc.stdout.fileno()
        while chunk := os.read(fd, 65536):
            buf += chunk.decode()
            while True:
                buf = buf.lstrip()
                try:
                    event, end = decoder.raw_decode(buf)
                except json.JSONDecodeError:
                    break
                buf = buf[end:]
                self.events.append((time.time(), event.get("type", ""), event.get("object") or {}))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._thread.join(timeout=5)

    def objects(self, name: str | None = None) -> list[tuple[float, str, dict[str, Any]]]:
        return [e for e in list(self.events) if name is None or e[2].get("metadata", {}).get("name") == name]


@contextmanager
def watching(k: Kubectl, kind: str, selector: str = "", watch_only: bool = False) -> Iterator[Watch]:
    w = Watch(k, kind, selector, watch_only)
    try:
        time.sleep(0.5)  # let kubectl open the watch
        yield w
    finally:
        w.stop()


def _no_secret(k: Kubectl, operator: Any, *names: str) -> None:
    """The canaries appear in no status, Event, printer column or operator log line."""
    seen = {
        "status": json.dumps([k.status("so", n) for n in names]),
        "events": k("get", "events", "-o", "yaml").stdout,
        "kubectl get so -o wide": k("get", "so", "-o", "wide").stdout,
        # Status and Events (the Spec section shows spec.url, the user's own input).
        "describe": k("describe", "so", *names).stdout.partition("\nStatus:")[2],
        "operator log": operator.logs(),
    }
    for where, text in seen.items():
        for canary in (CANARY, STAGE_CANARY):
            assert canary not in text, f"secret {canary} leaked into {where}"


def _reconnects_never_go_down(watch: Watch, name: str) -> list[int]:
    counts = [int((obj.get("status") or {}).get("reconnects") or 0) for _, _, obj in watch.objects(name)]
    assert counts == sorted(counts), f"status.reconnects went down: {counts}"
    return counts


# --- phases, reconnects and lastError ------------------------------------------------


def test_crash_shows_reconnecting_with_masked_last_error_then_streaming(k: Kubectl, operator):
    _start(k, _output("flaky"))
    pod = _streaming_pod(k, "flaky")["metadata"]["name"]
    assert k.status("so", "flaky")["reconnects"] == 0
    with watching(k, "so") as so_watch:
        _crash(k, pod, "loop", **{"crash-times": "3", "crash-after": "1s", "recover-after": "2s"})

        status = k.wait("Reconnecting", lambda: (s := k.status("so", "flaky")).get("phase") == "Reconnecting" and s)
        assert status["lastError"] == LAST_WORDS_MASKED, status
        ready = _ready(status)
        assert (ready["status"], ready["reason"]) == ("False", "Reconnecting"), ready
        assert ready["message"] == LAST_WORDS_MASKED, ready
        assert status["reconnects"] >= 1
        assert status["observedGeneration"] == k.get("so", "flaky")["metadata"]["generation"]

        k.wait("Streaming again", lambda: k.status("so", "flaky").get("phase") == "Streaming", timeout=20)

        def three_restarts_counted() -> bool:
            pods = _pods(k, "flaky")
            return bool(pods and _restarts(pods[0]) == 3 and _running(pods[0])
                        and k.status("so", "flaky").get("reconnects") == 3
                        and k.status("so", "flaky").get("phase") == "Streaming")

        k.wait("3 restarts counted, Streaming", three_restarts_counted, timeout=40)
        time.sleep(1)  # the last status write reaches the watch
    counts = _reconnects_never_go_down(so_watch, "flaky")
    phases = [p for p in ((o.get("status") or {}).get("phase") for _, _, o in so_watch.objects("flaky")) if p]
    flips = [b for a, b in itertools.pairwise(phases) if a != b]
    print(f"\nphases seen: {phases}\nreconnects seen: {counts}")
    assert flips.count("Reconnecting") == 3 and flips.count("Streaming") == 3, phases
    final = k.status("so", "flaky")
    assert (final["pod"], final["replacements"], final["lastError"]) == (pod, 0, LAST_WORDS_MASKED)
    assert _ready(final)["status"] == "True"
    _no_secret(k, operator, "flaky")


# --- enforced back-off ---------------------------------------------------------------


def test_pod_held_in_backoff_is_replaced_and_count_carries_over(k: Kubectl, operator):
    """A pod the kubelet holds in CrashLoopBackOff longer than the spec allows is replaced.

    How the delay is measured: a ``kubectl get pods -w`` on the output's pods runs for
    the whole test. The held pod's ``lastState.terminated.finishedAt`` (written by the
    KWOK stage when the container "exits") and the replacement pod's
    ``metadata.creationTimestamp`` (written by the apiserver when the operator creates
    it) are both apiserver timestamps, second resolution: their difference is the
    measured delay (±1 s). The same span is also measured on the test's clock, from
    the watch event that first shows the pod in CrashLoopBackOff to the watch event
    that adds the new pod (tens of ms resolution). The spec allows
    min(maxDelaySeconds, delaySeconds * 2^(failures-1)) = 1 s for this first failure;
    the operator adds its grace (settings.backoff_grace_seconds = 3 s) and checks
    every second, so the replacement must come within allowed + grace + 2 s.
    """
    _start(k, _output("held", delay=1, max_delay=4))
    first = _streaming_pod(k, "held")
    with watching(k, "pods", "streamdist.io/output=held") as pod_watch, watching(k, "so") as so_watch:
        _crash(k, first["metadata"]["name"], "hold", **{"crash-after": "1s"})

        held = k.wait("Reconnecting", lambda: (s := k.status("so", "held")).get("phase") == "Reconnecting" and s)
        assert held["lastError"] == LAST_WORDS_MASKED
        before = held["reconnects"]

        def replaced() -> dict[str, Any] | None:
            pods = _pods(k, "held")
            if len(pods) == 1 and pods[0]["metadata"]["uid"] != first["metadata"]["uid"]:
                return pods[0]
            return None

        new = k.wait("a new pod", replaced, timeout=20)
        status = k.wait("Streaming from the new pod", lambda: (s := k.status("so", "held")).get("phase") == "Streaming"
                        and s.get("pod") == new["metadata"]["name"] and s, timeout=20)
        time.sleep(1)
    assert new["metadata"]["name"] != first["metadata"]["name"]
    assert not [p for p in k.items("pods", "streamdist.io/output=held") if p["metadata"]["uid"] == first["metadata"]["uid"]]
    assert status["replacements"] == 1, status
    old_seen = [o for _, _, o in pod_watch.objects(first["metadata"]["name"]) if _waiting(o) == "CrashLoopBackOff"]
    restart_count = _restarts(old_seen[-1])
    assert before == restart_count == 1
    assert status["reconnects"] == before + 1, f"reconnects {before} -> {status['reconnects']}: should carry over +1"
    _reconnects_never_go_down(so_watch, "held")

    finished = _ts(_container(old_seen[-1])["lastState"]["terminated"]["finishedAt"])
    created = _ts(new["metadata"]["creationTimestamp"])
    api_delay = (created - finished).total_seconds()
    t_crash = min(t for t, _, o in pod_watch.objects(first["metadata"]["name"]) if _waiting(o) == "CrashLoopBackOff")
    t_new = min(t for t, kind, _ in pod_watch.objects(new["metadata"]["name"]) if kind == "ADDED")
    allowed = 1.0
    print(f"\nback-off replacement: finishedAt {finished:%H:%M:%S} -> new pod created {created:%H:%M:%S}: "
          f"{api_delay:.0f}s (apiserver timestamps); {t_new - t_crash:.2f}s on the watch clock; "
          f"allowed {allowed:.0f}s + grace {GRACE:.0f}s")
    assert api_delay <= allowed + GRACE + 2, f"replaced {api_delay:.0f}s after the exit: later than allowed+grace+2s"
    assert t_new - t_crash >= allowed, f"replaced {t_new - t_crash:.2f}s after the exit: before the spec's delay"
    _no_secret(k, operator, "held")


def test_backoff_schedule_doubles_up_to_max_delay(k: Kubectl, operator):
    """A destination that refuses every connection: each pod fails at once, and the
    kubelet would hold it for minutes. The operator replaces pod n after the spec's
    n-th delay, min(maxDelaySeconds, delaySeconds * 2^(n-1)) = 1, 2, 4, 4 s here, plus
    its grace.

    How the delays are measured: ``kubectl get pods -w`` on the output's pods. For each
    replaced pod, the delay is from its ``lastState.terminated.finishedAt`` (set when
    FFmpeg exited) to the next pod's ``creationTimestamp`` (apiserver timestamps, 1 s
    resolution), and on the test's clock from the watch event showing the pod in
    CrashLoopBackOff to the watch event adding the next pod. The operator measures
    from the second-truncated finishedAt and looks every second, so each delay must lie
    in [allowed + grace - 1.5 s, allowed + grace + 2 s].
    """
    name = "kwok-down-sched"
    _start(k, _output(name, delay=1, max_delay=4))
    pods_wanted = 5
    with watching(k, "pods", f"streamdist.io/output={name}") as pod_watch, watching(k, "so") as so_watch:

        def enough() -> bool:
            created = {o["metadata"]["uid"] for _, kind, o in pod_watch.objects() if kind == "ADDED"}
            return len(created) >= pods_wanted

        k.wait(f"{pods_wanted} pods", enough, timeout=60)
        k.wait("the last one held", lambda: (p := _pods(k, name)) and _waiting(p[0]) == "CrashLoopBackOff", timeout=20)
        time.sleep(1.5)
    order: list[str] = []
    for _, kind, obj in pod_watch.objects():
        if kind == "ADDED" and obj["metadata"]["name"] not in order:
            order.append(obj["metadata"]["name"])
    rows = []
    for n, (old, new) in enumerate(itertools.pairwise(order), start=1):
        held = [(t, o) for t, _, o in pod_watch.objects(old) if _waiting(o) == "CrashLoopBackOff"]
        assert held, f"pod {old} never seen in CrashLoopBackOff"
        finished = _ts(_container(held[0][1])["lastState"]["terminated"]["finishedAt"])
        added = next((t, o) for t, kind, o in pod_watch.objects(new) if kind == "ADDED")
        api = (_ts(added[1]["metadata"]["creationTimestamp"]) - finished).total_seconds()
        allowed = float(min(4, 1 * 2 ** (n - 1)))
        rows.append((n, allowed, api, added[0] - held[0][0]))
    print("\nreplacement  allowed  +grace  measured(apiserver)  measured(watch)")
    for n, allowed, api, clock in rows:
        print(f"{n:>11}  {allowed:>6.0f}s  {allowed + GRACE:>5.0f}s  {api:>18.0f}s  {clock:>14.2f}s")
    for n, allowed, api, clock in rows:
        assert api <= allowed + GRACE + 2, f"replacement {n}: {api:.0f}s > allowed {allowed:.0f}s + grace + 2s: {rows}"
        assert clock >= allowed + GRACE - 1.5, f"replacement {n}: {clock:.2f}s: earlier than the spec allows: {rows}"
    status = k.status("so", name)
    assert status["replacements"] >= pods_wanted - 1
    assert status["phase"] == "Reconnecting"
    assert status["lastError"] == "rtmp://live.example.com/app/***: Connection refused"
    # Every restart counted: each pod's kubelet restarts plus each replacement.
    final = _pods(k, name)[0]
    assert status["reconnects"] == status["replacements"] + _restarts(final) * (status["replacements"] + 1), status
    _reconnects_never_go_down(so_watch, name)
    _no_secret(k, operator, name)


# --- reconnects carry over -------------------------------------------------------------


def test_reconnects_carry_over_when_pod_deleted_by_hand(k: Kubectl, operator):
    _start(k, _output("manual"))
    first = _streaming_pod(k, "manual")
    with watching(k, "so") as so_watch:
        _crash(k, first["metadata"]["name"], "loop", **{"crash-times": "2", "recover-after": "1s"})
        k.wait("2 restarts counted", lambda: (s := k.status("so", "manual")).get("reconnects") == 2
               and s.get("phase") == "Streaming" and (p := _pods(k, "manual")) and _running(p[0]), timeout=30)

        k("delete", "pod", first["metadata"]["name"], "--wait=false")
        second = k.wait("a new pod", lambda: (p := _pods(k, "manual")) and p[0]["metadata"]["uid"]
                        != first["metadata"]["uid"] and _running(p[0]) and p[0], timeout=30)
        after_delete = k.wait("Streaming from the new pod",
                              lambda: (s := k.status("so", "manual")).get("phase") == "Streaming" and s, timeout=20)
        time.sleep(4)  # a resync has looked at it again
        after_delete = k.status("so", "manual")

        _crash(k, second["metadata"]["name"], "loop", **{"crash-times": "1", "recover-after": "1s"})
        k.wait("the new pod crashed once and runs", lambda: (p := _pods(k, "manual")) and _restarts(p[0]) == 1
               and _running(p[0]), timeout=30)
        time.sleep(4)
        after_crash = k.status("so", "manual")
    counts = _reconnects_never_go_down(so_watch, "manual")
    same_name = second["metadata"]["name"] == first["metadata"]["name"]
    story = (f"old pod {first['metadata']['name']} (2 restarts) deleted by hand; new pod "
             f"{second['metadata']['name']} (same name: {same_name}, new uid); reconnects after the delete: "
             f"{after_delete['reconnects']}, after 1 more restart of the new pod: {after_crash['reconnects']} "
             f"(reconnectsCarried {after_crash.get('reconnectsCarried')}); all seen: {counts}")
    print("\n" + story)
    assert after_delete["reconnects"] >= 2, story
    assert after_crash["reconnects"] > after_delete["reconnects"], (
        "a restart of the pod that replaced a hand-deleted one was not counted: " + story)
    assert (after_delete["reconnects"], after_crash["reconnects"]) == (3, 4), (
        "the hand-deleted pod's replacement is a reconnect (+1), and so is each later restart: " + story)


def test_reconnects_survive_operator_restart(k: Kubectl, operator):
    _start(k, _output("durable"))
    pod = _streaming_pod(k, "durable")["metadata"]["name"]
    with watching(k, "so") as so_watch:
        _crash(k, pod, "loop", **{"crash-times": "2", "recover-after": "1s"})
        k.wait("2 restarts counted", lambda: (s := k.status("so", "durable")).get("reconnects") == 2
               and s.get("phase") == "Streaming", timeout=30)
        operator.kill()
        try:
            # One more crash and recovery while nobody watches.
            _crash(k, pod, "loop", **{"crash-times": "3", "recover-after": "1s"})
            k.wait("third restart", lambda: (p := _pods(k, "durable")) and _restarts(p[0]) == 3 and _running(p[0]),
                   timeout=30)
            assert k.status("so", "durable")["reconnects"] == 2  # the operator is down
        finally:
            operator.start()
        k.wait("3 reconnects after the restart", lambda: k.status("so", "durable").get("reconnects") == 3, timeout=30)
        time.sleep(4)  # a resync has passed: nothing counted twice, nothing reset
        status = k.status("so", "durable")
    assert (status["reconnects"], status["phase"], status["pod"], status["replacements"]) == (3, "Streaming", pod, 0)
    _reconnects_never_go_down(so_watch, "durable")


def test_restart_adopts_unchanged_inputs_without_applying_their_children(k: Kubectl, operator):
    """After a restart an input whose Deployment carries the digest of what would be
    applied is adopted (its two Services read), not applied again (create, 409, get,
    patch for each of its four children); a changed input is applied."""
    k.apply_file("examples/inputs/udp.yaml")
    k.wait("router up", lambda: k.status("si", "studio-udp").get("phase") in ("Waiting", "Live"), timeout=40)
    ns = k.ns

    def lines(event: str) -> list[str]:
        return [ln for ln in operator.logs().splitlines() if event in ln and f"namespace={ns} input=studio-udp" in ln]

    assert lines("router-applied"), "the first run applied the router"
    operator.kill()
    applied_before = len(lines("router-applied"))
    operator.start()
    k.wait("adopted after the restart", lambda: lines("router-adopted"), timeout=30)
    time.sleep(3)  # a resync later: still nothing applied
    assert len(lines("router-applied")) == applied_before, lines("router-applied")
    status = k.status("si", "studio-udp")
    assert status["endpoint"].startswith("udp://studio-udp-ingest.") and status["phase"] in ("Waiting", "Live")

    operator.kill()
    k("patch", "si", "studio-udp", "--type=merge", "-p", '{"spec":{"fallback":{}}}')  # a new router config
    operator.start()
    k.wait("a changed input applied again", lambda: len(lines("router-applied")) > applied_before, timeout=30)


# --- failures no restart fixes -------------------------------------------------------


def test_image_pull_failure_is_failed_with_its_reason(k: Kubectl, operator):
    name = "kwok-badimage-out"
    _start(k, _output(name, delay=1, max_delay=4))
    status = k.wait("Failed", lambda: (s := k.status("so", name)).get("phase") == "Failed" and s, timeout=30)
    assert _ready(status)["reason"] in ("ErrImagePull", "ImagePullBackOff"), status
    status = k.wait("ImagePullBackOff", lambda: (s := k.status("so", name)) and _ready(s).get("reason")
                    == "ImagePullBackOff" and s, timeout=20)
    ready = _ready(status)
    assert status["phase"] == "Failed" and ready["status"] == "False"
    assert ready["message"].startswith("Back-off pulling image"), ready
    assert k.wait("Warning event", lambda: [e for e in _events(k, name)
                                            if e["reason"] == "ImagePullBackOff" and e["type"] == "Warning"])
    time.sleep(GRACE + 4)  # past any back-off allowance: an image pull is not replaced
    pods = _pods(k, name)
    assert len(pods) == 1 and _waiting(pods[0]) == "ImagePullBackOff"
    status = k.status("so", name)
    assert (status["phase"], status["replacements"], status["reconnects"]) == ("Failed", 0, 0), status
    assert k("get", "so", name).stdout.split("\n")[1].split()[4] == "Failed"


def test_unschedulable_pod_is_pending_unschedulable(k: Kubectl, operator):
    """Both nodes cordoned for the length of this test only (tests in one session run one
    at a time; the finally uncordons them): the scheduler cannot place the pod."""
    k.apply_file("examples/inputs/udp.yaml")
    k.wait("router up", lambda: k.status("si", "studio-udp").get("phase") in ("Waiting", "Live"), timeout=40)
    try:
        k.cp.kubectl("cordon", *NODES)
        k("apply", "-f", "-", input=_output("nowhere"))
        status = k.wait("Pending Unschedulable", lambda: (s := k.status("so", "nowhere")).get("phase") == "Pending"
                        and _ready(s).get("reason") == "Unschedulable" and s, timeout=40)
        assert "0/2 nodes are available" in _ready(status)["message"], status
        assert _ready(status)["status"] == "False"
        pod = _pods(k, "nowhere")[0]
        assert not pod["spec"].get("nodeName")
    finally:
        k.cp.kubectl("uncordon", *NODES)
    _streaming_pod(k, "nowhere", timeout=60)


# --- Events --------------------------------------------------------------------------


def test_events_name_each_transition_without_secret(k: Kubectl, operator):
    _start(k, _output("ev", delay=1, max_delay=4))
    first = _streaming_pod(k, "ev")
    _crash(k, first["metadata"]["name"], "hold", **{"crash-after": "1s"})
    k.wait("replaced and Streaming", lambda: (s := k.status("so", "ev")).get("phase") == "Streaming"
           and s.get("replacements") == 1, timeout=30)

    def all_there() -> list[dict[str, Any]] | None:
        evs = _events(k, "ev")
        reasons = [e["reason"] for e in evs]
        if reasons.count("Streaming") >= 2 and "Reconnecting" in reasons and "BackoffReplaced" in reasons:
            return evs
        return None

    evs = k.wait("Streaming, Reconnecting, BackoffReplaced, Streaming events", all_there, timeout=20)
    by_reason = {e["reason"]: e for e in evs}
    assert by_reason["Streaming"]["type"] == "Normal"
    assert by_reason["Reconnecting"]["type"] == "Warning"
    assert by_reason["Reconnecting"]["message"] == LAST_WORDS_MASKED
    assert by_reason["BackoffReplaced"]["type"] == "Warning"
    assert "1s" in by_reason["BackoffReplaced"]["message"], by_reason["BackoffReplaced"]
    ordered = [e["reason"] for e in sorted(evs, key=lambda e: int(e["metadata"]["resourceVersion"]))]
    print(f"\nevents, in the order written: {ordered}")
    assert ordered[:4] == ["Streaming", "Reconnecting", "BackoffReplaced", "Streaming"], ordered
    listing = k("get", "events", "--field-selector", "involvedObject.name=ev").stdout
    for reason in ("Streaming", "Reconnecting", "BackoffReplaced"):
        assert reason in listing
    assert "BackoffReplaced" in k("describe", "so", "ev").stdout
    _no_secret(k, operator, "ev")


# --- Prometheus ----------------------------------------------------------------------


def test_metrics_show_reconnects_phases_readers_and_reconcile_time(k: Kubectl, operator):
    _start(k, _output("m-steady"), _output("m-flaky"))
    _streaming_pod(k, "m-steady")
    pod = _streaming_pod(k, "m-flaky")["metadata"]["name"]
    _crash(k, pod, "loop", **{"crash-times": "2", "recover-after": "1s"})
    k.wait("2 reconnects", lambda: (s := k.status("so", "m-flaky")).get("reconnects") == 2
           and s.get("phase") == "Streaming", timeout=30)

    def scraped() -> list[tuple[str, dict[str, str], float]] | None:
        samples = _samples(_scrape(operator.metrics_port))
        got = _value(samples, "streamdist_output_reconnects_total", namespace=k.ns, output="m-flaky")
        return samples if got == 2 else None

    samples = k.wait("scrape shows 2 reconnects", scraped, timeout=15)
    text = _scrape(operator.metrics_port)
    assert _value(samples, "streamdist_output_reconnects_total", namespace=k.ns, output="m-flaky",
                  input="studio-udp") == 2
    assert _value(samples, "streamdist_output_reconnects_total", namespace=k.ns, output="m-steady") == 0
    assert re.search(r"^# TYPE streamdist_output_reconnects_total counter$", text, re.M) or re.search(
        r"^# TYPE streamdist_output_reconnects counter$", text, re.M)
    for output in ("m-steady", "m-flaky"):
        phases = {lab["phase"]: v for n, lab, v in samples
                  if n == "streamdist_output_phase" and lab.get("namespace") == k.ns and lab.get("output") == output}
        assert phases.get("Streaming") == 1 and sum(phases.values()) == 1, (output, phases)
    assert _value(samples, "streamdist_input_readers", namespace=k.ns, input="studio-udp") == 0  # no health poll
    assert _value(samples, "streamdist_operator_active") == 1  # standalone: always the one acting
    assert _value(samples, "streamdist_reconcile_duration_seconds_count", kind="StreamOutput") > 0
    assert _value(samples, "streamdist_reconcile_duration_seconds_count", kind="StreamInput") > 0
    assert _value(samples, "streamdist_reconcile_duration_seconds_bucket", kind="StreamOutput", le="+Inf") == \
        _value(samples, "streamdist_reconcile_duration_seconds_count", kind="StreamOutput")
    assert _value(samples, "streamdist_reconcile_duration_seconds_sum", kind="StreamOutput") > 0
    assert CANARY not in text and STAGE_CANARY not in text

    # A held crash shows in the phase gauge too.
    _crash(k, pod, "hold", **{"crash-times": "3"})
    k.wait("Reconnecting gauge", lambda: _value(_samples(_scrape(operator.metrics_port)), "streamdist_output_phase",
                                                namespace=k.ns, output="m-flaky", phase="Reconnecting") == 1,
           timeout=20)


# --- steady state: no patch storm --------------------------------------------------------


def _apiserver_status_patches(k: Kubectl) -> float:
    text = k.cp.kubectl("get", "--raw", "/metrics").stdout
    total = 0.0
    for line in text.splitlines():
        if line.startswith("apiserver_request_total{") and 'resource="streamoutputs"' in line \
                and 'subresource="status"' in line and 'verb="PATCH"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_quiet_outputs_cost_no_status_writes(k: Kubectl, operator):
    """20 quiet Streaming outputs, 30 s: every status write would show as a watch event
    (resourceVersion change) on the StreamOutputs; there must be none."""
    n, window = 20, 30.0
    _start(k, *(_output(f"q{i:02d}") for i in range(n)))
    k.wait(f"{n} Streaming", lambda: sum(s.get("status", {}).get("phase") == "Streaming" for s in k.items("so")) == n,
           timeout=90)

    def settled() -> bool:  # no write for 5 s
        with watching(k, "so", watch_only=True) as w:
            time.sleep(5)
        return not w.events

    with contextlib.suppress(ControlPlaneError):  # never quiet: the measurement below shows the writes
        k.wait("writes settle", settled, timeout=60)
    versions = {s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in k.items("so")}
    reconciles_before = _value(_samples(_scrape(operator.metrics_port)), "streamdist_reconcile_duration_seconds_count",
                               kind="StreamOutput") or 0
    patches_before = _apiserver_status_patches(k)
    with watching(k, "so", watch_only=True) as w:
        time.sleep(window)
    patches_after = _apiserver_status_patches(k)
    reconciles = (_value(_samples(_scrape(operator.metrics_port)), "streamdist_reconcile_duration_seconds_count",
                         kind="StreamOutput") or 0) - reconciles_before
    writes = [(o["metadata"]["name"], o["metadata"]["resourceVersion"]) for _, _, o in w.events]
    after = {s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in k.items("so")}
    per_output_minute = len(writes) / n / (window / 60)
    print(f"\nsteady state: {len(writes)} StreamOutput writes in {window:.0f}s for {n} outputs = "
          f"{per_output_minute:.2f} status patches per output per minute; {reconciles:.0f} reconciles meanwhile; "
          f"apiserver PATCH streamoutputs/status, cluster-wide: {patches_after - patches_before:.0f}")
    assert reconciles >= n * (window / 3) / 2, "the operator was not reconciling: the measurement proves nothing"
    assert not writes and after == versions, f"status writes while nothing changed: {writes}"
