"""Streaming on a kind cluster, through pytest-kind: the way a person with Docker tries it.

Debian's Docker daemon (started for this module only: dev/streamdist_dev/kind.py), kind
built from the Go module proxy at its pinned version, and a kind node image built here
(hack/build-images.sh kind-node). The images reach the cluster the way
``STREAMDIST_CLUSTER=current make demo`` puts them there (``kind load image-archive``,
dev/streamdist_dev/load_images.py), the chart installs the two operator replicas, and the
demo set (examples/demo: a UDP input, SRT listener, RTMP and UDP outputs) streams
from a test pattern on this host to receivers on this host (at the kind network's
gateway; the input and the SRT listener through NodePorts): video decoded at each.

This module runs before tests/e2e/test_node_streaming.py (files in name order) and
tears its cluster and daemon down first: the local node never runs beside it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamdist_dev.load_images import load, plan
from streamdist_dev.media import ffprobe_streams, record
from streamdist_dev.node import IMAGES, build_images, demo_settled, start_demo_receivers, start_demo_source
from streamdist_dev.operator_pods import OperatorPods

pytestmark = [pytest.mark.timeout(2400)]

CLUSTER = "streamdist-e2e"
DEMO_NS = "streamdist-demo"  # examples/demo/outputs.yaml sends to receiver.streamdist-demo.svc
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def kind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, dict[str, Path]]]:
    from streamdist_dev.kind import DockerDaemon, KindKube, docker_supported, kind_cluster, load_node_image

    why = docker_supported()
    if why and os.environ.get("STREAMDIST_REQUIRE_NODE") == "1":
        pytest.fail(f"kind must run here (STREAMDIST_REQUIRE_NODE=1): {why}")
    if why:
        pytest.skip(f"no kind here: {why}")
    t0 = time.monotonic()
    built = build_images(("kind-node", "operator", "ffmpeg", "mediamtx"))
    node_image = next(name for name in built if "/kind-node:" in name)
    archives = {key: built[ref] for key, ref in IMAGES.items()}
    print(f"\n[e2e-kind] images built or reused in {time.monotonic() - t0:.1f}s", flush=True)
    work = tmp_path_factory.mktemp("kind")
    with DockerDaemon(work / "docker") as docker:
        loaded = load_node_image(docker, node_image, built[node_image])
        t1 = time.monotonic()
        with kind_cluster(CLUSTER, work / "cluster", docker, node_image) as cluster:
            print(
                f"[e2e-kind] node image loaded into Docker in {loaded:.1f}s; "
                f"kind create cluster {time.monotonic() - t1:.1f}s (load average {os.getloadavg()[0]:.1f})",
                flush=True,
            )
            yield KindKube(cluster, docker), archives


def test_demo_set_streams_on_kind_with_the_operator_pods(kind: tuple[Any, dict[str, Path]], tmp_path: Path) -> None:
    from streamdist_dev.kind import expose_demo

    k, archives = kind
    context = k.kubectl("config", "current-context").stdout.strip()
    how = plan(context, k.kubectl_json("get", "nodes")["items"])
    assert (how.how, how.cluster) == ("kind", CLUSTER), how
    t0 = time.monotonic()
    refs = load(how, archives, IMAGES, tools={"kind": str(k.cluster.kind_path)})
    t_load = time.monotonic() - t0
    pods = OperatorPods(k.kubectl, k.kubeconfig, refs, {"resyncSeconds": 2}, workdir=tmp_path).install()
    acting = k.wait_for("one operator replica acting", pods.active, 180, 1.0)
    print(f"[e2e-kind] images loaded with kind in {t_load:.1f}s; chart installed in {pods.install_seconds:.1f}s; "
          f"{acting} acts", flush=True)  # fmt: skip
    k.kubectl("create", "namespace", DEMO_NS)
    t1 = time.monotonic()
    k.kubectl("apply", "-n", DEMO_NS, "-f", str(REPO / "examples" / "demo"))
    expose_demo(k, DEMO_NS)
    pieces = start_demo_receivers(k, DEMO_NS, REPO / "examples" / "demo" / "outputs.yaml", tmp_path / "rx")
    try:
        start_demo_source(k, DEMO_NS, "demo", pieces)
        k.wait_for("the demo set streaming", lambda: demo_settled(k, DEMO_NS), 300, 1.0)
        pieces.wait_received(60)
        print(f"[e2e-kind] demo set: input Live, 3 outputs Streaming {time.monotonic() - t1:.1f}s after apply",
              flush=True)  # fmt: skip
        recorders = {
            name: record(url, tmp_path / f"{name}.ts", seconds=8, group=pieces.group, name=f"watch-{name}")
            for name, url in sorted(pieces.urls.items())
        }
        for r in recorders.values():
            r.wait(60)
        assert set(recorders) == {"demo-srt", "demo-rtmp", "demo-udp"}, recorders
        for name in recorders:
            probe = ffprobe_streams(tmp_path / f"{name}.ts")
            v = probe.video
            assert v is not None and v.codec_name == "h264" and v.frames >= 25, (name, probe)
            print(f"[e2e-kind] {name}: {v.frames} H.264 frames decoded, codecs {probe.codecs}", flush=True)
    finally:
        pieces.stop()
