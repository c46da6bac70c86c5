"""Rendering, table-driven over every input protocol x output form, against golden files.

Set UPDATE_GOLDEN=1 to rewrite the golden files after an intended change, then review
the diff like any other code change.
"""

import os
from pathlib import Path

import pytest
import yaml

from streamdist import render, urls
from streamdist.models import parse_input, parse_output
from streamdist.settings import Settings

GOLDEN = Path(__file__).parent / "golden"
SETTINGS = Settings()
PUBLISH = {"name": "pub", "key": "credential"}
INPUTS = {
    "udp": {"protocol": "udp"},
    "srt": {"protocol": "srt", "passphraseSecretRef": {"name": "pp", "key": "passphrase"}, "publishSecretRef": PUBLISH},
    "rtmp": {"protocol": "rtmp", "service": {"type": "NodePort"}, "publishSecretRef": PUBLISH},
    "rtsp": {"protocol": "rtsp", "service": {"type": "LoadBalancer"}, "publishSecretRef": PUBLISH,
             "allowedSources": ["203.0.113.0/24"]},
}
OUTPUTS = {
    "srt-caller": {"url": "srt://dec.example:9000?mode=caller&latency=200000"},
    "srt-listener": {"url": "srt://0.0.0.0:9100?mode=listener", "service": {"type": "NodePort"}},
    "rtmp": {"url": "rtmp://media.example/live/program"},
    "rtmps-secret": {"urlFrom": {"secretKeyRef": {"name": "yt", "key": "url"}}},
    "udp": {"url": "udp://239.1.1.1:5000?pkt_size=1316"},
    "rtsp": {"url": "rtsp://monitor.example:8554/program"},
}
SECRET_URL = "rtmps://a.rtmp.youtube.com:443/live2/CANARYkey0042"


def _input(protocol):
    body = {"metadata": {"name": f"in-{protocol}", "namespace": "live", "uid": "uid-in"}, "spec": INPUTS[protocol]}
    return parse_input(body)


def _output(input_name, form):
    spec = {"input": input_name, **OUTPUTS[form]}
    return parse_output({"metadata": {"name": f"out-{form}", "namespace": "live", "uid": "uid-out"}, "spec": spec})


def _check_golden(name, docs):
    text = yaml.safe_dump_all(docs, sort_keys=True)
    path = GOLDEN / f"{name}.yaml"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.exists(), f"missing golden file {path}; run with UPDATE_GOLDEN=1"
    assert text == path.read_text()


@pytest.mark.parametrize("protocol", sorted(INPUTS))
def test_input_golden(protocol):
    _check_golden(f"input-{protocol}", render.render_input(_input(protocol), 20001, SETTINGS))


@pytest.mark.parametrize("form", sorted(OUTPUTS))
@pytest.mark.parametrize("protocol", sorted(INPUTS))
def test_output_golden(protocol, form):
    out = _output(f"in-{protocol}", form)
    dest = urls.parse(out.spec.url or SECRET_URL)
    docs = render.render_output(out, render.OutputPlan(destination=dest), SETTINGS)
    _check_golden(f"output-{protocol}-{form}", docs)
    pod = docs[0]
    container = pod["spec"]["containers"][0]
    assert container["command"] == ["streamdist-ffmpeg"]
    masked = {e["name"]: e.get("value") for e in container["env"]}[render.MASKED_DESTINATION_ENV]
    assert masked == dest.masked and container["args"][-1] in (out.spec.url, f"$({render.DESTINATION_ENV})")
    read = f"rtsp://$(STREAMDIST_READ_USER):$(STREAMDIST_READ_PASSWORD)@in-{protocol}.live.svc:8554/in-{protocol}"
    assert read in container["args"]
    assert "CANARYkey0042" not in yaml.safe_dump(docs)


