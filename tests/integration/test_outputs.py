"""StreamOutput lifecycle on a real apiserver (KWOK plays the kubelet)."""

import time

from streamdist_dev.kubectl import Kubectl

CANARY = "CANARYstreamkey0042"


def _output_yaml(name, input_name="studio-udp", url=None, extra=""):
    url = url or f"udp://{name}.playout.example:5000"  # one destination each: two would be DuplicateDestination
    return (f"apiVersion: streamdist.io/v1alpha1\nkind: StreamOutput\nmetadata:\n  name: {name}\n"
            f"spec:\n  input: {input_name}\n  url: '{url}'\n{extra}")


def _pods(k: Kubectl, output: str | None = None):
    sel = f"streamdist.io/output={output}" if output else "streamdist.io/output"
    return [p for p in k.items("pods", sel) if not p["metadata"].get("deletionTimestamp")]


def _phase(k: Kubectl, name: str):
    return k.status("so", name).get("phase")


def test_each_output_form_gets_one_pod(k: Kubectl):
    k.apply_file("examples/inputs/udp.yaml", "examples/outputs/")
    names = ["studio-decoder", "pickup-listener", "wowza-rtmp", "youtube", "playout-udp", "monitor-rtsp"]
    for name in names:
        k.wait(f"{name} streaming", lambda n=name: _phase(k, n) == "Streaming", timeout=40)
    for name in names:
        pods = _pods(k, name)
        assert len(pods) == 1, name
        assert k.status("so", name)["pod"] == pods[0]["metadata"]["name"]
        ref = pods[0]["metadata"]["ownerReferences"][0]
        assert (ref["kind"], ref["name"]) == ("StreamOutput", name)
    status = k.status("so", "youtube")
    assert status["destination"] == "rtmps://a.rtmp.youtube.com:443/live2/***"
    assert status["protocol"] == "rtmps"
    listener = k.status("so", "pickup-listener")
    assert listener["endpoint"] == f"srt://pickup-listener.{k.ns}.svc:9100"
    svc = k.get("service", "pickup-listener")
    assert svc["spec"]["ports"][0]["protocol"] == "UDP" and svc["spec"]["ports"][0]["port"] == 9100
    assert {c["type"] for c in status["conditions"]} == {"Ready", "InputReady"}


def test_deleting_one_output_leaves_the_others_alone(k: Kubectl):
    k.apply_file("examples/inputs/udp.yaml")
    k("apply", "-f", "-", input="---\n".join(_output_yaml(f"o{i}") for i in range(3)))
    k.wait("3 pods", lambda: len(_pods(k)) == 3)
    before = {p["metadata"]["labels"]["streamdist.io/output"]: p["metadata"]["uid"] for p in _pods(k)}
    k("delete", "so", "o1")
    k.wait("o1 pod gone", lambda: not k.items("pods", "streamdist.io/output=o1"), timeout=40)
    after = {p["metadata"]["labels"]["streamdist.io/output"]: p["metadata"]["uid"] for p in _pods(k)}
    assert after == {"o0": before["o0"], "o2": before["o2"]}


def test_suspend_removes_pod_and_resume_brings_it_back(k: Kubectl):
    k.apply_file("examples/inputs/udp.yaml")
    k("apply", "-f", "-", input=_output_yaml("sus"))
    k.wait("pod", lambda: _pods(k, "sus"))
    k("patch", "so", "sus", "--type=merge", "-p", '{"spec":{"suspend":true}}')
    k.wait("Suspended", lambda: _phase(k, "sus") == "Suspended")
    k.wait("no pod", lambda: not k.items("pods", "streamdist.io/output=sus"), timeout=40)
    k("patch", "so", "sus", "--type=merge", "-p", '{"spec":{"suspend":false}}')
    k.wait("Streaming again", lambda: _phase(k, "sus") == "Streaming" and len(_pods(k, "sus")) == 1)


def test_missing_input_is_reported_and_heals(k: Kubectl):
    k("apply", "-f", "-", input=_output_yaml("orphan", input_name="later"))
    cond = k.wait("InputNotFound", lambda: (c := k.condition("so", "orphan", "Ready")) and
                  c["reason"] == "InputNotFound" and c)
    assert "'later'" in cond["message"]
    assert _phase(k, "orphan") == "Failed"
    assert k.wait("event", lambda: [e for e in k.events("orphan") if e["reason"] == "InputNotFound"])
    assert not _pods(k, "orphan")
    k("apply", "-f", "-", input="apiVersion: streamdist.io/v1alpha1\nkind: StreamInput\nmetadata: {name: later}\n"
                               "spec: {protocol: udp}\n")
    k.wait("healed", lambda: _phase(k, "orphan") == "Streaming" and _pods(k, "orphan"), timeout=40)


