"""Models apply the CRD's defaults and reject what it rejects, with readable messages."""

import pytest
from pydantic import ValidationError

from streamdist.models import explain, parse_input, parse_output


def _input(spec, name="cam1"):
    return (parse_input, {"metadata": {"name": name, "namespace": "live"}, "spec": spec})


def _output(spec, name="out1"):
    return (parse_output, {"metadata": {"name": name, "namespace": "live"}, "spec": spec})


def test_input_defaults():
    inp = parse_input(_input({})[1])
    assert inp.spec.protocol == "udp"
    assert inp.spec.max_outputs == 20
    assert inp.spec.service.type == "ClusterIP"
    assert inp.spec.port is None


def test_output_defaults():
    out = parse_output(_output({"input": "cam1", "url": "udp://h:1"})[1])
    assert out.spec.reconnect.delay_seconds == 2
    assert out.spec.reconnect.max_delay_seconds == 30
    assert out.spec.suspend is False
    assert out.spec.service.type == "ClusterIP"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        (_input({"protocol": "http"}), "protocol: Input should be 'udp', 'srt', 'rtmp' or 'rtsp'"),
        (_input({"port": 80}), "port: Input should be greater than or equal to 1024"),
        (_input({"port": 65536}), "port: Input should be less than or equal to 65535"),
        (_input({"maxOutputs": 0}), "maxOutputs: Input should be greater than or equal to 1"),
        (_input({"service": {"type": "ExternalName"}}), "service.type"),
        (_input({"protocol": "udp", "passphraseSecretRef": {"name": "a", "key": "b"}}), "only meaningful with protocol srt"),
        (_input({}, name="Cam"), "DNS-1035 label"),
        (_input({}, name="a" * 57), "at most 56"),
        (_input({"bogus": 1}), "bogus: Extra inputs are not permitted"),
        (_output({"input": "cam1"}), "exactly one of url and urlFrom"),
        (_output({"input": "cam1", "url": "udp://h:1", "urlFrom": {"secretKeyRef": {"name": "a", "key": "b"}}}),
         "exactly one of url and urlFrom"),
        (_output({"input": "cam1", "url": "udp://h:1", "reconnect": {"delaySeconds": 10, "maxDelaySeconds": 5}}),
         "maxDelaySeconds must be >= reconnect.delaySeconds"),
        (_output({"input": "cam1", "url": "udp://h:1", "reconnect": {"delaySeconds": 0}}), "greater than or equal to 1"),
        (_output({"url": "udp://h:1"}), "input: Field required"),
        (_output({"input": "cam1", "url": "udp://h:1"}, name="x" * 55), "at most 54"),
    ],
)
def test_rejects_with_clear_message(case, message):
    parse, body = case
    with pytest.raises(ValidationError) as info:
        parse(body)
    assert message in explain(info.value)
