"""The confidence monitor's pure parts: the sidecar's log parsing, hold and state
(images/ffmpeg/streamdist_confidence.py), the operator's reading of its state and the
Black/Frozen/Silent conditions and Events decided from it (streamdist.confidence), and
the router pod rendered with it. The real thing, with MediaMTX and FFmpeg, is
tests/media/test_confidence_monitor.py."""

from __future__ import annotations

import base64
import dataclasses
import importlib
import io
import threading
from http.server import ThreadingHTTPServer

import pytest
import yaml
from switchlib_import import net
from test_router_client import good, server

from streamdist import confidence, metrics, render, switch_render
from streamdist.confidence import ConfidenceState
from streamdist.handlers import context, health
from streamdist.handlers.memory import Applied, InputKey
from streamdist.models import StreamInput
from streamdist.settings import Settings, from_env

mon = importlib.import_module("streamdist_confidence")


# --- the sidecar ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("[Parsed_metadata_3 @ 0x55d1c0] lavfi.black_start=12.4", ("black", True)),
        ("[Parsed_metadata_3 @ 0x55d1c0] lavfi.black_end=20", ("black", False)),
        ("[Parsed_metadata_3 @ 0x55d1c0] lavfi.freezedetect.freeze_start=26", ("frozen", True)),
        ("[Parsed_metadata_3 @ 0x55d1c0] lavfi.freezedetect.freeze_duration=10", None),
        ("[Parsed_metadata_3 @ 0x55d1c0] lavfi.freezedetect.freeze_end=36", ("frozen", False)),
        ("[silencedetect @ 0x7f00] silence_start: 44.02", ("silent", True)),
        ("[silencedetect @ 0x7f00] silence_end: 54 | silence_duration: 10", ("silent", False)),
        ("[Parsed_metadata_3 @ 0x55d1c0] frame:12   pts:12      pts_time:12", None),
        # a source's own metadata or a file name cannot forge a detector's edge
        ("[rtsp @ 0x1] lavfi.black_start=1", None),
        ("Input #0, rtsp, from 'rtsp://127.0.0.1:8554/silence_start:'", None),
    ],
)
def test_edges_from_ffmpeg_log(line, expected):
    assert mon.edge(line) == expected


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_black_counts_after_the_hold_frozen_and_silent_at_once():
    clock = Clock()
    m = mon.Monitor(hold_seconds=5.0, clock=clock)
    m.running = True
    m.on_edge("black", True)
    m.on_edge("silent", True)
    clock.now += 4.9
    doc = m.snapshot()
    assert (doc["black"]["active"], doc["silent"]["active"]) == (False, True)
    clock.now += 0.1
    assert m.snapshot()["black"] == {"active": True, "forSeconds": 5.0}
    m.on_edge("black", True)  # a repeated start keeps the first time
    clock.now += 1
    assert m.snapshot()["black"]["forSeconds"] == 6.0
    m.on_edge("black", False)
    assert m.snapshot()["black"]["active"] is False


def test_black_hides_frozen_and_nothing_holds_while_not_running():
    clock = Clock()
    m = mon.Monitor(hold_seconds=2.0, clock=clock)
    m.running = True
    m.on_edge("frozen", True)
    assert m.snapshot()["frozen"]["active"] is True
    m.on_edge("black", True)
    clock.now += 2
    doc = m.snapshot()
    assert (doc["black"]["active"], doc["frozen"]["active"]) == (True, False)
    m.running = False
    doc = m.snapshot()
    assert not any(doc[k]["active"] for k in mon.KINDS)
    m.reset()  # a new FFmpeg starts from nothing
    m.running = True
    assert not any(m.snapshot()[k]["active"] for k in mon.KINDS)


def test_metrics_text():
    m = mon.Monitor(hold_seconds=2.0, clock=Clock())
    m.running = True
    m.on_edge("silent", True)
    text = m.metrics()
    assert "streamdist_input_black 0\n" in text and "streamdist_input_silent 1\n" in text
    assert "streamdist_input_monitor_up 1\n" in text
    assert "streamdist_input_thumbnail_age_seconds" not in text  # no keyframe yet
    m.on_jpeg(b"\xff\xd8x\xff\xd9")
    assert "streamdist_input_thumbnail_age_seconds 0.0\n" in m.metrics()


