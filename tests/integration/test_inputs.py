"""StreamInput lifecycle on a real apiserver, as a user sees it with kubectl."""

import concurrent.futures

from streamdist_dev.kubectl import Kubectl

MANAGED = "app.kubernetes.io/managed-by=streamdist"


def _input_yaml(name, port=None, protocol="udp"):
    port_line = f"\n  port: {port}" if port else ""
    return (f"apiVersion: streamdist.io/v1alpha1\nkind: StreamInput\nmetadata:\n  name: {name}\n"
            f"spec:\n  protocol: {protocol}{port_line}\n")


def test_input_gets_children_status_and_conditions(k: Kubectl):
    k.apply_file("examples/inputs/udp.yaml")
    si = k.wait("status.port", lambda: (s := k.get("si", "studio-udp")).get("status", {}).get("port") and s)
    uid = si["metadata"]["uid"]
    status = si["status"]
    assert status["endpoint"] == f"udp://studio-udp-ingest.{k.ns}.svc:{status['port']}"
    kinds = {(o["kind"], o["metadata"]["name"]) for kind in ("configmap", "deployment", "service")
             for o in k.items(kind, MANAGED)}
    assert kinds == {("ConfigMap", "studio-udp-mediamtx"), ("Deployment", "studio-udp-mediamtx"),
                     ("Service", "studio-udp"), ("Service", "studio-udp-ingest")}
    for kind in ("configmap", "deployment", "service"):
        for obj in k.items(kind, MANAGED):
            ref = obj["metadata"]["ownerReferences"][0]
            assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == ("StreamInput", "studio-udp", uid, True)
            assert obj["metadata"]["labels"]["streamdist.io/input"] == "studio-udp"
    # KWOK runs the router pod, so the Deployment becomes available and Ready turns True
    ready = k.wait("Ready=True", lambda: (c := k.condition("si", "studio-udp", "Ready")) and c["status"] == "True" and c)
    assert ready["reason"] == "RouterRunning"
    si = k.get("si", "studio-udp")
    for cond in si["status"]["conditions"]:
        assert set(cond) == {"type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"}
        assert cond["observedGeneration"] == si["metadata"]["generation"]
    assert si["status"]["observedGeneration"] == si["metadata"]["generation"]
    assert si["status"]["phase"] == "Waiting"
    conds = {c["type"]: c for c in si["status"]["conditions"]}
    # the confidence monitor's three (on by default): Unknown, as no monitor answers here
    # (KWOK's router pod is fake and the operator's health poll is off)
    assert set(conds) == {"Ready", "Receiving", "Black", "Frozen", "Silent"}
    for kind in ("Black", "Frozen", "Silent"):
        assert (conds[kind]["status"], conds[kind]["reason"]) == ("Unknown", "MonitorUnavailable"), conds[kind]


def test_ten_inputs_at_once_get_ten_ports(k: Kubectl):
    docs = "---\n".join(_input_yaml(f"multi-{i}") for i in range(10))
    k("apply", "-f", "-", input=docs)

    def ports():
        got = [(s.get("status") or {}).get("port") for s in k.items("si")]
        return got if len(got) == 10 and all(got) else None

    got = k.wait("ten ports", ports)
    assert len(set(got)) == 10


def test_fixed_port_clash_is_reported_on_the_later_input_only(k: Kubectl):
    k("apply", "-f", "-", input=_input_yaml("first", port=24001))
    k.wait("first has its port", lambda: k.status("si", "first").get("port") == 24001)
    k("apply", "-f", "-", input=_input_yaml("second", port=24001))
    cond = k.wait("PortConflict", lambda: (c := k.condition("si", "second", "Ready")) and c["reason"] == "PortConflict" and c)
    assert "first" in cond["message"] and cond["status"] == "False"
    assert k.status("si", "second")["phase"] == "Failed"
    events = k.wait("event", lambda: [e for e in k.events("second") if e["reason"] == "PortConflict"])
    assert events[0]["type"] == "Warning"
    assert k.status("si", "first")["phase"] != "Failed"
    assert not k.items("deployment", "streamdist.io/input=second")
    # heals by itself once the clash is gone
    k("delete", "si", "first")
    k.wait("second healed", lambda: k.status("si", "second").get("port") == 24001 and
           k.status("si", "second")["phase"] != "Failed", timeout=40)


def test_deleting_input_removes_children_by_garbage_collection(k: Kubectl):
    k("apply", "-f", "-", input=_input_yaml("doomed"))
    k.wait("deployment", lambda: k.items("deployment", "streamdist.io/input=doomed"))
    k("delete", "si", "doomed")
    k.wait("children gone", lambda: not any(k.items(kind, "streamdist.io/input=doomed")
                                            for kind in ("deployment", "configmap", "service")), timeout=60)


def test_every_input_protocol_example(k: Kubectl):
    files = ["examples/inputs/udp.yaml", "examples/inputs/srt.yaml", "examples/inputs/rtmp.yaml",
             "examples/inputs/rtsp.yaml"]
    k.apply_file(*files)
    expected = {"studio-udp": "udp://", "field-srt": "srt://", "obs-rtmp": "rtmp://", "camera-rtsp": "rtsp://"}
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        endpoints = dict(zip(expected, pool.map(
            lambda n: k.wait(f"{n} endpoint", lambda: k.status("si", n).get("endpoint")), expected)))
    for name, prefix in expected.items():
        assert endpoints[name].startswith(prefix), endpoints[name]
    assert endpoints["field-srt"].endswith(":20100?streamid=publish:field-srt")
    assert "<node-address>" in endpoints["obs-rtmp"]
    ingest = k.get("service", "obs-rtmp-ingest")
    assert ingest["spec"]["type"] == "NodePort"
    assert f":{ingest['spec']['ports'][0]['nodePort']}/" in endpoints["obs-rtmp"]
