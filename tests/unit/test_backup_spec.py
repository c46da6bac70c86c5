"""Backup source: the spec rules, the rendered router (paths, listeners, the switch
sidecar, ingest ports), endpoints and which source the status says is on air."""

import dataclasses
import json

import pytest
import yaml
from pydantic import ValidationError

from streamdist import mediamtx, render
from streamdist.handlers.memory import InputObservation
from streamdist.input_plan import active_source, ingest_endpoint, on_air
from streamdist.models import parse_input
from streamdist.settings import Settings

SETTINGS = Settings()
PUBLISH = {"name": "cam-publish", "key": "credential"}


def _input(protocol="udp", backup=None, **spec):
    spec = {"protocol": protocol, **spec}
    if backup is not None:
        spec["backup"] = backup
    if {protocol, (backup or {}).get("protocol", "udp")} & {"srt", "rtmp", "rtsp"}:
        spec.setdefault("publishSecretRef", PUBLISH)
    return parse_input({"metadata": {"name": "cam", "namespace": "live", "uid": "u"}, "spec": spec})


@pytest.mark.parametrize(
    ("protocol", "backup", "error"),
    [
        ("udp", {"protocol": "udp"}, "backup.port is required"),
        ("rtmp", {"protocol": "srt"}, "backup.port is required"),
        ("udp", {"protocol": "rtsp"}, "backup.port is required"),
        ("srt", {"protocol": "srt", "port": 21000}, "backup.port must be unset"),
        ("rtmp", {"protocol": "rtmp", "port": 21000}, "backup.port must be unset"),
        ("udp", {"protocol": "udp", "port": 21000}, "backup.port must differ from port"),
    ],
)
def test_backup_port_rules(protocol, backup, error):
    extra = {"port": 21000} if error.endswith("differ from port") else {}
    with pytest.raises(ValidationError, match=error):
        _input(protocol, backup, **extra)


def test_passphrase_allowed_when_only_the_backup_is_srt():
    inp = _input("udp", {"protocol": "srt", "port": 21001}, passphraseSecretRef={"name": "p", "key": "k"})
    assert inp.spec.backup is not None and inp.spec.backup.protocol == "srt"
    with pytest.raises(ValidationError, match="passphraseSecretRef"):
        _input("udp", {"protocol": "udp", "port": 21001}, passphraseSecretRef={"name": "p", "key": "k"})


def test_udp_primary_with_srt_backup_renders_three_paths_and_both_listeners():
    inp = _input("udp", {"protocol": "srt", "port": 21001})
    cfg = yaml.safe_load(render.mediamtx_config(inp, 20001))
    assert cfg["srt"] is True and cfg["srtAddress"] == ":21001" and cfg["rtmp"] is False
    assert cfg["paths"]["cam"]["source"] == "publisher"
    assert cfg["paths"]["cam"]["overridePublisher"] is True
    assert cfg["paths"]["cam"]["alwaysAvailable"] is True  # a backup implies the slate
    assert cfg["paths"]["cam-primary"] == {"source": "udp+mpegts://0.0.0.0:20001"}
    assert cfg["paths"]["cam-backup"] == {"source": "publisher", "overridePublisher": False}
    docs = render.render_input(inp, 20001, SETTINGS)
    deployment, (_, ingest_svc) = render.find(docs, "Deployment"), render.input_services(docs)
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["mediamtx", "switch", "monitor"]  # the confidence monitor: on by default
    switch = containers[1]
    assert switch["image"] == SETTINGS.ffmpeg_image and switch["command"] == ["streamdist-switch"]
    assert switch["args"] == [
        "--path", "cam", "--api", "http://127.0.0.1:9997", "--rtsp", "rtsp://127.0.0.1:8554", "--loss-after-ms", "300",
        "--state-address", ":9996", "--state-credential", "/config/switch-credential.json", "--workdir", "/tmp",
        "--slate-color", "#000000", "--video", "h264", "--audio", "aac", "--sample-rate", "48000", "--channels", "2",
    ]  # fmt: skip
    assert switch["securityContext"]["readOnlyRootFilesystem"] is True
    assert switch["ports"] == [{"name": "switch", "containerPort": 9996, "protocol": "TCP"}]
    assert switch["volumeMounts"] == [{"name": "config", "mountPath": "/config", "readOnly": True},
                                      {"name": "switch-tmp", "mountPath": "/tmp"}]  # fmt: skip
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["switch-tmp"] == {"name": "switch-tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}
    ports = [(p["name"], p["port"], p["targetPort"], p["protocol"]) for p in ingest_svc["spec"]["ports"]]
    assert ports == [("ingest", 20001, 20001, "UDP"), ("backup", 21001, 21001, "UDP")]


def test_same_protocol_backup_shares_the_listener():
    inp = _input("rtmp", {"protocol": "rtmp"})
    cfg = yaml.safe_load(render.mediamtx_config(inp, 20001))
    assert cfg["rtmpAddress"] == ":20001"
    assert set(cfg["paths"]) == {"cam", "cam-primary", "cam-backup"}
    _, svc = render.input_services(render.render_input(inp, 20001, SETTINGS))
    assert [p["name"] for p in svc["spec"]["ports"]] == ["ingest"]
    endpoints = [ingest_endpoint(inp, i, svc) for i in render.ingests(inp, 20001)]
    assert endpoints == ["rtmp://cam-ingest.live.svc:20001/cam-primary", "rtmp://cam-ingest.live.svc:20001/cam-backup"]


def test_rtsp_backup_of_another_protocol_maps_its_port_to_the_rtsp_server():
    inp = _input("srt", {"protocol": "rtsp", "port": 21002})
    docs = render.render_input(inp, 20001, SETTINGS)
    _, svc = render.input_services(docs)
    svc_ports = [(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]]
    assert svc_ports == [("ingest", 20001, 20001), ("backup", 21002, 8554)]
    deployment = render.find(docs, "Deployment")
    container_ports = [p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]]
    assert container_ports == ["ingest", "rtsp", "api", "metrics"]
    srt = ingest_endpoint(inp, render.ingests(inp, 20001)[0], svc)
    assert srt == "srt://cam-ingest.live.svc:20001?streamid=publish:cam-primary"