def test_missing_secret_is_reported_and_heals(k: Kubectl):
    k.apply_file("examples/inputs/udp.yaml")
    k("apply", "-f", "-", input=(
        "apiVersion: streamdist.io/v1alpha1\nkind: StreamOutput\nmetadata: {name: keyed}\n"
        "spec: {input: studio-udp, urlFrom: {secretKeyRef: {name: stream-key, key: url}}}\n"))
    k.wait("SecretNotFound", lambda: (c := k.condition("so", "keyed", "Ready")) and c["reason"] == "SecretNotFound")
    assert k.wait("event", lambda: [e for e in k.events("keyed") if e["reason"] == "SecretNotFound"])
    assert not _pods(k, "keyed")
    k("create", "secret", "generic", "stream-key", f"--from-literal=url=rtmp://live.example/app/{CANARY}")
    # a Secret that has not opted in is not used, until it carries its label
    k.wait("SecretNotAllowed", lambda: (c := k.condition("so", "keyed", "Ready")) and c["reason"] == "SecretNotAllowed")
    assert not _pods(k, "keyed")
    k("label", "secret", "stream-key", "streamdist.io/secret-usage=destination")
    k.wait("healed", lambda: _phase(k, "keyed") == "Streaming", timeout=40)
    status = k.status("so", "keyed")
    assert status["destination"] == "rtmp://live.example/app/***"
    pod = _pods(k, "keyed")[0]
    assert CANARY not in str(pod)
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    assert env["STREAMDIST_DESTINATION"]["valueFrom"]["secretKeyRef"] == {"name": "stream-key", "key": "url"}


def test_destination_that_is_a_router_is_forbidden(k: Kubectl):
    """By the router's ClusterIP and by its ingest Service's FQDN (trailing dot): the
    output gets ForbiddenDestination with an Event of its own, and no pod."""
    k.apply_file("examples/inputs/udp.yaml")
    ip = k.wait("router Service", lambda: (k.get("service", "studio-udp").get("spec") or {}).get("clusterIP"))
    k.wait("router applied", lambda: k.status("si", "studio-udp").get("endpoint"))
    k("apply", "-f", "-", input="---\n".join([
        _output_yaml("by-ip", url=f"rtsp://{ip}:8554/studio-udp"),
        _output_yaml("by-fqdn", url=f"udp://studio-udp-ingest.{k.ns}.svc.cluster.local.:20000"),
        _output_yaml("fine", url="udp://h.example:5000"),
    ]))
    for name in ("by-ip", "by-fqdn"):
        k.wait(f"{name} forbidden", lambda n=name: (c := k.condition("so", n, "Ready")) and c["reason"] == "ForbiddenDestination")
        events = k.wait(f"{name} event", lambda n=name: [e for e in k.events(n) if e["reason"] == "ForbiddenDestination"])
        assert all(e["involvedObject"]["name"] == name for e in events)
        assert not _pods(k, name)
    k.wait("the good output streams", lambda: _phase(k, "fine") == "Streaming")


def test_two_outputs_to_one_destination_the_older_keeps_it(k: Kubectl, operator):
    """The same destination, written two ways (a URL, and a Secret holding it with the
    host's case changed): the newer output fails with DuplicateDestination and an Event;
    an operator restart starts no pod for it; deleting the older lets it run."""
    k.apply_file("examples/inputs/udp.yaml")
    k("apply", "-f", "-", input=_output_yaml("first", url="rtmp://live.example/app/key-1"))
    k.wait("first streams", lambda: _phase(k, "first") == "Streaming")
    k("create", "secret", "generic", "same", "--from-literal=url=rtmp://LIVE.example:1935/app/key-1")
    k("label", "secret", "same", "streamdist.io/secret-usage=destination")
    k("apply", "-f", "-", input=("apiVersion: streamdist.io/v1alpha1\nkind: StreamOutput\nmetadata: {name: second}\n"
                                 "spec: {input: studio-udp, urlFrom: {secretKeyRef: {name: same, key: url}}}\n"))
    k.wait("DuplicateDestination", lambda: (c := k.condition("so", "second", "Ready")) and c["reason"] == "DuplicateDestination")
    assert k.wait("event", lambda: [e for e in k.events("second") if e["reason"] == "DuplicateDestination"])
    operator.kill()
    operator.start()
    time.sleep(8)  # the restarted operator has reconciled both (resync 5 s)
    assert not _pods(k, "second") and _phase(k, "first") == "Streaming"
    k("delete", "so", "first")
    k.wait("second streams", lambda: _phase(k, "second") == "Streaming", timeout=40)


