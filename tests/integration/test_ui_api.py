"""`streamdist ui`'s API on the real control plane, with the operator running: every call
made as the viewer (a ServiceAccount token, as a person signs in with), refused where
RBAC refuses, read-only with the page's own ServiceAccount when nobody signed in, the
watch stream delivering changes, and no stream key, passphrase or Secret value ever in
what the browser gets."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from streamdist import urls
from streamdist.ui import forms
from streamdist.ui.kubeapi import Api, ApiError, load_cluster
from streamdist_dev.controlplane import ControlPlane
from streamdist_dev.ui import (
    API,
    READ_RULES,
    WRITE_RULES,
    EventStream,
    UiProcess,
    apply_all,
    page_kubeconfig,
    service_account,
)
from streamdist_dev.ui import stream_input as _input
from streamdist_dev.ui import stream_output as _output

CANARIES = ("c4n4ry-url-key-1f3e", "c4n4ry-secret-url-9a7b", "c4n4ry-passphrase-5d2c", "c4n4ry-publish-3e8f")
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def page_kc(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory):
    """The page's own identity: a ServiceAccount with exactly the chart's read-only rules."""
    return page_kubeconfig(control_plane, tmp_path_factory.mktemp("ui-page"))


@pytest.fixture(scope="module")
def ui(page_kc, operator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiProcess]:
    with UiProcess(page_kc, tmp_path_factory.mktemp("ui"), "--anonymous-read") as proc:
        yield proc


def _apply(k, *objs: dict[str, Any]) -> None:
    apply_all(k, *objs)


def _secret(name: str, usage: str, **data: str) -> dict[str, Any]:
    """A Secret that opts in to one use by streamdist (the label the operator requires)."""
    meta = {"name": name, "labels": {"streamdist.io/secret-usage": usage}}
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": meta, "stringData": data}


def _names(got: dict[str, Any], kind: str) -> set[str]:
    return {o["name"] for o in got[kind]}


def test_reads_as_the_viewer_or_read_only_as_the_page(k, ui):
    _apply(k, _input("cam"), _output("yt", url=f"rtmp://live.example/app/{CANARIES[0]}"))
    k.wait("yt masked", lambda: k.status("so", "yt").get("destination"))
    viewer = service_account(k, k.ns, "viewer", READ_RULES)
    nobody = service_account(k, k.ns, "nobody", [])

    status, got, _ = ui.request("GET", f"/api/state?namespace={k.ns}", token=viewer)
    assert status == 200, got
    assert _names(got, "StreamInput") == {"cam"} and _names(got, "StreamOutput") == {"yt"}
    (yt,) = got["StreamOutput"]
    assert yt["destination"] == "rtmp://live.example/app/***" and yt["input"] == "cam"

    status, anon, _ = ui.request("GET", f"/api/state?namespace={k.ns}")
    assert status == 200 and _names(anon, "StreamOutput") == {"yt"}, "anonymous reading is on: the page's rights"

    status, refused, _ = ui.request("GET", f"/api/state?namespace={k.ns}", token=nobody)
    assert status == 403
    assert f"system:serviceaccount:{k.ns}:nobody" in refused["message"] and "cannot list" in refused["message"]
    status, refused, _ = ui.request("GET", "/api/state", token=viewer)
    assert status == 403, "the viewer may read one namespace, not the cluster"

    status, who, _ = ui.request("GET", "/api/session", token=viewer)
    assert status == 200 and who["user"] == f"system:serviceaccount:{k.ns}:viewer"


def test_sign_in_keeps_only_a_token_the_api_server_accepts(k, ui):
    viewer = service_account(k, k.ns, "viewer", READ_RULES)
    status, got, _ = ui.request("POST", "/api/session", {"token": "not-a-token"})
    assert status == 401 and got["errors"]["token"] == "the API server did not accept this token"
    assert ui.request("POST", "/api/session", {"token": viewer}, headers={"X-Streamdist": "0"})[0] == 403, (
        "a cross-site form cannot sign anyone in"
    )
    req = urllib.request.Request(ui.url + "/api/session", data=json.dumps({"token": viewer}).encode(), method="POST",
                                 headers={"X-Streamdist": "1", "Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=30) as resp:
        cookie = resp.headers["Set-Cookie"]
        assert json.loads(resp.read())["user"] == f"system:serviceaccount:{k.ns}:viewer"
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    status, got, _ = ui.request("GET", f"/api/state?namespace={k.ns}", headers={"Cookie": cookie.split(";")[0]})
    assert status == 200, "the cookie carries the viewer's token on later calls"


def test_the_pages_own_account_only_reads(control_plane, page_kc):
    """With the chart's rules, the page's ServiceAccount reads the two kinds and Events and
    can do nothing else: no Secret, no write."""
    page = "system:serviceaccount:streamdist-ui:page"

    def can(*args: str) -> bool:
        got = control_plane.kubectl("auth", "can-i", *args, f"--as={page}", "-A", check=False)
        return got.stdout.strip() == "yes"

    for verb in ("get", "list", "watch"):
        assert can(verb, "streaminputs.streamdist.io") and can(verb, "streamoutputs.streamdist.io") and can(verb, "events")
    for verb, what in (("get", "secrets"), ("list", "secrets"), ("create", "streamoutputs.streamdist.io"),
                       ("patch", "streamoutputs.streamdist.io"), ("delete", "streaminputs.streamdist.io"),
                       ("create", "pods"), ("list", "pods"), ("create", "events")):  # fmt: skip
        assert not can(verb, what), f"the page's own account may {verb} {what}"


def test_without_anonymous_reading_nobody_reads_without_a_token(k, page_kc, tmp_path):
    with UiProcess(page_kc, tmp_path) as closed:
        status, got, _ = closed.request("GET", f"/api/state?namespace={k.ns}")
        assert status == 401 and "sign in" in got["message"]
        with EventStream(closed, k.ns) as stream:
            assert stream.status == 401


def test_a_viewer_is_never_served_with_the_pages_certificate(k, control_plane, tmp_path):
    """Even a page run with an admin client certificate makes a viewer's calls as the viewer."""
    nobody = service_account(k, k.ns, "nobody", [])
    with UiProcess(control_plane.kubeconfig, tmp_path, "--anonymous-read") as admin_page:
        status, _, _ = admin_page.request("GET", f"/api/state?namespace={k.ns}", token=nobody)
        assert status == 403
        status, _, _ = admin_page.request("GET", f"/api/state?namespace={k.ns}")
        assert status == 200


