"""streamdist ui, the pure parts: what the browser may see of an object, and the forms'
rules and messages (the operator's own, no value the viewer typed echoed back)."""

import json
import re
from pathlib import Path

import pytest

from streamdist.ui import forms, server, views
from streamdist.ui.kubeapi import ApiError

CANARY = "c4n4ry-k3y-never-in-the-browser"
STATIC = Path(__file__).resolve().parents[2] / "operator" / "streamdist" / "ui" / "static"


def _output(**spec):
    return {
        "apiVersion": "streamdist.io/v1alpha1",
        "kind": "StreamOutput",
        "metadata": {
            "name": "yt", "namespace": "live", "uid": "u1", "resourceVersion": "7",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": json.dumps({"spec": {"url": f"rtmp://a/app/{CANARY}"}})},
            "managedFields": [{"fieldsV1": {"f:spec": {"f:url": {}}}, "manager": CANARY}],
            "labels": {"secret": CANARY},
        },
        "spec": {"input": "cam", "url": f"rtmp://a.example/app/{CANARY}", "reconnect": {"delaySeconds": 2, "maxDelaySeconds": 30}, **spec},
        "status": {
            "phase": "Streaming", "protocol": "rtmp", "destination": "rtmp://a.example/app/***", "reconnects": 3,
            "lastError": "Connection refused", "pod": "yt-abc", "bitrateKbps": 2500, "rttMs": 12,
            "conditions": [{"type": "Ready", "status": "True", "reason": "Streaming", "message": "ok", "lastTransitionTime": "t", "extra": CANARY}],
            "somethingNew": {"nested": CANARY},
        },
    }


def test_output_view_copies_only_named_fields_and_never_the_url():
    view = views.output_view(_output())
    assert CANARY not in json.dumps(view)
    assert view["destination"] == "rtmp://a.example/app/***"
    assert view["phase"] == "Streaming" and view["reconnects"] == 3 and view["input"] == "cam"
    assert view["figures"] == {"bitrateKbps": 2500, "rttMs": 12}
    assert view["conditions"] == [{"type": "Ready", "status": "True", "reason": "Streaming", "message": "ok", "lastTransitionTime": "t"}]
    assert view["reconnect"] == {"delaySeconds": 2, "maxDelaySeconds": 30}


def test_output_view_of_a_secret_destination_names_the_reference_only():
    obj = _output(urlFrom={"secretKeyRef": {"name": "yt-key", "key": "url", "value": CANARY}})
    del obj["spec"]["url"]
    view = views.output_view(obj)
    assert view["secret"] == {"name": "yt-key", "key": "url"}
    assert CANARY not in json.dumps(view)


@pytest.mark.parametrize("value", [{"a": CANARY}, [CANARY], None])
def test_views_copy_scalars_only(value):
    obj = _output()
    obj["status"]["destination"] = value
    obj["status"]["phase"] = value
    assert CANARY not in json.dumps(views.output_view(obj))


def test_input_view():
    obj = {
        "metadata": {"name": "cam", "namespace": "live", "uid": "i1", "annotations": {"x": CANARY}},
        "spec": {"protocol": "srt", "passphraseSecretRef": {"name": "pp", "key": "k"}, "allowedSources": ["10.0.0.0/8", {"x": 1}]},
        "status": {"phase": "Live", "endpoint": "srt://10.0.0.1:20000", "bitrateKbps": 4000, "readers": 2, "activeSource": "primary", "tracks": ["H264", 5]},
    }
    view = views.input_view(obj)
    assert view["endpoint"] == "srt://10.0.0.1:20000" and view["activeSource"] == "primary"
    assert view["figures"] == {"bitrateKbps": 4000, "readers": 2}
    assert view["passphraseSecret"] == {"name": "pp", "key": "k"} and view["publishSecret"] is None
    assert view["allowedSources"] == ["10.0.0.0/8"] and view["tracks"] == ["H264"]
    assert view["serviceType"] == "ClusterIP" and CANARY not in json.dumps(view)


