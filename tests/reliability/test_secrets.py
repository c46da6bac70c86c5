"""A canary stream key and SRT passphrase used throughout a run; afterwards a scan of
every place a secret could leak to finds neither: operator logs, Events, every
resource (status included) of the namespace, printer columns, `kubectl describe`, pod
specs (env only through secretKeyRef), MediaMTX config (ConfigMaps) and /metrics.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.request
from urllib.parse import quote

import pytest

from streamdist_dev.kubectl import Kubectl
from tests.reliability.support import pods, poll, publisher, secret, si, so, text, url_from

pytestmark = pytest.mark.timeout(600)

CANARY_KEY = "CanaryStreamKey7f3a9c0d"
CANARY_PASS = "CanaryPassphrase41d9e2b6"  # SRT passphrases are 10 to 79 characters
CANARIES = (CANARY_KEY, CANARY_PASS)


def forms(canary: str) -> list[str]:
    """The canary as it could be written: plain, percent-encoded, and in base64 at each
    of the three byte alignments (the stable middle of each encoding)."""
    out = [canary, quote(canary, safe="")]
    for pad in range(3):
        enc = base64.b64encode(b"\0" * pad + canary.encode()).decode()
        out.append(enc[4 if pad else 0 : -4])
    return out


def leaks(body: str) -> list[str]:
    return [f for c in CANARIES for f in forms(c) if f in body]


def test_scanner_finds_what_it_looks_for():
    assert leaks(f"x {CANARY_KEY} y") and leaks(quote(f"a/{CANARY_PASS}", safe=""))
    for pad in range(3):
        assert leaks(base64.b64encode(b"z" * pad + CANARY_PASS.encode() + b"tail").decode())
    assert not leaks("rtmps://a.rtmp.youtube.com:443/live2/***")


def _fake_ffmpeg_failure(k: Kubectl, pod: str, said: str) -> None:
    """What the kubelet reports after FFmpeg died with `said` as its last words (KWOK
    plays the kubelet; the termination message is FFmpeg's stderr, which names the URL)."""
    patch = [
        {"op": "replace", "path": "/status/containerStatuses/0/restartCount", "value": 1},
        {"op": "replace", "path": "/status/containerStatuses/0/lastState", "value": {"terminated": {
            "exitCode": 1, "reason": "Error", "message": said,
            "startedAt": "2026-01-01T00:00:00Z", "finishedAt": "2026-01-01T00:00:05Z"}}},
    ]
    k("patch", "pod", pod, "--subresource=status", "--type=json", "-p", json.dumps(patch))


def _without_termination_messages(pod: dict) -> dict:
    """A pod's status minus lastState.terminated.message: the kubelet copies FFmpeg's
    stderr there verbatim (FallbackToLogsOnError), and FFmpeg names its URL, key and all.
    The operator reads it only to mask it into status.lastError."""
    status = json.loads(json.dumps(pod.get("status") or {}))
    for cs in status.get("containerStatuses") or []:
        for state in ("state", "lastState"):
            (cs.get(state) or {}).get("terminated", {}).pop("message", None)
    return status


def test_canary_appears_nowhere(rk: Kubectl, operator, control_plane):
    k = rk
    yt = f"rtmps://a.rtmp.youtube.com:443/live2/{CANARY_KEY}"
    k("apply", "-f", "-", input=text(
        secret("srt-pass", passphrase=CANARY_PASS),
        secret("yt", url=yt),
        secret("srt-dest", url=f"srt://dec.example:9000?passphrase={CANARY_PASS}&streamid={CANARY_KEY}&latency=200"),
        secret("rtmp-auth", url=f"rtmp://encoder:{CANARY_PASS}@live.example/app/{CANARY_KEY}?token={CANARY_KEY}"),
        secret("listener", url=f"srt://:9100?mode=listener&passphrase={CANARY_PASS}"),
        publisher("cam-srt", f"encoder:{CANARY_PASS}"),
        si("cam-srt", protocol="srt", passphraseSecretRef={"name": "srt-pass", "key": "passphrase"}),
        si("cam-udp", protocol="udp"),
        so("yt", input="cam-srt", urlFrom=url_from("yt")),
        so("srt-out", input="cam-srt", urlFrom=url_from("srt-dest")),
        so("auth-out", input="cam-udp", urlFrom=url_from("rtmp-auth")),
        so("listen-out", input="cam-udp", urlFrom=url_from("listener"), service={"type": "NodePort"}),
    ))
    names = ("yt", "srt-out", "auth-out", "listen-out")
    poll("outputs streaming", lambda: all(k.status("so", n).get("phase") == "Streaming" for n in names), timeout=60)

    # FFmpeg fails once and names its destination, key and all, in its last words.
    (pod,) = pods(k, "streamdist.io/output=yt")
    _fake_ffmpeg_failure(k, pod["metadata"]["name"], f"[tls @ 0x5581] error\n{yt}: Input/output error")
    err = poll("lastError from FFmpeg's message", lambda: k.status("so", "yt").get("lastError"))
    assert err == "rtmps://a.rtmp.youtube.com:443/live2/***: Input/output error"
    poll("reconnect counted", lambda: k.status("so", "yt").get("reconnects") == 1)

    # Suspend and resume one, and crash the operator mid-run: every path writes again.
    k("patch", "so", "srt-out", "--type=merge", "-p", '{"spec":{"suspend":true}}')
    poll("suspended", lambda: k.status("so", "srt-out").get("phase") == "Suspended")
    operator.kill()
    operator.start()
    k("patch", "so", "srt-out", "--type=merge", "-p", '{"spec":{"suspend":false}}')
    poll("resumed", lambda: k.status("so", "srt-out").get("phase") == "Streaming", timeout=60)
    # An output whose Secret is missing at first, then created.
    k("apply", "-f", "-", input=text(so("late", input="cam-udp", urlFrom=url_from("late"))))
    poll("SecretNotFound", lambda: (k.condition("so", "late", "Ready") or {}).get("reason") == "SecretNotFound")
    k("apply", "-f", "-", input=text(secret("late", url=f"rtmp://live.example/app/{CANARY_KEY}")))
    poll("late streams", lambda: k.status("so", "late").get("phase") == "Streaming", timeout=30)

    # Sanity: the canaries are really in use (the Secrets hold them).
    secrets = k("get", "secrets", "-o", "json").stdout
    assert leaks(secrets), "the scan must be able to see the canaries where they belong"

    places: dict[str, str] = {
        "operator log": operator.logs(),
        "events": control_plane.kubectl("get", "events", "-A", "-o", "json").stdout,
        "streamdist objects (spec and status), all namespaces":
            control_plane.kubectl("get", "streaminputs,streamoutputs", "-A", "-o", "json").stdout,
        "children (services, configmaps, deployments, replicasets, endpointslices)":
            k("get", "services,configmaps,deployments,replicasets,endpointslices", "-o", "json").stdout,
        "pods (metadata and spec)": json.dumps([{**p, "status": None} for p in k.items("pods")]),
        "pods (status, but FFmpeg's own termination message)": json.dumps([_without_termination_messages(p)
                                                                          for p in k.items("pods")]),
        "printer columns": "\n".join(
            k(*args).stdout for args in (("get", "streamdist", "-o", "wide"), ("get", "so"), ("get", "si"),
                                         ("get", "so", "-o", "wide"), ("get", "si", "-o", "wide"))),
        "kubectl describe": k("describe", "streaminputs,streamoutputs").stdout,
        "MediaMTX config": json.dumps([cm["data"] for cm in k.items("configmaps", "app.kubernetes.io/name=mediamtx")]),
    }
    with urllib.request.urlopen(f"http://127.0.0.1:{operator.metrics_port}/metrics", timeout=10) as resp:
        places["metrics"] = resp.read().decode()
    assert 'streamdist_output_phase{' in places["metrics"] and 'output="yt"' in places["metrics"]
    assert len(k.items("configmaps", "app.kubernetes.io/name=mediamtx")) == 2
    found = {place: leaks(body) for place, body in places.items() if leaks(body)}
    assert not found, f"canary leaked: {found}"

    # Pod specs: the key reaches FFmpeg and MediaMTX only as env from a secretKeyRef; the
    # plain values are the masked destination the FFmpeg image's entrypoint shows instead,
    # and the address of the router it waits for.
    for p in pods(k, "app.kubernetes.io/managed-by=streamdist"):
        for c in p["spec"]["containers"]:
            for env in c.get("env") or []:
                if env["name"] == "STREAMDIST_MASKED_DESTINATION":
                    assert "***" in env["value"] and not leaks(env["value"]), env
                    continue
                if env["name"] == "STREAMDIST_INPUT_ADDRESS":
                    assert env["value"].endswith(".svc:8554"), env
                    continue
                if env["name"] == "STREAMDIST_TELEMETRY_LISTEN":  # where the pod serves its metrics
                    assert re.fullmatch(r"0\.0\.0\.0:\d+", env["value"]), env
                    continue
                assert "value" not in env and set(env["valueFrom"]) == {"secretKeyRef"}, env
            if c["name"] == "ffmpeg":
                assert c["args"][-1] == "$(STREAMDIST_DESTINATION)" and c["args"].count("$(STREAMDIST_DESTINATION)") == 1
    router = k.get("deployment", "cam-srt-mediamtx")["spec"]["template"]["spec"]["containers"][0]
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in router["env"]} == {"cam-srt-credentials"}