def test_writes_are_made_as_the_viewer_and_refused_without_rights(k, ui):
    _apply(k, _input("cam"))
    editor = service_account(k, k.ns, "editor", WRITE_RULES)
    reader = service_account(k, k.ns, "reader", READ_RULES)
    url = f"rtmp://live.example/app/{CANARIES[0]}"
    form = {"name": "yt", "input": "cam", "protocol": "rtmp", "url": url, "delaySeconds": "3", "maxDelaySeconds": "20"}
    path = f"/api/namespaces/{k.ns}/streamoutputs"

    status, got, _ = ui.request("POST", path, form, token=reader)
    assert status == 403 and 'cannot create resource "streamoutputs"' in got["message"], got
    assert not k.items("so"), "a refused create created nothing"
    assert ui.request("POST", path, form)[0] == 401, "no token: nothing changes"
    assert ui.request("POST", path, form, token=editor, headers={"X-Streamdist": "0"})[0] == 403

    status, got, raw = ui.request("POST", path, form, token=editor)
    assert status == 201, got
    assert CANARIES[0].encode() not in raw, "the created object comes back without its URL"
    stored = k.get("so", "yt")
    assert stored["spec"]["url"] == url and stored["spec"]["reconnect"] == {"delaySeconds": 3, "maxDelaySeconds": 20}
    managed = json.loads(k("get", "so", "yt", "-o", "json", "--show-managed-fields").stdout)["metadata"]["managedFields"]
    (mine,) = [m for m in managed if m["manager"] == "streamdist-ui"]
    assert "f:url" in mine["fieldsV1"]["f:spec"], "the spec was written by the page (as the viewer)"
    k.wait("yt Streaming", lambda: k.status("so", "yt").get("phase") == "Streaming", timeout=40)

    assert ui.request("PATCH", f"{path}/yt", {"suspend": True}, token=reader)[0] == 403
    status, got, _ = ui.request("PATCH", f"{path}/yt", {"suspend": True}, token=editor)
    assert status == 200 and got["suspend"] is True
    k.wait("yt Suspended", lambda: k.status("so", "yt").get("phase") == "Suspended")

    assert ui.request("DELETE", f"{path}/yt", token=reader)[0] == 403
    assert ui.request("DELETE", f"{path}/yt", token=editor)[0] == 200
    k.wait("yt gone", lambda: not k.items("so"))

    form = {"name": "cam2", "protocol": "srt", "publishName": "cam2-publish", "publishKey": "credential"}
    status, got, _ = ui.request("POST", f"/api/namespaces/{k.ns}/streaminputs", form, token=editor)
    assert status == 201 and got["protocol"] == "srt"
    assert got["publishSecret"] == {"name": "cam2-publish", "key": "credential"}, "a Secret is named, never read"
    assert k.get("si", "cam2")["spec"]["publishSecretRef"] == {"name": "cam2-publish", "key": "credential"}