def test_nodeport_backup_endpoint_uses_its_own_node_port():
    inp = _input("udp", {"protocol": "udp", "port": 21003}, service={"type": "NodePort"})
    svc = {"spec": {"ports": [{"name": "ingest", "nodePort": 30001}, {"name": "backup", "nodePort": 30002}]}}
    got = [ingest_endpoint(inp, i, svc) for i in render.ingests(inp, 20001)]
    assert got == ["udp://<node-address>:30001", "udp://<node-address>:30002"]


def test_without_backup_nothing_changes():
    inp = _input("srt")
    cfg = yaml.safe_load(render.mediamtx_config(inp, 20001))
    assert cfg["paths"] == {"cam": {"source": "publisher", "overridePublisher": False}}
    deployment = render.find(render.render_input(inp, 20001, SETTINGS), "Deployment")
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["mediamtx", "monitor"]  # no switch (the monitor: on by default)


def _sample(online: bool, source_id: str = "s1") -> mediamtx.PathSample:
    return mediamtx.PathSample(name="cam", ready=True, online=online, ready_time=None, source_type="rtspSession",
                               source_id=source_id, tracks=("H264",), bytes_received=0, bytes_sent=0, readers=(),
                               sampled_at=0.0)  # fmt: skip


def test_switch_state_endpoint_is_rendered_for_the_operator_only():
    from streamdist import credentials
    from streamdist.settings import Settings

    inp = _input("udp", {"protocol": "udp", "port": 21001, "lossAfterMs": 150})
    settings = Settings(operator_namespace="streamdist", operator_labels=(("app", "streamdist"),))
    docs = render.render_input(inp, 20001, settings)
    plan = render.RouterPlan.for_render(inp)
    cm = render.find(docs, "ConfigMap")["data"]
    assert json.loads(cm["switch-credential.json"]) == {
        "user": plan.credentials.api_user, "pass": credentials.hashed(plan.credentials.api_password)}  # fmt: skip
    assert plan.credentials.api_password not in json.dumps(docs)
    inside, _ = render.input_services(docs)
    assert {"name": "switch", "port": 9996, "targetPort": 9996, "protocol": "TCP"} in inside["spec"]["ports"]
    policy = render.find(docs, "NetworkPolicy")
    operator_rule = next(r for r in policy["spec"]["ingress"] if "namespaceSelector" in r["from"][0])
    assert [p["port"] for p in operator_rule["ports"]] == [9997, 9998, 9996, 9995]  # 9995: the confidence monitor
    switch = render.find(docs, "Deployment")["spec"]["template"]["spec"]["containers"][1]
    assert switch["args"][switch["args"].index("--loss-after-ms") + 1] == "150"
    # without a backup: no switch, no state port; and no credential file where the
    # confidence monitor (on by default) does not need it either
    plain = render.render_input(_input("udp"), 20001, settings)
    assert 9996 not in [p["port"] for p in render.input_services(plain)[0]["spec"]["ports"]]
    assert "switch-credential.json" in render.find(plain, "ConfigMap")["data"]
    unmonitored = render.render_input(_input("udp"), 20001, dataclasses.replace(settings, confidence_monitor=False))
    assert "switch-credential.json" not in render.find(unmonitored, "ConfigMap")["data"]
    assert 9996 not in [p["port"] for p in render.input_services(unmonitored)[0]["spec"]["ports"]]


