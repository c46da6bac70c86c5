"""Fallback slate: rendered MediaMTX config, activeSource and the OnAir condition."""

import yaml

from streamdist import mediamtx, render
from streamdist.handlers.memory import InputObservation
from streamdist.input_plan import active_source, on_air
from streamdist.models import parse_input


def _input(fallback=None):
    spec = {"protocol": "srt", "publishSecretRef": {"name": "cam-publish", "key": "credential"}}
    if fallback is not None:
        spec["fallback"] = fallback
    return parse_input({"metadata": {"name": "cam", "namespace": "live"}, "spec": spec})


def _seen(online: bool) -> InputObservation:
    sample = mediamtx.PathSample(name="cam", ready=True, online=online, ready_time=None, source_type=None,
                                 source_id=None, tracks=("H264",), bytes_received=0, bytes_sent=0, readers=(),
                                 sampled_at=0.0)
    return InputObservation(mediamtx.input_health(None, sample), sample)


def test_fallback_turns_on_always_available_with_the_source_tracks():
    path = yaml.safe_load(render.mediamtx_config(_input({}), 20001))["paths"]["cam"]
    assert path["alwaysAvailable"] is True
    assert path["alwaysAvailableTracks"] == [{"codec": "H264"},
                                             {"codec": "MPEG4Audio", "sampleRate": 48000, "channelCount": 2}]
    video_only = yaml.safe_load(render.mediamtx_config(_input({"video": "H265", "audio": "none"}), 20001))
    assert video_only["paths"]["cam"]["alwaysAvailableTracks"] == [{"codec": "H265"}]


def test_without_fallback_behaviour_stays_as_before():
    path = yaml.safe_load(render.mediamtx_config(_input(), 20001))["paths"]["cam"]
    assert path == {"source": "publisher", "overridePublisher": False}


def test_active_source_and_on_air():
    inp = _input({})
    assert active_source(inp, _seen(True)) == "primary"
    assert active_source(inp, _seen(False)) == "fallback"
    assert active_source(inp, None) is None
    assert active_source(_input(), _seen(False)) is None
    assert on_air("fallback").reason == "SwitchedToSlate"
    assert on_air("primary").status == "True"
