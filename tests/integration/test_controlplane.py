"""The test control plane behaves like a cluster: the scheduler places pods on the
KWOK nodes, KWOK makes them Running, and the garbage collector cascades deletes."""

from __future__ import annotations

import uuid

import pytest

from streamdist_dev.controlplane import DEFAULT_NODES, KWOK_NODE_ANNOTATION

pytestmark = pytest.mark.cluster


def deployment(name: str, namespace: str, replicas: int) -> dict:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                # Never pulled: KWOK only pretends to run containers.
                "spec": {"containers": [{"name": "app", "image": "registry.invalid/streamdist/app:1"}]},
            },
        },
    }


def test_nodes_are_kwok_nodes(control_plane):
    nodes = control_plane.kubectl_json("get", "nodes")["items"]
    key, value = KWOK_NODE_ANNOTATION
    assert sorted(n["metadata"]["name"] for n in nodes) == sorted(DEFAULT_NODES)
    for n in nodes:
        assert n["metadata"]["annotations"][key] == value
        ready = [c for c in n["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True"


def test_deployment_runs_on_kwok_and_is_garbage_collected(control_plane):
    cp = control_plane
    ns = f"cp-test-{uuid.uuid4().hex[:8]}"
    cp.kubectl("create", "namespace", ns)
    try:
        cp.apply(deployment("web", ns, replicas=3))

        def running_pods():
            pods = cp.kubectl_json("get", "pods", "-n", ns, "-l", "app=web")["items"]
            running = [p for p in pods if p["status"].get("phase") == "Running"]
            return pods if len(pods) == 3 and len(running) == 3 else None

        pods = cp.wait_for("3 Running pods of deployment web", running_pods, timeout=60)
        for p in pods:
            assert p["spec"]["nodeName"] in DEFAULT_NODES
            assert p["status"].get("podIP"), p["status"]
            (owner,) = p["metadata"]["ownerReferences"]
            assert owner["kind"] == "ReplicaSet" and owner["controller"] is True

        cp.kubectl("wait", "-n", ns, "--for=condition=Available", "deployment/web", "--timeout=60s")
        (rs,) = cp.kubectl_json("get", "replicasets", "-n", ns)["items"]
        (owner,) = rs["metadata"]["ownerReferences"]
        assert owner["kind"] == "Deployment" and owner["name"] == "web"

        # The ServiceAccount admission plugin and token controller ran: pods carry a
        # projected service-account token volume.
        vols = [v["name"] for v in pods[0]["spec"].get("volumes", [])]
        assert any(v.startswith("kube-api-access-") for v in vols), vols

        cp.kubectl("delete", "deployment", "web", "-n", ns, "--wait=false")

        def all_gone():
            left = cp.kubectl_json("get", "replicasets,pods", "-n", ns)["items"]
            return not left

        cp.wait_for("ReplicaSet and pods of web garbage-collected", all_gone, timeout=60)
    finally:
        cp.kubectl("delete", "namespace", ns, "--wait=false", check=False)