def test_slate_look_and_format_reach_the_switch():
    inp = _input("udp", {"protocol": "udp", "port": 21001}, fallback={
        "width": 1280, "height": 720, "frameRate": "30000/1001", "profile": "high", "color": "#102030",
        "text": "We'll be right back", "imageFrom": {"configMapKeyRef": {"name": "slates", "key": "logo.png"}}})  # fmt: skip
    spec = render.find(render.render_input(inp, 20001, SETTINGS), "Deployment")["spec"]["template"]["spec"]
    args = spec["containers"][1]["args"]
    pairs = dict(zip(args[::2], args[1::2], strict=True))
    assert pairs["--width"] == "1280" and pairs["--height"] == "720"
    assert pairs["--fps"] == "30000/1001" and pairs["--profile"] == "high" and pairs["--slate-color"] == "#102030"
    assert pairs["--slate-text"] == "We'll be right back" and pairs["--slate-image"] == "/slate/image"
    image = next(v for v in spec["volumes"] if v["name"] == "slate-image")
    assert image["configMap"] == {"name": "slates", "optional": True, "items": [{"key": "logo.png", "path": "image"}]}
    assert {"name": "slate-image", "mountPath": "/slate", "readOnly": True} in spec["containers"][1]["volumeMounts"]


@pytest.mark.parametrize("fallback", [{"text": "hi"}, {"width": 640, "height": 360}, {"color": "#000000"},
                                      {"imageFrom": {"configMapKeyRef": {"name": "a", "key": "b"}}}])
def test_switch_slate_fields_need_a_backup(fallback):
    with pytest.raises(ValidationError, match=r"need spec\.backup"):
        _input("udp", fallback=fallback)


def test_width_and_height_go_together():
    with pytest.raises(ValidationError, match=r"width and fallback\.height go together"):
        _input("udp", {"protocol": "udp", "port": 21001}, fallback={"width": 640})


def test_active_source_with_a_backup_is_what_the_switch_says():
    from streamdist.switch_state import SwitchState

    inp = _input("udp", {"protocol": "udp", "port": 21001})

    def seen(on_air):
        sample = _sample(True)
        return InputObservation(mediamtx.input_health(None, sample), sample,
                                switch=SwitchState(on_air) if on_air != "unread" else None)  # fmt: skip

    assert active_source(inp, seen("backup")) == "backup"
    assert active_source(inp, seen("primary")) == "primary"
    assert active_source(inp, seen("slate")) == "fallback"
    assert active_source(inp, seen(None)) is None and active_source(inp, seen("unread")) is None
    assert on_air("backup").reason == "SwitchedToBackup" and on_air("backup").status == "True"
    assert on_air("fallback").reason == "SwitchedToSlate"


def test_outputs_see_which_source_of_their_input_is_on_air():
    from streamdist.output_plan import input_ready_condition

    assert input_ready_condition({"activeSource": "backup", "phase": "Live"}).reason == "BackupOnAir"
    assert input_ready_condition({"activeSource": "fallback", "phase": "Live"}).reason == "FallbackOnAir"
    recv = {"type": "Receiving", "status": "True", "reason": "SourceLive", "message": "m"}
    primary = input_ready_condition({"activeSource": "primary", "phase": "Live", "conditions": [recv]})
    assert (primary.status, primary.reason) == ("True", "SourceLive")