def test_twenty_first_output_is_refused_and_heals(k: Kubectl):
    k("apply", "-f", "-", input=("apiVersion: streamdist.io/v1alpha1\nkind: StreamInput\nmetadata: {name: small}\n"
                                 "spec: {protocol: udp, maxOutputs: 20}\n"))
    k("apply", "-f", "-", input="---\n".join(_output_yaml(f"n{i:02d}", "small") for i in range(20)))
    k.wait("20 pods", lambda: len(_pods(k)) == 20, timeout=60)
    uids = {p["metadata"]["uid"] for p in _pods(k)}
    time.sleep(1)  # the 21st is created strictly later
    k("apply", "-f", "-", input=_output_yaml("n20", "small"))
    cond = k.wait("TooManyOutputs", lambda: (c := k.condition("so", "n20", "Ready")) and c["reason"] == "TooManyOutputs" and c)
    assert "at most 20" in cond["message"]
    assert k.wait("event", lambda: [e for e in k.events("n20") if e["reason"] == "TooManyOutputs"])
    assert not _pods(k, "n20")
    assert {p["metadata"]["uid"] for p in _pods(k)} == uids
    k("delete", "so", "n00")
    k.wait("n20 runs", lambda: _phase(k, "n20") == "Streaming", timeout=40)


def test_operator_killed_mid_burst_converges(k: Kubectl, operator):
    k.apply_file("examples/inputs/udp.yaml")
    k("apply", "-f", "-", input="---\n".join(_output_yaml(f"b{i:02d}") for i in range(20)))
    time.sleep(0.5)
    operator.kill()
    operator.start()
    k.wait("20 streaming", lambda: sum(s.get("status", {}).get("phase") == "Streaming" for s in k.items("so")) == 20,
           timeout=90)
    pods = _pods(k)
    assert len(pods) == 20
    assert len({p["metadata"]["labels"]["streamdist.io/output"] for p in pods}) == 20
    for so in k.items("so"):
        assert so["status"]["pod"] in {p["metadata"]["name"] for p in pods}


def test_printer_columns_and_no_secret_anywhere(k: Kubectl, operator):
    k.apply_file("examples/inputs/udp.yaml")
    k("create", "secret", "generic", "canary", f"--from-literal=url=rtmps://live.example:443/app/{CANARY}")
    k("label", "secret", "canary", "streamdist.io/secret-usage=destination")
    k("apply", "-f", "-", input=("apiVersion: streamdist.io/v1alpha1\nkind: StreamOutput\nmetadata: {name: canary}\n"
                                 "spec: {input: studio-udp, urlFrom: {secretKeyRef: {name: canary, key: url}}}\n"))
    k("apply", "-f", "-", input=_output_yaml("plain", url=f"rtmp://live.example/app/{CANARY}"))
    k.wait("streaming", lambda: _phase(k, "canary") == "Streaming" and _phase(k, "plain") == "Streaming")
    so = k("get", "so").stdout
    header = so.splitlines()[0].split()
    assert header == ["NAME", "INPUT", "PROTOCOL", "DESTINATION", "PHASE", "RECONNECTS", "AGE"]
    assert "rtmps://live.example:443/app/***" in so and "Streaming" in so
    si = k("get", "si").stdout
    assert si.splitlines()[0].split() == ["NAME", "PROTOCOL", "ENDPOINT", "PHASE", "KBPS", "READERS", "AGE"]
    everything = k("get", "streamdist").stdout
    assert "streaminput.streamdist.io/studio-udp" in everything and "streamoutput.streamdist.io/canary" in everything
    wide = k("get", "so", "-o", "wide").stdout + k("get", "streamdist", "-o", "wide").stdout
    assert CANARY not in so + si + everything + wide
    assert CANARY not in k("get", "events", "-o", "yaml").stdout
    assert CANARY not in str(k.status("so", "canary")) + str(k.status("so", "plain"))
    assert CANARY not in operator.logs()