def test_input_children_have_owner_and_labels():
    docs = render.render_input(_input("srt"), 20001, SETTINGS)
    assert [d["kind"] for d in docs] == ["Secret", "ConfigMap", "NetworkPolicy", "Deployment", "Service", "Service"]
    for doc in docs:
        assert doc["metadata"]["ownerReferences"][0]["kind"] == "StreamInput"
        assert doc["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "streamdist"
        assert doc["metadata"]["labels"]["streamdist.io/input"] == "in-srt"
    inside, ingest = render.input_services(docs)
    assert ingest["spec"]["ports"] == [{"name": "ingest", "port": 20001, "targetPort": 20001, "protocol": "UDP"}]
    internal_ports = {p["name"] for p in inside["spec"]["ports"]}
    assert "ingest" not in internal_ports
    assert not {"api", "metrics"} & {p["name"] for p in ingest["spec"]["ports"]}
    no_policy = render.render_input(_input("srt"), 20001, Settings(network_policies=False))
    assert "NetworkPolicy" not in [d["kind"] for d in no_policy]


def test_mediamtx_config_turns_off_unused_servers():
    config = yaml.safe_load(render.mediamtx_config(_input("udp"), 20001))
    for server in ("hls", "webrtc", "moq", "rtmp", "srt", "pprof", "playback"):
        assert config[server] is False, server
    assert config["paths"]["in-udp"]["source"] == "udp+mpegts://0.0.0.0:20001"
    srt = yaml.safe_load(render.mediamtx_config(_input("srt"), 20002))
    assert srt["srt"] is True and srt["srtAddress"] == ":20002"
    assert srt["paths"]["in-srt"]["source"] == "publisher"
    assert srt["paths"]["in-srt"]["overridePublisher"] is False, "a live publisher is never kicked by a second one"


def test_router_secrets_only_from_the_inputs_credentials_secret():
    docs = render.render_input(_input("srt"), 20001, SETTINGS)
    env = render.find(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env}
    assert refs == {
        "MTX_AUTHINTERNALUSERS_2_USER": {"name": "in-srt-credentials", "key": "publishUser"},
        "MTX_AUTHINTERNALUSERS_2_PASS": {"name": "in-srt-credentials", "key": "publishPassword"},
        "MTX_PATHS_IN-SRT_SRTPUBLISHPASSPHRASE": {"name": "in-srt-credentials", "key": "srtPassphrase"},
        "MTX_PATHS_IN-SRT_SRTREADPASSPHRASE": {"name": "in-srt-credentials", "key": "srtReadPassphrase"},
    }
    assert all("value" not in e for e in env)


def test_secret_destination_goes_through_env():
    out = _output("in-udp", "rtmps-secret")
    docs = render.render_output(out, render.OutputPlan(destination=urls.parse(SECRET_URL)), SETTINGS)
    container = docs[0]["spec"]["containers"][0]
    assert container["args"][-1] == "$(STREAMDIST_DESTINATION)"
    assert container["env"] == [
        {"name": "STREAMDIST_READ_USER", "valueFrom": {"secretKeyRef": {"name": "in-udp-credentials", "key": "readUser"}}},
        {"name": "STREAMDIST_READ_PASSWORD",
         "valueFrom": {"secretKeyRef": {"name": "in-udp-credentials", "key": "readPassword"}}},
        {"name": "STREAMDIST_DESTINATION", "valueFrom": {"secretKeyRef": {"name": "yt", "key": "url"}}},
        {"name": "STREAMDIST_MASKED_DESTINATION", "value": urls.mask(SECRET_URL)},
        {"name": "STREAMDIST_INPUT_ADDRESS", "value": "in-udp.live.svc:8554"},
        {"name": "STREAMDIST_TELEMETRY_LISTEN", "value": "0.0.0.0:9998"},
    ]
    assert "CANARY" not in urls.mask(SECRET_URL)


@pytest.mark.parametrize(("audio", "expected"), [((), "aac"), (("MPEG-4 Audio",), "copy"), (("MPEG-1/2 Audio",), "aac"),
                                                  (("AC-3",), "aac")])
def test_flv_audio_transcoded_only_when_needed(audio, expected):
    dest = urls.parse("rtmp://h.example/app/key")
    assert render.audio_codec_args(dest, audio)[1] == expected
    assert render.audio_codec_args(urls.parse("udp://h:1"), audio)[1] == "copy"


def test_rtmp_never_gets_timeout_option():
    args = render.ffmpeg_args("rtsp://x/y", "rtmp://h/a/k", render.OutputPlan(urls.parse("rtmp://h/a/k")))
    after_input = args[args.index("-i") + 2 :]
    assert "-timeout" not in after_input
    assert "-rw_timeout" in after_input


def test_pod_passes_restricted_pod_security():
    out = _output("in-udp", "srt-listener")
    pod = render.render_output(out, render.OutputPlan(urls.parse(out.spec.url)), SETTINGS)[0]
    spec = pod["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    for c in spec["containers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert spec["restartPolicy"] == "Always"


def test_revision_changes_with_replacement_and_secret_version():
    out = _output("in-udp", "udp")
    dest = urls.parse(out.spec.url)
    names = {
        render.render_output(out, render.OutputPlan(dest, replacement=r, secret_version=v), SETTINGS)[0]["metadata"]["name"]
        for r, v in [(0, ""), (1, ""), (0, "7")]
    }
    assert len(names) == 3
    again = render.render_output(out, render.OutputPlan(dest), SETTINGS)[0]["metadata"]["name"]
    assert again in names

