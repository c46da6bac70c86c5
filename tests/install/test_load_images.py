"""How `STREAMDIST_CLUSTER=current make demo` puts the locally built images where the
current cluster takes them (dev/streamdist_dev/load_images.py): the decision, table-tested.
The push to a real registry, and the load into a real kind cluster, are in tests/e2e."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamdist_dev.load_images import LoadPlan, commands, plan, references

IMAGES = {
    "operator": "localhost/streamdist/operator:0.1.0",
    "ffmpeg": "localhost/streamdist/ffmpeg:0.1.0",
    "mediamtx": "localhost/streamdist/mediamtx:1.20.1",
}
ARCHIVES = {k: Path(f"/cache/{k}.tar") for k in IMAGES}


def _node(provider: str = "", **labels: str) -> dict:
    return {"metadata": {"name": "n", "labels": labels}, "spec": {"providerID": provider} if provider else {}}


@pytest.mark.parametrize(
    ("context", "nodes", "registry", "how", "cluster"),
    [
        ("kind-streamdist", [_node("kind://docker/streamdist/streamdist-control-plane")], "", "kind", "streamdist"),
        # a renamed context: the node's providerID still names the kind cluster
        ("my-laptop", [_node("kind://podman/dev/dev-control-plane")], "", "kind", "dev"),
        ("kind-x", [], "", "kind", "x"),
        ("k3d-demo", [_node("k3s://k3d-demo-server-0")], "", "k3d", "demo"),
        ("minikube", [_node(**{"minikube.k8s.io/name": "minikube"})], "", "minikube", "minikube"),
        ("work", [_node(**{"minikube.k8s.io/name": "p2"})], "", "minikube", "p2"),
        # REGISTRY wins over everything: the user said where the cluster pulls from
        ("kind-streamdist", [_node("kind://docker/streamdist/x")], "reg.example:5000/sd/", "registry", ""),
        ("gke_prod", [_node("gce://p/z/n")], "", "", ""),
    ],
)
def test_plan(context, nodes, registry, how, cluster):
    p = plan(context, nodes, registry)
    assert (p.how, p.cluster) == (how, cluster)
    assert p.why


def test_an_unknown_cluster_without_registry_says_what_to_set():
    p = plan("gke_prod", [_node("gce://p/z/n")])
    assert "REGISTRY=" in p.why
    with pytest.raises(ValueError, match="REGISTRY="):
        commands(p, ARCHIVES, IMAGES, {})


def test_references_are_the_local_names_unless_pushed():
    assert references(LoadPlan("kind", cluster="k"), IMAGES) == IMAGES
    pushed = references(plan("any", [], "reg.example:5000/sd/"), IMAGES)
    assert pushed == {
        "operator": "reg.example:5000/sd/operator:0.1.0",
        "ffmpeg": "reg.example:5000/sd/ffmpeg:0.1.0",
        "mediamtx": "reg.example:5000/sd/mediamtx:1.20.1",
    }


def test_commands_per_cluster():
    tools = {"kind": "/c/kind", "skopeo": "skopeo"}
    kind = commands(LoadPlan("kind", cluster="sd"), ARCHIVES, IMAGES, tools)
    assert kind[0] == ["/c/kind", "load", "image-archive", "/cache/ffmpeg.tar", "--name", "sd"]
    assert len(kind) == 3
    (k3d,) = commands(LoadPlan("k3d", cluster="demo"), ARCHIVES, IMAGES, {})
    assert k3d[:3] == ["k3d", "image", "import"] and k3d[-2:] == ["--cluster", "demo"] and len(k3d) == 8
    mk = commands(LoadPlan("minikube", cluster="p2"), ARCHIVES, IMAGES, {})
    assert mk[2] == ["minikube", "image", "load", "/cache/operator.tar", "--profile", "p2"]
    reg = commands(plan("x", [], "127.0.0.1:5000/sd", insecure=True), ARCHIVES, IMAGES, tools)
    assert reg[1] == ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "oci-archive:/cache/mediamtx.tar",
                      "docker://127.0.0.1:5000/sd/mediamtx:1.20.1"]
