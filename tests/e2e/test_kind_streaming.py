"""Streaming on a kind cluster, through pytest-kind: the way a person with Docker tries it.

Debian's Docker daemon (started for this module only: tests/harness/kind.py), kind
built from the Go module proxy at its pinned version, and a kind node image built here
(hack/build-images.sh kind-node). The images reach the cluster the way
``STREAMDIST_CLUSTER=current make demo`` puts them there (``kind load image-archive``,
tests/harness/load_images.py), the chart installs the two operator replicas, and a UDP
input feeds an RTMP output (to a receiver on this host, at the kind network's gateway)
and an SRT listener output (read through its NodePort): video decoded at both.

This module runs before tests/e2e/test_node_streaming.py (files in name order) and
tears its cluster and daemon down first: the local node never runs beside it.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.harness.load_images import load, plan
from tests.harness.media import (
    ProcessGroup,
    ffprobe_streams,
    free_tcp_port,
    mediamtx_config,
    record,
    start_mediamtx,
    start_srt_caller_recorder,
)
from tests.harness.node import IMAGES, build_images, start_encoder
from tests.harness.operator_pods import OperatorPods

pytestmark = [pytest.mark.timeout(2400)]

CLUSTER = "streamdist-e2e"
NODE_IMAGE_KEY = "kind-node"


class KindAccess:
    """kubectl on the kind cluster, with the few helpers the test needs."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.kubeconfig = Path(cluster.kubeconfig_path)

    def kubectl(self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120) -> Any:
        cmd = [str(self.cluster.kubectl_path), f"--kubeconfig={self.kubeconfig}", *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=timeout)
        if check and proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, cmd, proc.stdout, proc.stderr)
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def apply(self, obj: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", input=json.dumps(obj))

    def wait(self, what: str, fn: Any, timeout: float = 240, interval: float = 1.0) -> Any:
        deadline, last = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            try:
                got = fn()
                if got:
                    return got
            except Exception as e:
                last = e
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} ({last})")


@pytest.fixture(scope="module")
def kind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KindAccess, dict[str, Path], Any]]:
    from tests.harness.kind import DockerDaemon, docker_supported, kind_cluster, load_node_image

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
                f"kind create cluster {time.monotonic() - t1:.1f}s",
                flush=True,
            )
            yield KindAccess(cluster), archives, docker


def _gateway(docker: Any) -> str:
    nets = json.loads(docker.docker("network", "inspect", "kind").stdout)
    for cfg in nets[0]["IPAM"]["Config"]:
        if ":" not in cfg.get("Gateway", ":"):
            return cfg["Gateway"]
    raise AssertionError(f"no IPv4 gateway on the kind network: {nets}")


def _node_ip(k: KindAccess) -> str:
    node = k.json("get", "nodes")["items"][0]
    return next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")


def _node_port(k: KindAccess, ns: str, service: str) -> int:
    return int(k.json("get", "svc", service, "-n", ns)["spec"]["ports"][0]["nodePort"])


def test_streams_on_kind_with_the_operator_pods(kind: tuple[KindAccess, dict[str, Path], Any], tmp_path: Path) -> None:
    k, archives, docker = kind
    context = k.kubectl("config", "current-context").stdout.strip()
    how = plan(context, k.json("get", "nodes")["items"])
    assert (how.how, how.cluster) == ("kind", CLUSTER), how
    t0 = time.monotonic()
    refs = load(how, archives, IMAGES, tools={"kind": str(k.cluster.kind_path)})
    t_load = time.monotonic() - t0
    pods = OperatorPods(k.kubectl, k.kubeconfig, refs, {"resyncSeconds": 2}, workdir=tmp_path).install()
    acting = k.wait("one operator replica acting", pods.active, 180)
    print(f"[e2e-kind] images loaded with kind in {t_load:.1f}s; chart installed in {pods.install_seconds:.1f}s; "
          f"{acting} acts", flush=True)  # fmt: skip

    gw, node_ip, ns = _gateway(docker), _node_ip(k), "kind-e2e"
    with ProcessGroup(tmp_path / "logs") as group:
        rtmp, rtsp = free_tcp_port(gw), free_tcp_port(gw)
        cfg = mediamtx_config(rtmp_port=rtmp, rtsp_port=rtsp, host=gw)
        cfg.update(api=True, apiAddress=f"127.0.0.1:{free_tcp_port()}")
        recv = start_mediamtx(cfg, tmp_path / "recv", group=group, name="recv")
        k.kubectl("create", "namespace", ns)
        k.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "recv", "namespace": ns},
                 "spec": {"ports": [{"name": "rtmp", "port": rtmp, "protocol": "TCP"}]}})  # fmt: skip
        k.apply({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
                 "metadata": {"name": "recv-host", "namespace": ns, "labels": {"kubernetes.io/service-name": "recv"}},
                 "endpoints": [{"addresses": [gw], "conditions": {"ready": True}}],
                 "ports": [{"name": "rtmp", "port": rtmp, "protocol": "TCP"}]})  # fmt: skip
        api = "streamdist.io/v1alpha1"
        k.apply({"apiVersion": api, "kind": "StreamInput", "metadata": {"name": "cam", "namespace": ns},
                 "spec": {"protocol": "udp", "service": {"type": "NodePort"}}})  # fmt: skip
        outputs = {
            "to-rtmp": {"url": f"rtmp://recv.{ns}.svc:{rtmp}/live/kind"},
            "to-srt": {"url": "srt://0.0.0.0:20600?mode=listener&latency=200000", "service": {"type": "NodePort"}},
        }
        for name, spec in outputs.items():
            k.apply({"apiVersion": api, "kind": "StreamOutput", "metadata": {"name": name, "namespace": ns},
                     "spec": {"input": "cam", **spec}})  # fmt: skip
        ingest = k.wait("the ingest NodePort", lambda: _node_port(k, ns, "cam-ingest"))
        start_encoder(f"udp://{node_ip}:{ingest}", group, name="source")
        t1 = time.monotonic()

        def settled() -> bool:
            st = [(o.get("status") or {}).get("phase") for o in k.json("get", "so", "-n", ns)["items"]]
            return st == ["Streaming", "Streaming"]

        k.wait("both outputs Streaming", settled, 300)
        print(f"[e2e-kind] both outputs Streaming {time.monotonic() - t1:.1f}s after the source started", flush=True)
        srt_port = k.wait("the SRT listener's NodePort", lambda: _node_port(k, ns, "to-srt"))
        srt = start_srt_caller_recorder(srt_port, tmp_path / "srt.ts", group=group, host=node_ip)
        k.wait("the receiver gets to-rtmp", lambda: (s := recv.path("live/kind")) and s.ready, 60)
        rtmp_rec = record(f"rtsp://{gw}:{rtsp}/live/kind", tmp_path / "rtmp.ts", seconds=8, group=group, name="rtmp")
        rtmp_rec.wait(60)
        srt.stop()
        for f in ("rtmp.ts", "srt.ts"):
            probe = ffprobe_streams(tmp_path / f)
            assert probe.video is not None and probe.video.codec_name == "h264" and probe.video.frames >= 25, (f, probe)
            print(f"[e2e-kind] {f}: {probe.video.frames} H.264 frames decoded, codecs {probe.codecs}", flush=True)
