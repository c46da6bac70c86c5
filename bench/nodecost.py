"""6. Media cost on the real node, per pod, as the kubelet sees it: the operator runs
one UDP input and N outputs (RTSP pushes to a receiver on the host) on the local real
node (dev/streamdist_dev/node.py: containerd, kubelet, the images built by hack/); the
source loops the media-cost benchmark's 1080p30 6 Mbit/s file as MPEG-TS over UDP.

Each pod is metered by its cgroup (v1): CPU from ``cpuacct.usage``, memory as the
working set (``memory.usage_in_bytes`` minus ``total_inactive_file``: what the
kubelet and ``kubectl top`` report, and what evictions and limits act on), beside
the PSS of the processes in it. The cgroup charges a shared page to the pod that
touched it first, so the working set of one output can hold FFmpeg's library pages
that other outputs use too; PSS splits them.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from streamdist_dev import media
from streamdist_dev.kubectl import install_crds
from streamdist_dev.node import CGROUP_ROOT, NODE_IP, NodeCluster, node_supported
from streamdist_dev.operator import OperatorProcess

from . import mediautil
from .common import Opts, Result, Table, say, summary
from .procmeter import pss_kb

NAME = "nodecost"
TITLE = "media cost on the real node: each pod's cgroup CPU and working set"
API = "streamdist.io/v1alpha1"
CGROUP = Path("/sys/fs/cgroup")
NS = "bench-nodecost"


@dataclass
class PodMeter:
    """One pod's cgroup: CPU seconds between two readings, working set and PSS samples."""

    name: str
    uid: str
    cpu_first: float = 0.0
    cpu_last: float = 0.0
    working_set: list[int] = field(default_factory=list)
    pss: list[int] = field(default_factory=list)

    def dir(self, hierarchy: str) -> Path:
        found = list((CGROUP / hierarchy / CGROUP_ROOT).glob(f"**/pod{self.uid}"))
        if len(found) != 1:
            raise RuntimeError(f"pod {self.name}: {len(found)} cgroups named pod{self.uid} in {hierarchy}")
        return found[0]

    def cpu_s(self) -> float:
        return int((self.dir("cpuacct") / "cpuacct.usage").read_text()) / 1e9

    def sample_memory(self) -> None:
        mem = self.dir("memory")
        usage = int((mem / "memory.usage_in_bytes").read_text())
        stat = dict(line.split() for line in (mem / "memory.stat").read_text().splitlines())
        self.working_set.append(max(0, usage - int(stat.get("total_inactive_file", 0))))
        pids = {int(p) for f in mem.glob("**/cgroup.procs") for p in f.read_text().split()}
        self.pss.append(sum(kb for kb in map(pss_kb, pids) if kb) * 1024)


def run(opts: Opts) -> Result:
    why = node_supported()
    if why:
        raise RuntimeError(f"the local node cannot run here: {why}")
    n, window = (3, 15.0) if opts.quick else (20, 60.0)
    work = opts.dir(NAME)
    say(opts, f"{NAME}: starting the local node")
    with NodeCluster(work / "node") as nc:
        install_crds(nc)
        with OperatorProcess(nc.kubeconfig, work / "operator", env=nc.operator_env()):
            nc.kubectl("create", "namespace", NS)
            figs = measure(nc, NS, n, window, work, opts)
    res = Result(NAME, TITLE, figures=figs)
    res.tables = tables(figs)
    return res


def measure(nc: NodeCluster, ns: str, n: int, window: float, work: Path, opts: Opts) -> dict[str, Any]:
    """Run the input and ``n`` outputs in namespace ``ns`` and meter their pods for
    ``window`` seconds (also called by the e2e suite, on its own node)."""
    src = mediautil.source_file(10 if n <= 3 else 60)
    with media.ProcessGroup(logdir=work / "logs") as g, _receiver(work, g) as rx:
        nc.host_service(ns, "recv", [("rtsp", rx.rtsp_port, "TCP")])
        say(opts, f"{NAME}: input and {n} outputs")
        ingest = _live_input(nc, ns, "cam", src, g)
        for i in range(n):
            nc.apply(_output(ns, f"out-{i}", "cam", f"rtsp://recv.{ns}.svc:{rx.rtsp_port}/out-{i}"))
        _wait(nc, f"{n} outputs Streaming", lambda: _streaming(nc, ns) >= n, 120 + 10 * n)
        missing = mediautil.wait_paths_ready(rx.mtx, [f"out-{i}" for i in range(n)], 60)
        if missing:
            raise RuntimeError(f"destinations not receiving: {missing}")
        time.sleep(10)
        pods = _pods(nc, ns)
        say(opts, f"{NAME}: metering {len(pods)} pods, {window:.0f}s")
        return meter(pods, rx.mtx, n, window) | {"ingest": ingest, "outputs": n}


def meter(pods: dict[str, PodMeter], rx: media.MediaMTX, n: int, window: float) -> dict[str, Any]:
    delivery = mediautil.Delivery(rx, [f"out-{i}" for i in range(n)])
    t0 = time.monotonic()
    for p in pods.values():
        p.cpu_first = p.cpu_s()
    while time.monotonic() < t0 + window:
        time.sleep(min(5.0, max(0.0, t0 + window - time.monotonic())))
        delivery.sample()
        for p in pods.values():
            p.sample_memory()
    for p in pods.values():
        p.cpu_last = p.cpu_s()
    wall = time.monotonic() - t0
    return {
        "window_s": wall,
        "pods": {
            name: {
                "cpu_per_min": (p.cpu_last - p.cpu_first) / wall * 60,
                "working_set_mb": sum(p.working_set) / len(p.working_set) / 2**20,
                "pss_mb": sum(p.pss) / len(p.pss) / 2**20,
            }
            for name, p in pods.items()
        },
        "delivered_min_mbps": min(b * 8 / wall / 1e6 for b in delivery.total.values()),
        "interruptions": sum(delivery.interruptions.values()),
    }


