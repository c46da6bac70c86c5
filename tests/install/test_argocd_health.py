"""The Argo CD health checks, run in real Lua interpreters the way Argo CD runs them.

Two interpreters: gopher-lua itself (the Lua 5.1 VM Argo CD links, driven by
tests/install/argocd_lua with Argo CD's calling convention: `obj` global, only the
base/table/package libraries, the returned table as the status) and a stock Lua
(lua5.4 from Debian) sandboxed the same way. The statuses come from the operator's own
status functions (streamdist.status), so they are the ones it writes; the install
tests also run the checks on objects read back from a cluster.
"""

from __future__ import annotations

import pytest
import yaml

from streamdist.status import (
    Cond,
    OutputStatus,
    PodView,
    conditions,
    input_phase,
    one_line_error,
    output_phase,
)
from streamdist_dev.chart import REPO
from tests.install.install_tools import KINDS, run_health

pytestmark = pytest.mark.timeout(600)

NOW = "2026-11-24T20:00:00Z"
VMS = ["gopher-lua", "stock"]
# The health each phase maps to (the table); every phase the CRDs allow is here.
INPUT_HEALTH = {"Pending": "Progressing", "Waiting": "Progressing", "Live": "Healthy", "Failed": "Degraded"}
OUTPUT_HEALTH = {
    "Pending": "Progressing", "Connecting": "Progressing", "Reconnecting": "Progressing",
    "Streaming": "Healthy", "Suspended": "Suspended", "Scheduled": "Healthy", "Failed": "Degraded",
    "Invalid": "Degraded",
}


def obj(kind: str, status: dict | None, generation: int = 1) -> dict:
    body = {
        "apiVersion": "streamdist.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": "x", "namespace": "live", "generation": generation, "uid": "u-1"},
        "spec": {"protocol": "udp"} if kind == "StreamInput" else {"input": "studio", "url": "rtmp://h/app/KEY"},
    }
    if status is not None:
        body["status"] = status
    return body


# --- statuses as the operator writes them (handlers/inputs.py, handlers/outputs.py) -----------


def input_status(router_ready: bool, receiving: bool | None, generation: int = 1) -> dict:
    phase, ready, recv = input_phase(router_ready, receiving)
    return {
        "observedGeneration": generation,
        "phase": phase,
        "port": 20000,
        "endpoint": "udp://studio-ingest.live.svc:20000",
        "tracks": ["H264", "MPEG-4 Audio"] if receiving else [],
        "bitrateKbps": 4500 if receiving else 0,
        "readers": 2,
        "conditions": conditions(None, [ready, recv], generation, NOW),
    }


def input_failed(reason: str, message: str) -> dict:
    conds = [Cond("Ready", "False", reason, message), Cond("Receiving", "Unknown", reason, "router not running")]
    return {"observedGeneration": 1, "phase": "Failed", "port": None, "endpoint": "",
            "conditions": conditions(None, conds, 1, NOW)}


RUNNING = {"running": {"startedAt": NOW}}
CRASHED = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s restarting failed container"}}
LAST = {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": NOW,
                       "message": "[rtmp @ 0x1] Cannot open connection\nrtmp://h/app/SECRETKEY: Connection refused\n"}}


def pod(state: dict, restarts: int = 0, last: dict | None = None) -> PodView:
    return PodView.from_pod({"metadata": {"name": "x-abc"}, "status": {"phase": "Running", "containerStatuses": [
        {"name": "ffmpeg", "restartCount": restarts, "state": state, "lastState": last or {}}]}})


def output_running(view: PodView | None, receiving: bool | None) -> dict:
    state = output_phase(view, receiving)
    return OutputStatus(
        generation=1, phase=state.phase, reason=state.reason, message=state.message, protocol="rtmp",
        destination="rtmp://h/app/***", pod=view.name if view else "", reconnects=view.restart_count if view else 0,
        last_error=one_line_error(view.last_message) if view else "",
        input_ready=Cond("InputReady", "True" if receiving else "Unknown", "SourcePublishing", "a source is publishing"),
    ).render(None, NOW)


def output_stopped(phase: str, reason: str, message: str, reconnects: int = 0) -> dict:
    return OutputStatus(
        generation=1, phase=phase, reason=reason, message=message, reconnects=reconnects, carried=reconnects,
        protocol="rtmp" if phase != "Invalid" else "", destination="rtmp://h/app/***" if phase != "Invalid" else "",
    ).render(None, NOW)


INPUT_CASES = [
    ("no status", None, "Progressing", "Waiting for the streamdist operator"),
    ("empty status", {}, "Progressing", "Waiting for the streamdist operator"),
    ("router starting", input_status(False, None), "Progressing", "waiting for the MediaMTX pod"),
    ("router up, not yet polled", input_status(True, None), "Progressing", "waiting for a source at udp://"),
    ("router up, no source", input_status(True, False), "Progressing", "waiting for a source"),
    ("live", input_status(True, True), "Healthy", "Live: a source is publishing at udp://studio-ingest"),
    ("port conflict", input_failed("PortConflict", "port 20500 is already used by StreamInput live/a"),
     "Degraded", "PortConflict: port 20500 is already used"),
    ("no free port", input_failed("NoFreePort", "no free port left in 20000-20000"), "Degraded", "NoFreePort"),
    ("invalid spec", input_failed("InvalidSpec", "spec.port: must be at least 1024"), "Degraded", "InvalidSpec"),
]