def test_jpegs_split_at_their_end_marker_across_reads():
    pictures = [b"\xff\xd8" + bytes([i]) * 70000 + b"\xff\xd9" for i in range(1, 4)]
    got: list[bytes] = []
    mon.split_jpegs(io.BufferedReader(io.BytesIO(b"".join(pictures))), got.append)  # type: ignore[arg-type]
    assert got == pictures


def test_ffmpeg_argv_keyframes_only_and_audio_optional():
    args = mon.parse_args(["--path", "cam", "--hold-seconds", "3"])
    argv = mon.ffmpeg_argv(args, audio=True)
    assert argv[argv.index("-skip_frame") + 1] == "nokey"
    assert argv[argv.index("-threads") + 1] == "1"
    assert argv[argv.index("-i") + 1] == "rtsp://127.0.0.1:8554/cam"
    assert "freezedetect=n=-50.0dB:d=3" in argv[argv.index("-vf") + 1]
    assert "silencedetect=n=-60.0dB:d=3" in argv[argv.index("-af") + 1]
    assert "-af" not in mon.ffmpeg_argv(args, audio=False)


# --- the operator's side -------------------------------------------------------------


def test_parse_state():
    doc = {"running": True, "holdSeconds": 5, "thumbnailAgeSeconds": 0.8,
           "black": {"active": True}, "frozen": {"active": False}, "silent": {"active": "yes"}}  # fmt: skip
    assert confidence.parse(doc) == ConfidenceState(True, 5.0, frozenset({"black"}), 0.8)
    assert confidence.parse({}) == ConfidenceState(False, 0.0, frozenset(), None)
    with pytest.raises(confidence.ConfidenceError):
        confidence.parse([])


RUNNING = ConfidenceState(True, 5.0, frozenset())


@pytest.mark.parametrize(
    ("state", "receiving", "expected"),
    [
        (None, True, [("Unknown", "MonitorUnavailable")] * 3),
        (RUNNING, False, [("Unknown", "NotMonitoring")] * 3),
        (dataclasses.replace(RUNNING, running=False), True, [("Unknown", "NotMonitoring")] * 3),
        (RUNNING, True, [("False", "Nominal")] * 3),
        (dataclasses.replace(RUNNING, active=frozenset({"black", "silent"})), True,
         [("True", "BlackPicture"), ("False", "Nominal"), ("True", "SilentAudio")]),
        (dataclasses.replace(RUNNING, active=frozenset({"frozen"})), True,
         [("False", "Nominal"), ("True", "FrozenPicture"), ("False", "Nominal")]),
    ],
)  # fmt: skip
def test_conditions(state, receiving, expected):
    conds = confidence.conditions(state, receiving)
    assert [c.type for c in conds] == ["Black", "Frozen", "Silent"]
    assert [(c.status, c.reason) for c in conds] == expected


def test_condition_messages_do_not_grow_while_steady():
    black = dataclasses.replace(RUNNING, active=frozenset({"black"}))
    assert confidence.conditions(black, True) == confidence.conditions(black, True)
    assert confidence.conditions(black, True)[0].message == "the picture has been black for more than 5 s"


def _as_status(conds):
    return [{"type": c.type, "status": c.status} for c in conds]


@pytest.mark.parametrize(
    ("before", "after", "events"),
    [
        (None, RUNNING, []),
        (RUNNING, RUNNING, []),
        (RUNNING, dataclasses.replace(RUNNING, active=frozenset({"frozen"})), [("Warning", "FrozenPicture")]),
        (dataclasses.replace(RUNNING, active=frozenset({"frozen"})), RUNNING, [("Normal", "FrozenCleared")]),
        (dataclasses.replace(RUNNING, active=frozenset({"frozen"})),
         dataclasses.replace(RUNNING, active=frozenset({"frozen"})), []),
        # the source goes: True -> Unknown clears (the condition no longer holds)
        (dataclasses.replace(RUNNING, active=frozenset({"silent"})), None, [("Normal", "SilentCleared")]),
        (None, None, []),
    ],
)  # fmt: skip
def test_transitions(before, after, events):
    previous = _as_status(confidence.conditions(before, True)) if before is not None else None
    got = confidence.transitions(previous, confidence.conditions(after, True))
    assert [(kind, reason) for kind, reason, _ in got] == events


# --- the router pod ------------------------------------------------------------------