def test_event_view():
    ev = {
        "metadata": {"name": "yt.1", "namespace": "live", "uid": "e1", "creationTimestamp": "t0"},
        "involvedObject": {"kind": "StreamOutput", "name": "yt", "namespace": "live", "uid": "u1", "fieldPath": CANARY},
        "type": "Warning", "reason": "BackoffReplaced", "message": "replaced", "count": 2, "lastTimestamp": "t1",
    }
    view = views.event_view(ev)
    assert view["object"] == {"kind": "StreamOutput", "name": "yt", "namespace": "live", "uid": "u1"}
    assert view["time"] == "t1" and view["reason"] == "BackoffReplaced" and CANARY not in json.dumps(view)


# --- forms -------------------------------------------------------------------------------


OUTPUT_FORMS = [
    # (form, errors by path: a substring of the message)
    ({"name": "yt", "input": "cam", "protocol": "rtmp", "url": "rtmp://a.example/app/key"}, {}),
    ({"name": "Yt", "input": "cam", "url": "rtmp://a.example/app/key"}, {"metadata.name": "DNS-1035 label"}),
    ({"name": "yt", "input": "", "url": "rtmp://a.example/app/key"}, {"spec.input": "at least 1 character"}),
    ({"name": "yt", "input": "cam", "url": "http://a.example/x"}, {"spec.url": "url scheme must be one of"}),
    ({"name": "yt", "input": "cam", "url": "srt://a.example:9000?mode=both"}, {"spec.url": "mode must be caller or listener"}),
    ({"name": "yt", "input": "cam", "protocol": "srt", "url": "rtmp://a.example/app/key"}, {"spec.url": "must be srt://"}),
    ({"name": "yt", "input": "cam", "url": "udp://a.example:5000", "delaySeconds": "10", "maxDelaySeconds": "5"},
     {"spec.reconnect": "maxDelaySeconds must be >= reconnect.delaySeconds"}),
    ({"name": "yt", "input": "cam", "url": "udp://a.example:5000", "delaySeconds": "soon"},
     {"spec.reconnect.delaySeconds": "valid integer"}),
    ({"name": "yt", "input": "cam", "destination": "secret", "secretName": "yt-url", "secretKey": "url"}, {}),
    ({"name": "yt", "input": "cam", "destination": "secret", "secretName": "yt-url"}, {"spec.urlFrom.secretKeyRef.key": "at least 1 character"}),
]


def _judged(got: forms.Outcome, want: dict[str, str]) -> None:
    assert set(got.errors) == set(want), got.errors
    for path, text in want.items():
        assert text in got.errors[path]
    assert (got.manifest is None) == bool(want)


@pytest.mark.parametrize(("form", "want"), OUTPUT_FORMS)
def test_output_form(form, want):
    _judged(forms.output_form(form, "live"), want)


def test_output_form_manifest():
    got = forms.output_form(
        {"name": "yt", "input": "cam", "destination": "secret", "secretName": "k", "secretKey": "url", "url": "ignored",
         "delaySeconds": "3", "maxDelaySeconds": 60, "namespace": "other"}, "live")
    assert got.manifest == {
        "apiVersion": "streamdist.io/v1alpha1", "kind": "StreamOutput",
        "metadata": {"name": "yt", "namespace": "live"},
        "spec": {"input": "cam", "urlFrom": {"secretKeyRef": {"name": "k", "key": "url"}},
                 "reconnect": {"delaySeconds": 3, "maxDelaySeconds": 60}},
    }


def test_output_form_never_echoes_the_url():
    bad = f"rtmp://a.example/app/{CANARY} x"
    got = forms.output_form({"name": "yt", "input": "cam", "url": bad}, "live")
    assert got.errors and CANARY not in json.dumps(got.errors)