def test_form_errors_are_the_operators_and_the_crds(k, ui, control_plane):
    _apply(k, _input("cam"))
    editor = service_account(k, k.ns, "editor", WRITE_RULES)
    path = f"/api/namespaces/{k.ns}/streamoutputs"
    bad = f"srt://recv.example:9000?mode=caller&localport=1&x={CANARIES[0]}"
    status, got, raw = ui.request("POST", path, {"name": "o1", "input": "cam", "url": bad}, token=editor)
    assert status == 422
    with pytest.raises(urls.URLError) as operator_says:
        urls.parse(bad)
    assert got["errors"] == {"spec.url": str(operator_says.value)} and CANARIES[0].encode() not in raw
    ok = {"name": "o1", "input": "cam", "url": "udp://recv.example:5000"}
    assert ui.request("POST", path, ok, token=editor)[0] == 201
    status, got, _ = ui.request("POST", path, ok, token=editor)
    assert status == 422 and "exists already" in got["message"]

    # What only the API server (the CRD's CEL rules) says, as the page turns it into field errors.
    exc = asyncio.run(_create_as_admin(control_plane, k.ns, _output("o2", url=f"http://x.example/{CANARIES[0]}")))
    errors = forms.api_errors(exc)
    assert errors == {"spec.url": "url scheme must be one of srt://, rtmp://, rtmps://, udp://, rtsp://"}, errors


async def _create_as_admin(cp: ControlPlane, ns: str, obj: dict[str, Any]) -> ApiError:
    api = Api(load_cluster(str(cp.kubeconfig)))
    await api.start()
    try:
        await api.as_page().call("POST", f"/apis/{API}/namespaces/{ns}/streamoutputs", obj)
    except ApiError as exc:
        return exc
    finally:
        await api.close()
    raise AssertionError("the API server accepted an invalid output")