OUTPUT_CASES = [
    ("no status", None, "Progressing", "Waiting for the streamdist operator"),
    ("no pod yet", output_running(None, None), "Progressing", "Pending: waiting for the FFmpeg pod"),
    ("starting", output_running(pod({"waiting": {"reason": "ContainerCreating"}}), True), "Progressing",
     "Connecting: FFmpeg is starting"),
    ("input has no source", output_running(pod(RUNNING), False), "Progressing", "input has no source"),
    ("streaming", output_running(pod(RUNNING), True), "Healthy", "Streaming to rtmp://h/app/***"),
    ("streaming after restarts", output_running(pod(RUNNING, 3, LAST), True), "Healthy", "(3 reconnects)"),
    ("reconnecting", output_running(pod(CRASHED, 2, LAST), True), "Progressing",
     "Reconnecting to rtmp://h/app/*** (2 reconnects): rtmp://h/app/***: Connection refused"),
    ("image pull", output_running(pod({"waiting": {"reason": "ImagePullBackOff", "message": "pull failed"}}), True),
     "Degraded", "ImagePullBackOff: pull failed"),
    ("suspended", output_stopped("Suspended", "Suspended", "spec.suspend is true", 4), "Suspended", "Suspended"),
    ("scheduled, off air", {**output_stopped("Scheduled", "OutsideWindow", "outside every window of spec.schedule"),
                            "nextStart": "2026-11-27T17:55:00Z"},
     "Healthy", "Scheduled: off air until 2026-11-27T17:55:00Z"),
    ("scheduled, nothing ahead", output_stopped("Scheduled", "NoWindowAhead", "none is ahead"), "Healthy",
     "Scheduled: off air, no window of spec.schedule ahead"),
    ("bad schedule", output_stopped("Invalid", "InvalidSchedule", "spec.schedule.windows[0].timeZone: not a time zone"),
     "Degraded", "InvalidSchedule: spec.schedule.windows[0].timeZone"),
    ("input missing", output_stopped("Failed", "InputNotFound", "StreamInput 'studio' not found in namespace 'live'"),
     "Degraded", "InputNotFound: StreamInput 'studio' not found"),
    ("secret missing", output_stopped("Failed", "SecretNotFound", "Secret 'yt' with key 'url' not found"),
     "Degraded", "SecretNotFound"),
    ("too many", output_stopped("Failed", "TooManyOutputs", "StreamInput 'studio' feeds at most 1 outputs"),
     "Degraded", "TooManyOutputs"),
    ("bad url", output_stopped("Invalid", "InvalidURL", "rtmp url needs an app path"), "Degraded",
     "InvalidURL: rtmp url needs an app path"),
]


@pytest.mark.parametrize("vm", VMS)
@pytest.mark.parametrize(("case", "status", "health", "message"), INPUT_CASES, ids=[c[0] for c in INPUT_CASES])
def test_stream_input_health(vm, case, status, health, message):
    _check("StreamInput", vm, status, health, message)


@pytest.mark.parametrize("vm", VMS)
@pytest.mark.parametrize(("case", "status", "health", "message"), OUTPUT_CASES, ids=[c[0] for c in OUTPUT_CASES])
def test_stream_output_health(vm, case, status, health, message):
    text = _check("StreamOutput", vm, status, health, message)
    assert "SECRETKEY" not in text and "KEY" not in text.replace("***", "")


def _check(kind: str, vm: str, status, health: str, message: str) -> str:
    """The check of ``kind`` in ``vm`` says ``health`` with ``message`` in its text."""
    got, text = run_health(kind, obj(kind, status), vm)
    assert got == health
    assert message in text
    return text


@pytest.mark.parametrize("vm", VMS)
@pytest.mark.parametrize("kind", KINDS)
def test_a_spec_the_operator_has_not_seen_yet_is_progressing(vm, kind):
    status = input_status(True, True) if kind == "StreamInput" else output_running(pod(RUNNING), True)
    got, text = run_health(kind, obj(kind, status, generation=2), vm)
    assert (got, text) == ("Progressing", "Waiting for the operator to act on generation 2")


@pytest.mark.parametrize("vm", VMS)
@pytest.mark.parametrize("kind", KINDS)
def test_every_phase_the_crd_allows_has_a_health(vm, kind):
    crd = yaml.safe_load((REPO / "crds" / f"{kind.lower()}s.yaml").read_text())
    phases = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["phase"]
    table = INPUT_HEALTH if kind == "StreamInput" else OUTPUT_HEALTH
    assert set(phases["enum"]) == set(table), "a phase was added: teach argocd/.../health.lua and this table"
    for phase, health in table.items():
        got, _ = run_health(kind, obj(kind, {"observedGeneration": 1, "phase": phase}), vm)
        assert got == health, phase
    got, text = run_health(kind, obj(kind, {"phase": "Exploded"}), vm)
    assert (got, text) == ("Unknown", "Unknown phase Exploded")


def test_harness_refuses_what_argo_cd_refuses(tmp_path, monkeypatch):
    """The harnesses really are as strict as Argo CD: no string library, no string methods,
    a table with a known status code."""
    from tests.install import install_tools

    script = tmp_path / "health.lua"
    monkeypatch.setattr(install_tools, "health_script", lambda kind: script)
    for body, vms in (
        ('return {status = string.upper("healthy")}', VMS),
        ('local n = ("x"):len()\nreturn {status = "Healthy"}', VMS),
        ('return "Healthy"', VMS),
        ('return {status = "Healthy", message = 42}', VMS),
        ('return {status = "Fine"}', ["gopher-lua"]),  # the code check is Argo CD's, re-created in Go
    ):
        script.write_text(body)
        for vm in vms:
            with pytest.raises(AssertionError):
                run_health("StreamInput", obj("StreamInput", None), vm)