FB_TOKEN = "AbwCanaryFbSignature93kq"


def test_rtmp_query_that_is_part_of_the_key_is_masked(rk: Kubectl):
    """Facebook Live hands out a stream key with a query string whose `a=` value is the
    signature; RTMP servers take the query as part of the stream name. Its value must be
    masked like the path's key, whatever the parameter is called."""
    k = rk
    url = f"rtmps://live-api-s.facebook.com:443/rtmp/FB-1234567890-0-Ab?s_bl=1&s_psm=1&s_sc=1234567890&s_sw=0&a={FB_TOKEN}"
    k("apply", "-f", "-", input=text(secret("fb", url=url), si("cam"), so("fb", input="cam", urlFrom=url_from("fb"))))
    poll("streaming", lambda: k.status("so", "fb").get("phase") == "Streaming")
    shown = json.dumps(k.status("so", "fb")) + k("get", "so", "-o", "wide").stdout
    assert FB_TOKEN not in shown, (
        "part of a Facebook stream key reached status.destination and the printer column: "
        f"{k.status('so', 'fb').get('destination')} (urls.mask keeps RTMP query values unless the "
        "parameter's name looks secret; for rtmp/rtmps the whole query belongs to the stream key)"
    )


NOT_OPTED = "CanaryNotOptedIn5b2e81"