def test_the_stream_delivers_each_change(k, ui):
    _apply(k, _input("cam"))
    viewer = service_account(k, k.ns, "viewer", READ_RULES)
    with EventStream(ui, k.ns, viewer) as stream:
        assert stream.status == 200
        synced = {stream.until("SYNC", lambda m: m["type"] == "SYNC")["kind"] for _ in range(3)}
        assert synced == {"StreamInput", "StreamOutput", "Event"}
        t0 = time.monotonic()
        _apply(k, _output("live1", url="udp://recv.example:5000"))
        added = stream.until("ADDED live1", lambda m: m["type"] == "ADDED" and m["object"]["name"] == "live1")
        took = time.monotonic() - t0
        assert added["kind"] == "StreamOutput" and "url" not in added["object"]
        print(f"[ui] stream: ADDED {took * 1000:.0f} ms after kubectl apply returned")
        stream.until("Streaming", lambda m: m["type"] == "MODIFIED" and m["object"].get("phase") == "Streaming", 40)
        stream.until("an Event about live1", lambda m: m["kind"] == "Event" and m["object"]["object"]["name"] == "live1")
        k("patch", "so", "live1", "--type=merge", "-p", '{"spec":{"suspend":true}}')
        stream.until("Suspended", lambda m: m["type"] == "MODIFIED" and m["object"].get("phase") == "Suspended")
        k("delete", "so", "live1")
        stream.until("DELETED", lambda m: m["type"] == "DELETED" and m["object"]["name"] == "live1")


def test_the_stream_says_what_rbac_refused(k, ui):
    nobody = service_account(k, k.ns, "nobody", [])
    with EventStream(ui, k.ns, nobody) as stream:
        refused = [stream.until("ERROR", lambda m: m["type"] == "ERROR") for _ in range(3)]
        assert {m["kind"] for m in refused} == {"StreamInput", "StreamOutput", "Event"}
        assert all(m["status"] == 403 and "cannot list" in m["message"] for m in refused)


def test_no_secret_reaches_the_browser(k, ui):
    """Canaries in a URL, a destination Secret, a passphrase Secret and a publish credential
    Secret: the operator uses all four, and a viewer who may read everything in the
    namespace (Secrets too) still gets none of them through the page: not in reads,
    writes' answers, the stream or the page."""
    _apply(
        k,
        _secret("dest", "destination", url=f"rtmps://live.example/app/{CANARIES[1]}"),
        _secret("pp", "passphrase", passphrase=CANARIES[2]),
        _secret("pub", "publish", credential=f"encoder:{CANARIES[3]}"),
        _input("cam", protocol="srt", passphraseSecretRef={"name": "pp", "key": "passphrase"},
               publishSecretRef={"name": "pub", "key": "credential"}),
        _output("plain", url=f"rtmp://live.example/app/{CANARIES[0]}"),
        _output("keyed", urlFrom={"secretKeyRef": {"name": "dest", "key": "url"}}),
    )  # fmt: skip
    for name in ("plain", "keyed"):
        k.wait(f"{name} Streaming", lambda n=name: k.status("so", n).get("phase") == "Streaming", timeout=40)
    assert CANARIES[0] in k("get", "so", "plain", "-o", "yaml").stdout, "the canary is there to leak"
    everything = service_account(k, k.ns, "admin", [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}])
    seen = bytearray()
    for token in (everything, None):
        for path in ("/", "/static/app.js", "/static/theme.js", "/static/app.css", "/api/session",
                     f"/api/state?namespace={k.ns}"):  # fmt: skip
            status, _, raw = ui.request("GET", path, token=token)
            assert status == 200, path
            seen += raw
        with EventStream(ui, k.ns, token) as stream:
            for _ in range(3):
                stream.until("SYNC", lambda m: m["type"] == "SYNC")
            k("annotate", "--overwrite", "so", "plain", f"touched={time.monotonic_ns()}")
            stream.until("MODIFIED plain", lambda m: m["type"] == "MODIFIED" and m["object"]["name"] == "plain")
            seen += stream.raw
    status, _, raw = ui.request("PATCH", f"/api/namespaces/{k.ns}/streamoutputs/plain", {"suspend": False}, token=everything)
    assert status == 200
    seen += raw
    assert b"rtmps://live.example/app/***" in seen, "the masked destination is what is shown"
    for canary in CANARIES:
        assert canary.encode() not in seen, f"{canary} reached the browser"