def _input() -> StreamInput:
    return StreamInput.model_validate({"apiVersion": "streamdist.io/v1alpha1", "kind": "StreamInput",
                                       "metadata": {"name": "cam", "namespace": "live", "uid": "u-1"},
                                       "spec": {"protocol": "udp"}})  # fmt: skip


def test_router_pod_with_the_monitor():
    settings = Settings(confidence_monitor=True, confidence_hold_seconds=3, operator_namespace="ops",
                        operator_labels=(("app", "op"),))  # fmt: skip
    docs = render.render_input(_input(), 20000, settings)
    pod = render.find(docs, "Deployment")["spec"]["template"]["spec"]
    monitor = next(c for c in pod["containers"] if c["name"] == "monitor")
    assert monitor["command"] == ["/bin/sh", "-c", switch_render.MONITOR_SUPERVISOR, "streamdist-confidence"]
    assert monitor["args"][monitor["args"].index("--hold-seconds") + 1] == "3"
    assert monitor["ports"] == [{"name": "monitor", "containerPort": switch_render.MONITOR_PORT, "protocol": "TCP"}]
    # restricted like every container the operator makes; it writes no file (the JPEG is kept in memory)
    assert monitor["securityContext"] == render.CONTAINER_SECURITY
    assert monitor["securityContext"]["readOnlyRootFilesystem"] is True
    assert monitor["volumeMounts"] == [{"name": "config", "mountPath": "/config", "readOnly": True}]
    # the monitor reads the readers' path from loopback only, and nothing else
    cfg = yaml.safe_load(render.find(docs, "ConfigMap")["data"]["mediamtx.yml"])
    local = [u for u in cfg["authInternalUsers"] if u["user"] == "any"]
    assert local == [{"user": "any", "pass": "", "ips": ["127.0.0.1/32", "::1/128"],
                      "permissions": [{"action": "read", "path": "cam"}]}]  # fmt: skip
    # its port: the operator's only, and the credential it checks holds no password
    policy = render.find(docs, "NetworkPolicy")
    operator_rule = next(r for r in policy["spec"]["ingress"] if "from" in r and "namespaceSelector" in r["from"][0])
    assert {"port": switch_render.MONITOR_PORT, "protocol": "TCP"} in operator_rule["ports"]
    creds = render.RouterPlan.for_render(_input()).credentials
    cred = render.find(docs, "ConfigMap")["data"][switch_render.CREDENTIAL_KEY]
    assert creds.api_password not in cred
    header = "Basic " + base64.b64encode(f"{creds.api_user}:{creds.api_password}".encode()).decode()
    assert net.Credential(**dict(zip(("user", "hashed_password"), yaml.safe_load(cred).values(), strict=True))).allows(header)