def tables(f: dict[str, Any]) -> list[Table]:
    pods = f["pods"]
    outs = [v for k, v in pods.items() if k != "router"]
    t = Table(
        f"{f['outputs']} output pods and their router pod on the local node, {f['window_s']:.0f} s "
        f"(source: {f['ingest']})",
        ["pod", "CPU s/min p50 / max", "working set MB p50 / max", "PSS MB p50 / max", "sum CPU s/min",
         "sum working set MB", "sum PSS MB"],
    )  # fmt: skip
    for who, rows in (("router", [pods["router"]]), ("output", outs)):
        cells = []
        for key in ("cpu_per_min", "working_set_mb", "pss_mb"):
            p50, _, top = summary([r[key] for r in rows])
            cells.append(f"{p50:.2f} / {top:.2f}")
        t.add(who, *cells, *(sum(r[k] for r in rows) for k in ("cpu_per_min", "working_set_mb", "pss_mb")))
    t.notes.append(
        f"every destination received at least {f['delivered_min_mbps']:.2f} Mbit/s; "
        f"{f['interruptions']} interruptions in the window"
    )
    t.notes.append(
        "cgroup v1 of each pod (kubelet cgroupRoot /streamdist-node): CPU cpuacct.usage; working set "
        "memory.usage_in_bytes - total_inactive_file (the kubelet's figure); PSS of the processes in the pod"
    )
    return [t]


# ------------------------------------------------------------------ set-up


@dataclass
class _Receiver:
    mtx: media.MediaMTX
    rtsp_port: int


@contextmanager
def _receiver(work: Path, g: media.ProcessGroup) -> Iterator[_Receiver]:
    """A MediaMTX on the node's IP taking the outputs' RTSP pushes (API on loopback)."""
    port = media.free_tcp_port(NODE_IP)
    cfg = media.mediamtx_config(rtsp_port=port, host=NODE_IP, log_level="warn")
    cfg.update(api=True, apiAddress=f"127.0.0.1:{media.free_tcp_port()}")
    cfg["pathDefaults"] = {"overridePublisher": True}
    path = work / "recv.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    mtx = media.launch_mediamtx(path, cfg, work, group=g, name="recv")
    try:
        yield _Receiver(mtx, port)
    finally:
        mtx.stop()


def _live_input(nc: NodeCluster, ns: str, name: str, src: Path, g: media.ProcessGroup) -> str:
    nc.apply({"apiVersion": API, "kind": "StreamInput", "metadata": {"name": name, "namespace": ns},
              "spec": {"protocol": "udp"}})  # fmt: skip
    port = _wait(nc, "input port", lambda: _status(nc, ns, "si", name).get("port"), 120)
    ip = _wait(nc, "ingest ClusterIP", lambda: _get(nc, ns, "service", f"{name}-ingest")["spec"]["clusterIP"], 60)
    _wait(nc, "router ready", lambda: _status(nc, ns, "si", name).get("phase") in ("Waiting", "Live"), 240)
    url = f"udp://{ip}:{port}?pkt_size=1316"
    argv = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "warning", "-nostats", "-re", "-stream_loop", "-1",
            "-i", str(src), "-map", "0", "-c", "copy", "-f", "mpegts", url]  # fmt: skip
    # as a hardware encoder does, it goes on sending while the Service has no endpoint
    g.start("source", ["sh", "-c", f"while :; do {shlex.join(argv)}; sleep 0.5; done"])
    _wait(nc, "input Live", lambda: _status(nc, ns, "si", name).get("phase") == "Live", 120)
    return f"{src.name} looped as MPEG-TS over UDP"


def _output(ns: str, name: str, input_name: str, url: str) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "StreamOutput", "metadata": {"name": name, "namespace": ns},
            "spec": {"input": input_name, "url": url}}  # fmt: skip


def _get(nc: NodeCluster, ns: str, *what: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(nc.kubectl("-n", ns, "get", *what, "-o", "json").stdout)
    return doc


def _status(nc: NodeCluster, ns: str, kind: str, name: str) -> dict[str, Any]:
    return _get(nc, ns, kind, name).get("status") or {}


def _streaming(nc: NodeCluster, ns: str) -> int:
    return sum(1 for o in _get(nc, ns, "streamoutputs")["items"] if (o.get("status") or {}).get("phase") == "Streaming")


def _wait(nc: NodeCluster, what: str, fn: Any, timeout: float) -> Any:
    """Poll ``fn`` (an error counts as not yet) while the node's parts keep running."""
    return nc.wait_for(what, fn, timeout, 1.0)


def _pods(nc: NodeCluster, ns: str) -> dict[str, PodMeter]:
    """The router pod (as "router") and each output's pod (by output name)."""
    out: dict[str, PodMeter] = {}
    for pod in _get(nc, ns, "pods")["items"]:
        meta = pod["metadata"]
        owner = (meta.get("ownerReferences") or [{}])[0]
        name = owner.get("name", meta["name"]) if owner.get("kind") == "StreamOutput" else "router"
        if name in out:
            raise RuntimeError(f"two pods for {name} in {ns}")
        out[name] = PodMeter(meta["name"], meta["uid"])
    if "router" not in out:
        raise RuntimeError(f"no router pod in {ns}")
    return out