def test_a_secret_that_did_not_opt_in_is_never_used(rk: Kubectl, operator, control_plane):
    """Secrets without the label streamdist.io/secret-usage (or with the label of another
    use) named by an output and by inputs: each resource says SecretNotAllowed with an
    Event of its own; the value reaches no pod, router, status, Event or log, and no pod
    or router even names the Secret."""
    k = rk
    k("apply", "-f", "-", input=text(
        secret("plain", usage="", url=f"rtmp://live.example/app/{NOT_OPTED}", passphrase=f"pp-{NOT_OPTED}",
               credential=f"enc:{NOT_OPTED}"),
        secret("for-publish", usage="publish", url=f"rtmp://live.example/app/{NOT_OPTED}"),
        publisher("cam-pp"),
        si("cam-pub", protocol="rtmp", publishSecretRef={"name": "plain", "key": "credential"}),
        si("cam-pp", protocol="srt", passphraseSecretRef={"name": "plain", "key": "passphrase"}),
        si("cam"),
        so("by-url", input="cam", urlFrom=url_from("plain")),
        so("wrong-use", input="cam", urlFrom=url_from("for-publish")),
        so("fine", input="cam", url="udp://h.example:5000"),
    ))
    refused = {("si", "cam-pub"), ("si", "cam-pp"), ("so", "by-url"), ("so", "wrong-use")}
    for kind, name in refused:
        poll(f"{kind}/{name} SecretNotAllowed",
             lambda kind=kind, name=name: (k.condition(kind, name, "Ready") or {}).get("reason") == "SecretNotAllowed")
        events = poll(f"{kind}/{name} Event", lambda name=name: [e for e in k.events(name)
                                                                   if e["reason"] == "SecretNotAllowed"])
        assert all(e["involvedObject"]["name"] == name for e in events)
    poll("the good output streams", lambda: k.status("so", "fine").get("phase") == "Streaming")
    assert not pods(k, "streamdist.io/output in (by-url,wrong-use)")
    assert not k.items("deployments", "streamdist.io/input in (cam-pub,cam-pp)")
    workloads = k("get", "pods,deployments,configmaps,secrets", "-l", "app.kubernetes.io/managed-by=streamdist",
                  "-o", "json").stdout
    assert '"plain"' not in workloads and '"for-publish"' not in workloads, "a pod or router names the Secret"
    seen = "\n".join([workloads, operator.logs(), control_plane.kubectl("get", "events", "-A", "-o", "json").stdout,
                      k("get", "streaminputs,streamoutputs", "-o", "json").stdout])
    assert NOT_OPTED not in seen and leaks(seen) == []