def test_router_pod_with_the_monitor_by_default_and_without_when_switched_off():
    assert Settings().confidence_monitor and from_env({}).confidence_monitor
    assert not from_env({"STREAMDIST_CONFIDENCE_MONITOR": "false"}).confidence_monitor
    docs = render.render_input(_input(), 20000, Settings())
    pod = render.find(docs, "Deployment")["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["mediamtx", "monitor"]
    # switched off: no sidecar, no loopback reader, no port, no credential file
    settings = Settings(confidence_monitor=False, operator_namespace="ops", operator_labels=(("app", "op"),))
    docs = render.render_input(_input(), 20000, settings)
    pod = render.find(docs, "Deployment")["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["mediamtx"]
    cfg = yaml.safe_load(render.find(docs, "ConfigMap")["data"]["mediamtx.yml"])
    assert not [u for u in cfg["authInternalUsers"] if u["user"] == "any"]
    assert switch_render.CREDENTIAL_KEY not in render.find(docs, "ConfigMap")["data"]
    inside, _ = render.input_services(docs)
    assert switch_render.MONITOR_PORT not in [p["port"] for p in inside["spec"]["ports"]]
    policy = render.find(docs, "NetworkPolicy")
    operator_rule = next(r for r in policy["spec"]["ingress"] if "from" in r and "namespaceSelector" in r["from"][0])
    assert switch_render.MONITOR_PORT not in [p["port"] for p in operator_rule["ports"]]


def test_the_operator_exports_each_condition():
    assert metrics.CONFIDENCE_CONDITIONS == confidence.CONDITION_TYPES


def test_router_pod_with_backup_and_monitor_keeps_the_switch_rights():
    inp = StreamInput.model_validate({"apiVersion": "streamdist.io/v1alpha1", "kind": "StreamInput",
                                      "metadata": {"name": "cam", "namespace": "live", "uid": "u-1"},
                                      "spec": {"protocol": "udp", "backup": {"protocol": "udp", "port": 20001}}})  # fmt: skip
    docs = render.render_input(inp, 20000, Settings(confidence_monitor=True))
    pod = render.find(docs, "Deployment")["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["mediamtx", "switch", "monitor"]
    cfg = yaml.safe_load(render.find(docs, "ConfigMap")["data"]["mediamtx.yml"])
    (local,) = [u for u in cfg["authInternalUsers"] if u["user"] == "any"]
    assert local["permissions"] == [{"action": "api"}, {"action": "publish", "path": "cam"},
                                    {"action": "read", "path": "cam-primary"}, {"action": "read", "path": "cam-backup"},
                                    {"action": "read", "path": "cam"}]  # fmt: skip
    inside, _ = render.input_services(docs)
    assert {p["name"] for p in inside["spec"]["ports"]} >= {"switch", "monitor"}


def test_a_failing_ffmpeg_is_logged_when_its_failure_changes(tmp_path, capsys):
    """Without a source the monitor's FFmpeg fails every retry: one log line, not one
    each time (a stand-in FFmpeg that prints a line and exits)."""
    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\necho 'rtsp://127.0.0.1:8554/cam: Server returned 404 Not Found' >&2\nexit 1\n")
    fake.chmod(0o755)
    args = mon.parse_args(["--path", "cam", "--ffmpeg", str(fake)])
    m = mon.Monitor(hold_seconds=5.0)
    stopping = threading.Event()
    for _ in range(3):
        assert mon.run_once(args, m, True, stopping) == (1, False)
    lines = [line for line in capsys.readouterr().out.splitlines() if "ffmpeg-exit" in line]
    assert len(lines) == 1 and "404 Not Found" in lines[0] and "was_reading=False" in lines[0]
    assert m.running is False


# --- the operator's health poll against the monitor's real HTTP side ------------------


def test_the_health_poll_reads_the_monitor_and_ignores_the_thumbnail_age(tmp_path):
    host = "127.0.9.5"
    cred = tmp_path / "cred.json"
    cred.write_text(switch_render.credential_file(render.RouterPlan.for_render(_input()).credentials))
    creds = render.RouterPlan.for_render(_input()).credentials
    clock = Clock()
    m = mon.Monitor(hold_seconds=5.0, clock=clock)
    m.running = True
    m.on_edge("black", True)
    clock.now += 6
    m.on_jpeg(b"\xff\xd8\xff\xd9")
    handler = type("H", (mon.Handler,), {"monitor": m, "credential": net.Credential.load(cred)})
    httpd = ThreadingHTTPServer((host, switch_render.MONITOR_PORT), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    key = InputKey("live", "cam")
    try:
        ctx = context.Context(kube=None, settings=Settings(health_poll=True, confidence_monitor=True))  # type: ignore[arg-type]
        ctx.idx.inputs = {("live", "cam"): [{}]}
        with server(good, host, render.API_PORT):
            applied = Applied("d", (), host, api_auth=(creds.api_user, creds.api_password))
            ctx.memory.input(key).applied = applied
            assert health.poll(ctx, key, applied) is True
            seen = ctx.memory.input(key).observation
            assert seen is not None and seen.confidence == ConfidenceState(True, 5.0, frozenset({"black"}), None)
            health.poll(ctx, key, applied)  # the router's bitrate needs two samples: settled now
            clock.now += 3  # only the thumbnail's age moved: nothing to re-plan
            assert health.poll(ctx, key, applied) is False
            m.on_edge("black", False)
            assert health.poll(ctx, key, applied) is True
            assert ctx.memory.input(key).observation.confidence.active == frozenset()  # type: ignore[union-attr]
            # a wrong credential gets nothing: no state, the rest of the poll goes on
            wrong = Applied("d", (), host, api_auth=(creds.api_user, "not-it"))
            health.poll(ctx, key, wrong)
            seen = ctx.memory.input(key).observation
            assert seen is not None and seen.health is not None and seen.confidence is None
    finally:
        httpd.shutdown()
