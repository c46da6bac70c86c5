"""Backup source: the spec rules, the rendered router (paths, listeners, the switch
sidecar, ingest ports), endpoints and which source the status says is on air."""

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
    assert [c["name"] for c in containers] == ["mediamtx", "switch"]
    switch = containers[1]
    assert switch["image"] == SETTINGS.ffmpeg_image and switch["command"] == ["streamdist-switch"]
    assert switch["args"] == ["--path", "cam", "--api", "http://127.0.0.1:9997", "--rtsp", "rtsp://127.0.0.1:8554"]
    assert switch["securityContext"]["readOnlyRootFilesystem"] is True
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
    assert [c["name"] for c in containers] == ["mediamtx"]


def _sample(online: bool, source_id: str = "s1") -> mediamtx.PathSample:
    return mediamtx.PathSample(name="cam", ready=True, online=online, ready_time=None, source_type="rtspSession",
                               source_id=source_id, tracks=("H264",), bytes_received=0, bytes_sent=0, readers=(),
                               sampled_at=0.0)  # fmt: skip


def _session(sid: str, query: str) -> mediamtx.Session:
    return mediamtx.Session(type="rtspSession", id=sid, path="cam", state="publish", remote_addr="127.0.0.1:1",
                            created=None, bytes_received=1, bytes_sent=0, query=query)  # fmt: skip


def test_relay_role_from_the_publishing_session_query():
    sessions = [_session("s0", "streamdist=primary"), _session("s1", "streamdist=backup")]
    assert mediamtx.relay_role(_sample(True, "s1"), sessions) == "backup"
    assert mediamtx.relay_role(_sample(True, "s0"), sessions) == "primary"
    assert mediamtx.relay_role(_sample(True, "other"), sessions) is None
    assert mediamtx.relay_role(_sample(False, "s1"), sessions) is None
    assert mediamtx.relay_role(_sample(True, "s0"), [_session("s0", "x=1")]) is None


def test_active_source_with_a_backup():
    inp = _input("udp", {"protocol": "udp", "port": 21001})

    def seen(online, relay):
        sample = _sample(online)
        return InputObservation(mediamtx.input_health(None, sample), sample, relay=relay)

    assert active_source(inp, seen(True, "backup")) == "backup"
    assert active_source(inp, seen(True, "primary")) == "primary"
    assert active_source(inp, seen(True, None)) == "primary"
    assert active_source(inp, seen(False, None)) == "fallback"
    assert on_air("backup").reason == "SwitchedToBackup" and on_air("backup").status == "True"


def test_outputs_see_which_source_of_their_input_is_on_air():
    from streamdist.output_plan import input_ready_condition

    assert input_ready_condition({"activeSource": "backup", "phase": "Live"}).reason == "BackupOnAir"
    assert input_ready_condition({"activeSource": "fallback", "phase": "Live"}).reason == "FallbackOnAir"
    recv = {"type": "Receiving", "status": "True", "reason": "SourceLive", "message": "m"}
    primary = input_ready_condition({"activeSource": "primary", "phase": "Live", "conditions": [recv]})
    assert (primary.status, primary.reason) == ("True", "SourceLive")