PUBLISH = {"publishName": "cam-publish", "publishKey": "credential"}
INPUT_FORMS = [
    ({"name": "cam", "protocol": "udp"}, {}),
    ({"name": "cam", "protocol": "udp", "allowedSources": "203.0.113.0/24, 198.51.100.7/32"}, {}),
    ({"name": "cam", "protocol": "udp", "allowedSources": "203.0.113.1/24"}, {"spec": "allowedSources must list CIDRs"}),
    ({"name": "cam", "protocol": "srt", "passphraseName": "pp", "passphraseKey": "k", "port": "20001", "serviceType": "NodePort", **PUBLISH}, {}),
    ({"name": "cam", "protocol": "rtmp"}, {"spec": "publishSecretRef is required"}),
    ({"name": "cam", "protocol": "udp", **PUBLISH}, {"spec": "publishSecretRef needs an srt, rtmp or rtsp ingest"}),
    ({"name": "cam", "protocol": "udp", "passphraseName": "pp", "passphraseKey": "k"}, {"spec": "only meaningful with protocol srt"}),
    ({"name": "cam", "port": "80"}, {"spec.port": "greater than or equal to 1024"}),
    ({"name": "cam", "protocol": "hls"}, {"spec.protocol": "'udp', 'srt', 'rtmp' or 'rtsp'"}),
    ({"name": "cam", "maxOutputs": "0"}, {"spec.maxOutputs": "greater than or equal to 1"}),
]


@pytest.mark.parametrize(("form", "want"), INPUT_FORMS)
def test_input_form(form, want):
    _judged(forms.input_form(form, "live"), want)


def test_input_form_manifest_names_secrets_only():
    got = forms.input_form({"name": "cam", "protocol": "rtmp", **PUBLISH, "allowedSources": "203.0.113.0/24\n10.0.0.0/8"}, "live")
    assert got.manifest is not None and got.manifest["spec"] == {
        "protocol": "rtmp", "publishSecretRef": {"name": "cam-publish", "key": "credential"},
        "allowedSources": ["203.0.113.0/24", "10.0.0.0/8"],
    }


STRIP = [
    ('Invalid value: "rtmp://x/app/k3y": url scheme must be one of srt://', "url scheme must be one of srt://"),
    ('Invalid value: "a\\"b: c": rule', "rule"),
    ("Invalid value: 0: spec.reconnect.delaySeconds in body should be greater than or equal to 1",
     "spec.reconnect.delaySeconds in body should be greater than or equal to 1"),
    ('Invalid value: "object": exactly one of spec.url and spec.urlFrom must be set', "exactly one of spec.url and spec.urlFrom must be set"),
    ('Unsupported value: "hls": supported values: "udp", "srt"', 'unsupported value; supported values: "udp", "srt"'),
    ("Required value", "Required value"),
    ("Too long: may not be more than 2048 bytes", "Too long: may not be more than 2048 bytes"),
]


@pytest.mark.parametrize(("message", "want"), STRIP)
def test_strip_value(message, want):
    assert forms.strip_value(message) == want


def test_api_errors_keep_causes_by_field_without_values():
    exc = ApiError(422, {
        "message": f'StreamOutput "yt" is invalid: spec.url: Invalid value: "rtmp://{CANARY}": url must not contain spaces',
        "details": {"causes": [
            {"field": "spec.url", "message": f'Invalid value: "rtmp://{CANARY} x": url must not contain spaces'},
            {"field": "<nil>", "message": 'Invalid value: "object": name must be at most 54 characters'},
        ]},
    })
    got = forms.api_errors(exc)
    assert got == {"spec.url": "url must not contain spaces", "": "name must be at most 54 characters"}


def test_api_errors_forbidden_keeps_rbac_words():
    msg = 'streamoutputs.streamdist.io is forbidden: User "system:serviceaccount:live:viewer" cannot create resource'
    assert forms.api_errors(ApiError(403, {"message": msg})) == {"": msg}
    assert "exists already" in forms.api_errors(ApiError(409, {"message": f"{CANARY} exists"}))[""]


# --- the page itself: everything from its own origin ----------------------------------------


@pytest.mark.parametrize("name", ["index.html", "app.js", "theme.js", "app.css"])
def test_page_loads_nothing_from_elsewhere(name):
    text = server.page() if name == "index.html" else (STATIC / name).read_text()
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", text), "a page asset points outside the page's origin"
    assert not re.search(r"url\(\s*[\"']?(https?:)?//", text) and "@import" not in text
    assert "fetch(\"http" not in text and "new EventSource(\"http" not in text


def test_vendor_css_is_bootstrap_and_imports_nothing():
    css = STATIC / "vendor" / "bootstrap.min.css"
    assert css.is_file(), "run hack/build-ui.sh (make venv does)"
    text = css.read_text()
    assert "Bootstrap" in text[:300] and "@import" not in text
    assert not re.search(r"url\(\s*[\"']?(https?:)?//", text)
