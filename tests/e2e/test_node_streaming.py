"""End to end on the local real node: real pods, real restarts, real video.

All e2e tests live in this one file on purpose: `make test` distributes files over
xdist workers, and two local nodes on one host would share the bridge and iptables.

Each test prints what it measured (``[e2e] ...`` lines; run pytest with ``-s`` to see
them live). Receivers run on this host, bound to the node's IP (10.244.0.1), which
pods reach through the selector-less Service ``recv`` (``NodeCluster.host_service``);
the test pattern source sends to the input's ingest ClusterIP, routed by kube-proxy.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from streamdist.settings import Settings
from streamdist_dev import wait as waiting
from streamdist_dev.alerting import Alerting, Webhook, chart_rules, monitor_scrape_configs, readme_alertmanager_config
from streamdist_dev.chart import rendered
from streamdist_dev.kubectl import Kubectl
from streamdist_dev.media import (
    ManagedProcess,
    MediaMTX,
    ProcessGroup,
    ffprobe_streams,
    free_tcp_port,
    free_udp_port,
    launch_mediamtx,
    make_self_signed_cert,
    mediamtx_config,
    record,
    start_srt_caller_recorder,
    wait_for,
)
from streamdist_dev.node import IMAGES, NODE_IP, NodeCluster, start_encoder

# the first test also pays for the node: on a cold cache, CoreDNS and the images are built
pytestmark = [pytest.mark.timeout(1800)]

API = "streamdist.io/v1alpha1"


def _input(name: str) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "StreamInput", "metadata": {"name": name}, "spec": {"protocol": "udp"}}


def _output(name: str, input_name: str, url: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "StreamOutput",
        "metadata": {"name": name},
        "spec": {"input": input_name, "url": url, **spec},
    }


class Receiver:
    """A MediaMTX on the node's IP taking RTMP, RTMPS and RTSP publishes (API on loopback)."""

    def __init__(self, workdir: Path, group: ProcessGroup, name: str = "recv", hostname: str = "localhost") -> None:
        self.workdir, self.group, self.name = workdir, group, name
        # its RTMPS certificate names the Service outputs reach it by: they verify it
        cert, key = make_self_signed_cert(workdir / "tls", cn=hostname)
        self.cert = cert
        self.ports = {
            "rtsp": free_tcp_port(NODE_IP),
            "rtmp": free_tcp_port(NODE_IP),
            "rtmps": free_tcp_port(NODE_IP),
        }
        api = free_tcp_port()
        cfg = mediamtx_config(
            rtsp_port=self.ports["rtsp"], rtmp_port=self.ports["rtmp"], rtmps_port=self.ports["rtmps"],
            tls_cert=(cert, key), host=NODE_IP,
        )  # fmt: skip
        cfg.update(api=True, apiAddress=f"127.0.0.1:{api}")
        self.cfg = cfg
        self.mtx: MediaMTX | None = None
        self.start()

    def start(self) -> None:
        import yaml

        path = self.workdir / f"{self.name}.yml"
        path.write_text(yaml.safe_dump(self.cfg, sort_keys=False))
        self.mtx = launch_mediamtx(path, self.cfg, self.workdir, group=self.group, name=self.name)

    def kill(self) -> None:
        assert self.mtx is not None
        self.mtx.process.signal(signal.SIGKILL)
        self.mtx.process.wait(10)

    def service_ports(self) -> list[tuple[str, int, str]]:
        return [(n, p, "TCP") for n, p in self.ports.items()]

    def ready(self, path: str) -> bool:
        assert self.mtx is not None
        s = self.mtx.path(path)
        return bool(s and s.ready and s.tracks)

    def record(self, path: str, out: Path, seconds: float) -> ManagedProcess:
        url = f"rtsp://{NODE_IP}:{self.ports['rtsp']}/{path}"
        return record(url, out, seconds=seconds, group=self.group, name=f"read-{path.replace('/', '-')}")


def _probe_ok(path: Path, what: str, min_frames: int = 25) -> str:
    assert path.exists() and path.stat().st_size > 0, f"{what}: nothing received ({path})"
    probe = ffprobe_streams(path)
    v = probe.video
    assert v is not None and v.codec_name == "h264", f"{what}: no H.264 video in {path}: {probe}"
    assert v.frames >= min_frames, f"{what}: only {v.frames} decoded video frames in {path}"
    return f"{what}: {v.frames} video frames decoded, codecs {probe.codecs}"


def _start_live_input(kube: Kubectl, group: ProcessGroup, name: str = "cam") -> ManagedProcess:
    kube.apply(_input(name))
    port = kube.wait(f"{name} port", lambda: kube.status("si", name).get("port"))
    ip = kube.wait(f"{name}-ingest ClusterIP", lambda: kube.service_ip(f"{name}-ingest"))
    kube.wait(f"{name} router Ready", lambda: kube.status("si", name).get("phase") in ("Waiting", "Live"), 240)
    kube.wait(f"{name}-ingest endpoints", lambda: _ready_endpoints(kube, f"{name}-ingest"), 120)
    src = start_encoder(f"udp://{ip}:{port}", group, name=f"source-{name}")
    t0 = time.monotonic()
    kube.wait(f"{name} Live", lambda: kube.status("si", name).get("phase") == "Live", 120)
    print(f"[e2e] input {name} Live {time.monotonic() - t0:.1f}s after the source started", flush=True)
    return src


# What FFmpeg itself says when an RTMP destination goes away or refuses connections.
FFMPEG_ERROR = re.compile(r"refused|broken pipe|connection reset|end of file|i/o error|failed to|error writing", re.I)


class _Timeline:
    """Each change of an output's (phase, reconnects, pod, lastError), timed."""

    def __init__(self, kube: Kubectl, name: str, t0: float) -> None:
        self.kube, self.name, self.t0 = kube, name, t0
        self.rows: list[tuple[float, tuple[Any, ...]]] = []
        self.most_running = 0  # FFmpeg containers of this output running at the same time
        self.pod_messages: set[str] = set()  # the kubelet's termination messages, as Pods show them

    def sample(self) -> None:
        st = self.kube.status("so", self.name)
        cstate = ""
        if st.get("pod"):
            pod = self.kube.get("pods", "-l", f"streamdist.io/output={self.name}")
            running = sum(
                1
                for p in pod["items"]
                for cs in p["status"].get("containerStatuses", [])
                if "running" in (cs.get("state") or {})
            )
            self.most_running = max(self.most_running, running)
            for p in pod["items"]:
                for cs in p["status"].get("containerStatuses", []):
                    for st_ in (cs.get("state") or {}, cs.get("lastState") or {}):
                        if (st_.get("terminated") or {}).get("message"):
                            self.pod_messages.add(st_["terminated"]["message"])
                    state = cs.get("state") or {}
                    kind = next(iter(state), "?")
                    why = (state.get(kind) or {}).get("reason", "")
                    cstate += (
                        f"{p['metadata']['name']}:{kind}{'/' + why if why else ''}:restarts={cs.get('restartCount')} "
                    )
        row = (st.get("phase"), st.get("reconnects"), st.get("pod"), st.get("lastError"), cstate.strip())
        if not self.rows or self.rows[-1][1] != row:
            self.rows.append((round(time.monotonic() - self.t0, 1), row))

    def errors(self) -> list[str]:
        return [r[3] for _, r in self.rows if r[3]]

    def __str__(self) -> str:
        return "\n".join(
            f"    {t:6.1f}s phase={r[0]} reconnects={r[1]} pod={r[2]} lastError={r[3]!r} containers: {r[4]}"
            for t, r in self.rows
        )


def _ready_endpoints(kube: Kubectl, service: str) -> bool:
    slices = kube.get("endpointslices", "-l", f"kubernetes.io/service-name={service}")["items"]
    return any((e.get("conditions") or {}).get("ready") for s in slices for e in s.get("endpoints") or [])


def _phase(kube: Kubectl, name: str) -> str | None:
    return kube.status("so", name).get("phase")


def _all_streaming(kube: Kubectl, names: list[str]) -> bool:
    return all(_phase(kube, n) == "Streaming" for n in names)


def test_every_output_form_delivers_decodable_video(node: NodeCluster, kube: Kubectl, tmp_path: Path) -> None:
    with ProcessGroup(tmp_path / "logs") as group:
        recv = Receiver(tmp_path / "recv", group, hostname=f"recv.{kube.ns}.svc")
        udp_port, srt_port, listen_port = free_udp_port(NODE_IP), free_udp_port(NODE_IP), 20900
        node.host_service(kube.ns, "recv", [*recv.service_ports(), ("udp", udp_port, "UDP"), ("srt", srt_port, "UDP")])
        svc = f"recv.{kube.ns}.svc"
        # host-side destinations that listen: UDP and an SRT listener (for the SRT caller output)
        udp_file, srt_file = tmp_path / "udp.ts", tmp_path / "srt-caller.ts"
        udp_rec = record(
            f"udp://{NODE_IP}:{udp_port}?timeout=300000000&overrun_nonfatal=1&fifo_size=1000000", udp_file,
            group=group, name="udp-recorder", input_args=["-analyzeduration", "3000000", "-probesize", "5000000"],
        )  # fmt: skip
        srt_rec = group.start(
            "srt-listener-recorder",
            [
                "sh",
                "-c",
                f"exec srt-live-transmit -q -a:no 'srt://{NODE_IP}:{srt_port}?mode=listener' file://con > {srt_file}",
            ],
        )
        _start_live_input(kube, group)
        outputs = {
            "to-udp": f"udp://{svc}:{udp_port}?pkt_size=1316",
            "to-srt-caller": f"srt://{svc}:{srt_port}?mode=caller&latency=200000",
            "to-srt-listener": f"srt://0.0.0.0:{listen_port}?mode=listener&latency=200000",
            "to-rtmp": f"rtmp://{svc}:{recv.ports['rtmp']}/live/rtmp",
            "to-rtmps": f"rtmps://{svc}:{recv.ports['rtmps']}/live/rtmps",
            "to-rtsp": f"rtsp://{svc}:{recv.ports['rtsp']}/live/rtsp",
        }
        # RTMPS verifies the receiver's certificate against the CA a ConfigMap holds
        kube.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "recv-ca"},
                    "data": {"ca.crt": recv.cert.read_text()}})  # fmt: skip
        tls = {"tls": {"caFrom": {"configMapKeyRef": {"name": "recv-ca", "key": "ca.crt"}}}}
        t0 = time.monotonic()
        for name, url in outputs.items():
            kube.apply(_output(name, "cam", url, **(tls if name == "to-rtmps" else {})))
        # the SRT listener output waits for a caller: dial it (srt-live-transmit re-dials)
        listener_ip = kube.wait("to-srt-listener Service", lambda: kube.service_ip("to-srt-listener"))
        listener_file = tmp_path / "srt-listener.ts"
        slt = start_srt_caller_recorder(listen_port, listener_file, group=group, host=listener_ip)
        try:
            kube.wait("every output Streaming", lambda: _all_streaming(kube, list(outputs)), 240)
        except AssertionError:
            print(kube.describe())
            raise
        print(f"[e2e] {len(outputs)} outputs Streaming {time.monotonic() - t0:.1f}s after apply", flush=True)
        for path in ("live/rtmp", "live/rtmps", "live/rtsp"):
            kube.wait(f"receiver path {path}", lambda p=path: recv.ready(p), 60)
        readers = {
            p: recv.record(p, tmp_path / f"{p.replace('/', '-')}.ts", 8)
            for p in ("live/rtmp", "live/rtmps", "live/rtsp")
        }
        time.sleep(10)
        for r in readers.values():
            r.wait(30)
        for proc in (udp_rec, srt_rec, slt):
            proc.stop()
        results = [
            _probe_ok(udp_file, "udp"),
            _probe_ok(srt_file, "srt caller"),
            _probe_ok(listener_file, "srt listener"),
            *(_probe_ok(tmp_path / f"{p.replace('/', '-')}.ts", p.split("/")[1]) for p in readers),
        ]
        for line in results:
            print(f"[e2e] {line}", flush=True)


def test_destination_killed_for_20s_output_reconnects(node: NodeCluster, kube: Kubectl, tmp_path: Path) -> None:
    max_delay = 10
    # Worst case after the destination returns: the last retry failed just before, so the
    # spec allows max_delay; the operator replaces a pod the kubelet holds longer after
    # Settings.backoff_grace_seconds (3 s) and its 1 s back-off check; the old pod goes
    # first (the kubelet stops it and removes it: about 1-2 s), then the new pod starts
    # (about 1-2 s here) and FFmpeg probes its input and connects (about 1 s).
    bound = max_delay + Settings().backoff_grace_seconds + 1 + 6
    with ProcessGroup(tmp_path / "logs") as group:
        recv = Receiver(tmp_path / "recv", group, name="dest")
        node.host_service(kube.ns, "dest", recv.service_ports())
        _start_live_input(kube, group)
        kube.apply(
            _output(
                "flaky", "cam", f"rtmp://dest.{kube.ns}.svc:{recv.ports['rtmp']}/live/flaky",
                reconnect={"delaySeconds": 2, "maxDelaySeconds": max_delay},
            )
        )  # fmt: skip
        kube.wait("flaky Streaming", lambda: _phase(kube, "flaky") == "Streaming", 240)
        kube.wait("receiver gets flaky", lambda: recv.ready("live/flaky"), 60)
        before = kube.status("so", "flaky")
        r0 = before.get("reconnects", 0)
        pod0 = before.get("pod")

        recv.kill()
        t_kill = time.monotonic()
        timeline = _Timeline(kube, "flaky", t_kill)
        while time.monotonic() - t_kill < 20:
            timeline.sample()
            time.sleep(0.5)
        mid = kube.status("so", "flaky")
        recv.start()
        t_back = time.monotonic()

        def back() -> bool:
            timeline.sample()
            return recv.ready("live/flaky")

        wait_for(back, max_delay + 90, interval=0.5, what="the stream back at the destination")
        resumed = time.monotonic() - t_back
        kube.wait("flaky Streaming again", lambda: _phase(kube, "flaky") == "Streaming", 60)
        phase_back = time.monotonic() - t_back
        after = kube.status("so", "flaky")
        pods = kube.get("pods", "-l", "streamdist.io/output=flaky")["items"]
        restarts = sum(cs.get("restartCount", 0) for p in pods for cs in p["status"].get("containerStatuses", []))
        timeline.sample()
        print(
            f"[e2e] destination down 20s: stream back at the destination {resumed:.1f}s after it returned "
            f"(bound {bound:.0f}s), phase Streaming again after {phase_back:.1f}s; reconnects {r0} -> "
            f"{after.get('reconnects')}; pod {pod0} -> {after.get('pod')} (restartCount now {restarts}); "
            f"status while down and after (t from the kill):\n{timeline}",
            flush=True,
        )
        assert timeline.most_running <= 1, (
            f"{timeline.most_running} FFmpeg pods of one output ran at once (a replaced pod restarted by the "
            "kubelet before its deletion took effect): two publishers on one destination"
        )
        ffmpeg_errors = [e for e in timeline.errors() if FFMPEG_ERROR.search(e)]
        assert ffmpeg_errors, f"lastError never showed FFmpeg's own message: {timeline.errors()}"
        assert (mid.get("reconnects") or 0) > r0, f"reconnects did not grow while the destination was down: {mid}"
        assert after.get("reconnects", 0) >= mid.get("reconnects", 0), "reconnects went down"
        assert mid.get("lastError"), f"no lastError while the destination was down: {mid}"
        # The Pod's own copy of FFmpeg's log tail is masked by the image's entrypoint.
        assert timeline.pod_messages, "no termination message seen on the pods"
        leaked = [m for m in timeline.pod_messages if "/live/flaky" in m]
        assert not leaked, f"the stream key is in clear in a pod's termination message: {leaked}"
        assert resumed <= bound, f"streaming resumed {resumed:.1f}s after the destination came back"
        rec = recv.record("live/flaky", tmp_path / "after.ts", 6)
        rec.wait(30)
        print(f"[e2e] {_probe_ok(tmp_path / 'after.ts', 'after the outage')}", flush=True)


def test_router_pod_killed_input_and_outputs_recover(node: NodeCluster, kube: Kubectl, tmp_path: Path) -> None:
    with ProcessGroup(tmp_path / "logs") as group:
        recv = Receiver(tmp_path / "recv", group)
        udp_port = free_udp_port(NODE_IP)
        node.host_service(kube.ns, "recv", [*recv.service_ports(), ("udp", udp_port, "UDP")])
        svc = f"recv.{kube.ns}.svc"
        _start_live_input(kube, group)
        outputs = {
            "a-rtmp": f"rtmp://{svc}:{recv.ports['rtmp']}/live/a",
            "b-rtsp": f"rtsp://{svc}:{recv.ports['rtsp']}/live/b",
            "c-udp": f"udp://{svc}:{udp_port}?pkt_size=1316",
        }
        for name, url in outputs.items():
            kube.apply(_output(name, "cam", url, reconnect={"delaySeconds": 2, "maxDelaySeconds": 10}))
        kube.wait("every output Streaming", lambda: _all_streaming(kube, list(outputs)), 240)
        for p in ("live/a", "live/b"):
            kube.wait(f"receiver {p}", lambda p=p: recv.ready(p), 60)
        sources0 = {p: recv.mtx.path(p).source_id for p in ("live/a", "live/b")}  # type: ignore[union-attr]

        pods = kube.get("pods", "-l", "streamdist.io/input=cam,app.kubernetes.io/name=mediamtx")["items"]
        assert len(pods) == 1, pods
        old = pods[0]["metadata"]["name"]
        kube("delete", "pod", old, "--grace-period=0", "--force", "--wait=false")
        t_kill = time.monotonic()

        def new_router_running() -> bool:
            items = kube.get("pods", "-l", "streamdist.io/input=cam,app.kubernetes.io/name=mediamtx")["items"]
            return any(p["metadata"]["name"] != old and p["status"].get("phase") == "Running" for p in items)

        kube.wait("a new router pod Running", new_router_running, 120)
        t_router = time.monotonic() - t_kill
        kube.wait("input Live again", lambda: kube.status("si", "cam").get("phase") == "Live", 120)
        t_live = time.monotonic() - t_kill
        back: dict[str, float] = {}

        def pushed_again() -> bool:
            for p in ("live/a", "live/b"):
                s = recv.mtx.path(p)  # type: ignore[union-attr]
                if p not in back and s and s.ready and s.source_id != sources0[p]:
                    back[p] = round(time.monotonic() - t_kill, 1)
            return len(back) == 2

        wait_for(pushed_again, 120, what="both pushed outputs publishing again")
        kube.wait("every output Streaming again", lambda: _all_streaming(kube, list(outputs)), 120)
        t_streaming = time.monotonic() - t_kill
        udp_file = tmp_path / "udp-after.ts"
        udp_rec = record(
            f"udp://{NODE_IP}:{udp_port}?timeout=20000000&overrun_nonfatal=1&fifo_size=1000000", udp_file,
            seconds=6, group=group, name="udp-after", input_args=["-analyzeduration", "3000000", "-probesize", "5000000"],
        )  # fmt: skip
        readers = [recv.record(p, tmp_path / f"{p.split('/')[1]}-after.ts", 6) for p in ("live/a", "live/b")]
        for r in (udp_rec, *readers):
            r.wait(40)
        print(
            f"[e2e] router pod killed: new router Running after {t_router:.1f}s, input Live after {t_live:.1f}s, "
            f"outputs publishing again after {back}, all Streaming after {t_streaming:.1f}s",
            flush=True,
        )
        for f, what in ((udp_file, "udp"), (tmp_path / "a-after.ts", "rtmp"), (tmp_path / "b-after.ts", "rtsp")):
            print(f"[e2e] {_probe_ok(f, what + ' after router restart')}", flush=True)


# --- outputs added and removed without touching the others ------------------------

OTHERS = 19
MAX_GAP = 0.5
RECORD = 40.0
SKIP = 50  # packets (2 s at 25 fps)


def _video_pts(path: Path) -> list[float]:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=pts_time",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return sorted(float(p["pts_time"]) for p in json.loads(out.stdout).get("packets", []) if "pts_time" in p)


def test_adding_and_deleting_outputs_leaves_the_others_without_gaps(
    node: NodeCluster, kube: Kubectl, tmp_path: Path
) -> None:
    with ProcessGroup(tmp_path / "logs") as group:
        recv = Receiver(tmp_path / "recv", group)
        node.host_service(kube.ns, "recv", recv.service_ports())
        url = f"rtsp://recv.{kube.ns}.svc:{recv.ports['rtsp']}/live/"
        _start_live_input(kube, group)
        names = [f"o{i:02d}" for i in range(OTHERS)]
        for name in names:
            kube.apply(_output(name, "cam", url + name))
        kube.wait("19 outputs Streaming", lambda: _all_streaming(kube, names), 300)
        for name in names:
            kube.wait(f"receiver path {name}", lambda n=name: recv.ready(f"live/{n}"), 120)
        recorders = {n: recv.record(f"live/{n}", tmp_path / f"{n}.ts", RECORD) for n in names}
        time.sleep(10)
        t0 = time.monotonic()
        kube.apply(_output("newcomer", "cam", url + "newcomer"))
        kube("delete", "so", names[0], "--wait=false")
        kube.wait("newcomer Streaming", lambda: _all_streaming(kube, ["newcomer"]), 120)
        print(f"[e2e] newcomer Streaming {time.monotonic() - t0:.1f}s after apply; o00 deleted", flush=True)
        for proc in recorders.values():
            proc.wait(RECORD + 60)
        gaps = {}
        for name in names[1:]:
            pts = _video_pts(tmp_path / f"{name}.ts")
            assert len(pts) > 100, f"{name}: only {len(pts)} video packets recorded"
            steady = pts[SKIP:]  # a recorder joining mid-stream waits for its first keyframe
            gaps[name] = max(b - a for a, b in itertools.pairwise(steady))
        worst = max(gaps, key=lambda n: gaps[n])
        print(
            f"[e2e] longest frame gap over the 18 untouched outputs: {gaps[worst]:.3f}s ({worst}); "
            f"median of their maxima {sorted(gaps.values())[len(gaps) // 2]:.3f}s",
            flush=True,
        )
        assert gaps[worst] < MAX_GAP, f"{worst} saw a {gaps[worst]:.3f}s gap: {gaps}"


def test_backup_source_takes_over_and_outputs_stay_connected(node: NodeCluster, kube: Kubectl, tmp_path: Path) -> None:
    """A UDP primary with a UDP backup on the real node: the router pod's switch sidecar
    (FFmpeg image, non-root, read-only root) puts the backup on air when the primary
    encoder stops and the primary again when it returns; the output's FFmpeg keeps its
    one RTMP publish to the receiver throughout, and status and Events say what is on air."""
    backup_port = 20950
    with ProcessGroup(tmp_path / "logs") as group:
        recv = Receiver(tmp_path / "recv", group)
        node.host_service(kube.ns, "recv", recv.service_ports())
        studio = _input("studio")
        studio["spec"]["backup"] = {"protocol": "udp", "port": backup_port}
        kube.apply(studio)
        port = kube.wait("studio port", lambda: kube.status("si", "studio").get("port"))
        ip = kube.wait("studio-ingest ClusterIP", lambda: kube.service_ip("studio-ingest"))
        kube.wait("router Ready", lambda: kube.status("si", "studio").get("phase") in ("Waiting", "Live"), 240)
        kube.wait("studio-ingest endpoints", lambda: _ready_endpoints(kube, "studio-ingest"), 120)
        assert kube.status("si", "studio").get("backupEndpoint") == f"udp://studio-ingest.{kube.ns}.svc:{backup_port}"
        start_encoder(f"udp://{ip}:{backup_port}", group, name="backup")
        primary = start_encoder(f"udp://{ip}:{port}", group, name="primary-1")

        def on_air() -> str | None:
            return kube.status("si", "studio").get("activeSource")

        kube.wait("the primary on air", lambda: on_air() == "primary", 60)
        kube.apply(_output("prog", "studio", f"rtmp://recv.{kube.ns}.svc:{recv.ports['rtmp']}/live/prog"))
        kube.wait("prog Streaming", lambda: _phase(kube, "prog") == "Streaming", 240)
        kube.wait("receiver gets prog", lambda: recv.ready("live/prog"), 60)
        publish0 = recv.mtx.path("live/prog").source_id  # type: ignore[union-attr]

        primary.stop(grace=2)
        t_drop = time.monotonic()
        kube.wait("the backup on air", lambda: on_air() == "backup", 30)
        seen_backup = time.monotonic() - t_drop
        time.sleep(5)
        start_encoder(f"udp://{ip}:{port}", group, name="primary-2")
        t_back = time.monotonic()
        kube.wait("the primary on air again", lambda: on_air() == "primary", 30)
        seen_primary = time.monotonic() - t_back
        time.sleep(3)

        status = kube.status("so", "prog")
        path = recv.mtx.path("live/prog")  # type: ignore[union-attr]
        assert path is not None and path.ready and path.source_id == publish0, (
            f"the output published anew (its FFmpeg restarted) across the switches: {path}"
        )
        assert status.get("phase") == "Streaming" and not status.get("reconnects"), status
        events = kube.get("events")["items"]
        reasons = {e.get("reason") for e in events}
        assert {"SwitchedToBackup", "SwitchedToPrimary"} <= reasons, reasons
        to_backup = next(e for e in events if e.get("reason") == "SwitchedToBackup")
        assert re.search(r"; \d+ ms without frames at the switch$", to_backup.get("message", "")), to_backup
        last = kube.status("si", "studio").get("lastSwitch") or {}
        assert last.get("to") == "primary" and 0 <= last.get("gapMs", -1) < 1000, last
        rec = recv.record("live/prog", tmp_path / "after.ts", 6)
        rec.wait(30)
        print(
            f"[e2e] backup: status.activeSource backup {seen_backup:.1f}s after the primary encoder stopped, "
            f"primary {seen_primary:.1f}s after it restarted (operator health poll every 2 s here); the Event: "
            f"{to_backup.get('message')!r}; status.lastSwitch {last}; "
            f"the output's one RTMP publish lasted throughout; {_probe_ok(tmp_path / 'after.ts', 'after')}",
            flush=True,
        )


# Run in a client pod (the FFmpeg image has python3): one TCP connect, its outcome as a word.
_CONNECT = """
import errno, socket, sys
s = socket.socket()
s.settimeout(float(sys.argv[3]))
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print("connected")
except socket.timeout:
    print("timeout")
except OSError as e:
    print({errno.ECONNREFUSED: "refused", errno.EHOSTUNREACH: "unreachable"}.get(e.errno, f"error {e.errno}"))
"""
_RESTRICTED = {
    "pod": {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
    "container": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
}


def _pod(name: str, image: str, labels: dict[str, str], **container: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "securityContext": _RESTRICTED["pod"],
            "containers": [
                {"name": "c", "image": image, "securityContext": _RESTRICTED["container"], **container},
            ],
        },
    }


def _connect(kube: Kubectl, pod: str, ip: str, port: int, timeout: float = 3.0) -> str:
    """One TCP connect from ``pod`` to ip:port: connected, refused, timeout, unreachable."""
    out = kube("exec", pod, "--", "python3", "-c", _CONNECT, ip, str(port), str(timeout))
    return str(out.stdout).strip()


def _host_connect(ip: str, port: int, timeout: float = 3.0) -> str:
    import socket

    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return "connected"
    except TimeoutError:
        return "timeout"
    except OSError as e:
        return "refused" if isinstance(e, ConnectionRefusedError) else f"error {e.errno}"


def _pod_ready(kube: Kubectl, name: str) -> bool:
    conds = kube.get("pod", name).get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def test_network_policy_is_enforced_on_the_node(node: NodeCluster, kube: Kubectl) -> None:
    """kube-router enforces NetworkPolicy on the node: with a policy that admits only pods
    labelled ``role: allowed`` to the server's port 8554, the other client is refused
    (at the pod IP and through the Service), the allowed one connects (and only to that
    port), and this host still reaches the pod (the kubelet's probes and the API server's
    proxy come from here: the server stays Ready)."""
    server = _pod(
        "server", IMAGES["mediamtx"], {"app": "server"},
        readinessProbe={"tcpSocket": {"port": 8554}, "periodSeconds": 1, "failureThreshold": 1},
    )  # fmt: skip
    client = {"command": ["sleep", "3600"]}
    for pod in (
        server,
        _pod("allowed", IMAGES["ffmpeg"], {"role": "allowed"}, **client),
        _pod("denied", IMAGES["ffmpeg"], {"role": "denied"}, **client),
    ):
        kube.apply(pod)
    for svc, app in (("server", "server"), ("nobody", "none")):  # "nobody": a Service without endpoints
        kube.apply(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": svc},
                "spec": {"selector": {"app": app}, "ports": [{"name": "rtsp", "port": 8554}]},
            }
        )
    for name in ("server", "allowed", "denied"):
        kube.wait(f"pod {name} Ready", lambda n=name: _pod_ready(kube, n), 180)
    pod_ip = kube.get("pod", "server")["status"]["podIP"]
    svc_ip = kube.service_ip("server")
    kube.wait("Service server has its endpoint", lambda: _ready_endpoints(kube, "server"), 60)
    for who in ("allowed", "denied"):  # no policy yet: everyone gets in
        for ip in (pod_ip, svc_ip):
            assert _connect(kube, who, ip, 8554) == "connected", f"{who} -> {ip}:8554 before any policy"

    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "server-allowed-only"},
        "spec": {
            "podSelector": {"matchLabels": {"app": "server"}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "allowed"}}}], "ports": [{"port": 8554}]}],
        },
    }
    t0 = time.monotonic()
    kube.apply(policy)
    kube.wait("the policy enforced", lambda: _connect(kube, "denied", pod_ip, 8554, 1.0) == "refused", 60, 0.2)
    enforced = time.monotonic() - t0
    got = {
        ("denied", "pod IP"): _connect(kube, "denied", pod_ip, 8554),
        ("denied", "Service"): _connect(kube, "denied", svc_ip, 8554),
        ("allowed", "pod IP"): _connect(kube, "allowed", pod_ip, 8554),
        ("allowed", "Service"): _connect(kube, "allowed", svc_ip, 8554),
        ("allowed", "pod IP, RTMP port 1935 (not in the policy)"): _connect(kube, "allowed", pod_ip, 1935),
        ("this host", "pod IP"): _host_connect(pod_ip, 8554),
        ("this host", "Service"): _host_connect(svc_ip, 8554),
        # kube-router ACCEPTs before kube-proxy's REJECT; the node's routing rule refuses
        ("allowed", "Service without endpoints"): _connect(kube, "allowed", kube.service_ip("nobody"), 8554),
    }
    print(f"[e2e] netpol: enforced {enforced:.1f}s after kubectl apply; connects: {got}", flush=True)
    assert got == {
        ("denied", "pod IP"): "refused",
        ("denied", "Service"): "refused",
        ("allowed", "pod IP"): "connected",
        ("allowed", "Service"): "connected",
        ("allowed", "pod IP, RTMP port 1935 (not in the policy)"): "refused",
        ("this host", "pod IP"): "connected",
        ("this host", "Service"): "connected",
        ("allowed", "Service without endpoints"): "unreachable",
    }
    # The kubelet probes from this host every second and one failure makes it unready.
    time.sleep(3)
    server_status = kube.get("pod", "server")["status"]
    assert _pod_ready(kube, "server"), f"the server lost Ready under the policy: {server_status.get('conditions')}"
    assert _ready_endpoints(kube, "server")

    t0 = time.monotonic()
    kube("delete", "networkpolicy", "server-allowed-only")
    kube.wait("the policy lifted", lambda: _connect(kube, "denied", pod_ip, 8554, 1.0) == "connected", 60, 0.2)
    print(f"[e2e] netpol: lifted {time.monotonic() - t0:.1f}s after kubectl delete", flush=True)


def test_only_the_outputs_of_an_input_reach_its_router(node: NodeCluster, kube: Kubectl, tmp_path: Path) -> None:
    """The NetworkPolicy rendered with each router, enforced by the node: pods that are
    not outputs of the input cannot reach its router's RTSP, API, metrics or confidence
    monitor port (at the pod IP or through the Service), not even a pod of another
    namespace carrying the very labels of the input's output pods; the input's output
    keeps streaming and reaches the RTSP port only. This host is let in (the kubelet's probes come from it); the operator's
    health poll comes from the operator's pods, which the policy admits by their labels."""
    from streamdist.render import API_PORT, METRICS_PORT, RTSP_PORT, output_labels_of
    from streamdist.switch_render import MONITOR_PORT

    other = Kubectl(node, f"{kube.ns}-other"[:63])
    node.kubectl("create", "namespace", other.ns)
    try:
        with ProcessGroup(tmp_path / "logs") as group:
            recv = Receiver(tmp_path / "recv", group)
            node.host_service(kube.ns, "recv", recv.service_ports())
            _start_live_input(kube, group)
            kube.apply(_output("out", "cam", f"rtmp://recv.{kube.ns}.svc:{recv.ports['rtmp']}/live/out"))
            kube.wait("out Streaming", lambda: _phase(kube, "out") == "Streaming", 240)
            kube.wait("the receiver gets out", lambda: recv.ready("live/out"), 60)
            # A new output pod may be refused once: its first read can come before
            # kube-router's sync has seen the pod's IP (hack/NODE.md); counted from here.
            before = kube.status("so", "out")
            client = {"command": ["sleep", "3600"]}
            kube.apply(_pod("stranger", IMAGES["ffmpeg"], {"app": "stranger"}, **client))
            # the labels the router's policy admits (not streamdist.io/output: the operator
            # would delete a pod of an output that does not exist, as an orphan)
            lookalike = _pod("lookalike", IMAGES["ffmpeg"], output_labels_of("cam"), **client)
            other.apply(lookalike)
            for k, name in ((kube, "stranger"), (other, "lookalike")):
                k.wait(f"pod {name} Ready", lambda k=k, n=name: _pod_ready(k, n), 180)
            router = kube.get("pods", "-l", "app.kubernetes.io/name=mediamtx,streamdist.io/input=cam")["items"]
            assert len(router) == 1, [p["metadata"]["name"] for p in router]
            router_ip, svc_ip = router[0]["status"]["podIP"], kube.service_ip("cam")
            out_pod = kube.status("so", "out")["pod"]

            t0 = time.monotonic()
            kube.wait(
                "the stranger refused", lambda: _connect(kube, "stranger", router_ip, RTSP_PORT, 1) == "refused", 60
            )
            waited = time.monotonic() - t0
            targets = {
                "RTSP": (router_ip, RTSP_PORT),
                "API": (router_ip, API_PORT),
                "metrics": (router_ip, METRICS_PORT),
                "monitor": (router_ip, MONITOR_PORT),  # the confidence monitor (on by default)
                "RTSP via Service": (svc_ip, RTSP_PORT),
                "API via Service": (svc_ip, API_PORT),
            }
            got = {("stranger", t): _connect(kube, "stranger", *a) for t, a in targets.items()}
            got |= {(f"lookalike in {other.ns}", t): _connect(other, "lookalike", *a) for t, a in targets.items()}
            got |= {("output", t): _connect(kube, out_pod, *a) for t, a in targets.items()}
            got |= {("this host", t): _host_connect(*a) for t, a in targets.items()}
            print(
                f"[e2e] router policy: stranger refused {waited:.1f}s after it was Ready; connects: {got}", flush=True
            )
            want = {(who, t): "refused" for who, t in got if who != "this host"}
            want |= {("output", "RTSP"): "connected", ("output", "RTSP via Service"): "connected"}
            want |= {("this host", t): "connected" for t in targets}
            assert got == want

            status = kube.status("so", "out")
            print(f"[e2e] router policy: reconnects of the output while it started: {before.get('reconnects', 0)}")
            assert status.get("phase") == "Streaming" and status.get("pod") == out_pod, status
            assert status.get("reconnects", 0) == before.get("reconnects", 0), f"the output reconnected: {status}"
            rec = recv.record("live/out", tmp_path / "after.ts", 6)
            rec.wait(30)
            print(f"[e2e] router policy: {_probe_ok(tmp_path / 'after.ts', 'the output under the policy')}", flush=True)
    finally:
        node.kubectl("delete", "namespace", other.ns, "--wait=false", check=False)


# --- the operator as pods: the demo set, metrics, a handover -------------------------

DEMO_NS = "streamdist-demo"  # examples/demo/outputs.yaml sends to receiver.streamdist-demo.svc
HANDOVER_BOUND = 20.0  # seconds from the active replica's deletion to the standby acting


def _output_pods(node: NodeCluster, namespace: str) -> dict[str, tuple[str, int]]:
    """{output: (its pod's uid, the pod's restarts)} for every output pod of ``namespace``,
    and {"svc/NAME": (uid, clusterIP)} for every Service there (viewers hold its address)."""
    pods = node.kubectl_json("get", "pods", "-n", namespace, "-l", "streamdist.io/output")["items"]
    services = node.kubectl_json("get", "services", "-n", namespace)["items"]
    return {
        **{
            p["metadata"]["labels"]["streamdist.io/output"]: (
                p["metadata"]["uid"],
                sum(cs.get("restartCount", 0) for cs in p["status"].get("containerStatuses", [])),
            )
            for p in pods
        },
        **{f"svc/{s['metadata']['name']}": (s["metadata"]["uid"], s["spec"].get("clusterIP")) for s in services},
    }


def _metric(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(m.group(3))
    return None


CONFIDENCE = ("Black", "Frozen", "Silent")  # the confidence monitor's conditions


def _confidence_nominal(node: NodeCluster, namespace: str, name: str) -> dict[str, str] | None:
    """{condition: reason} once the input's Black, Frozen and Silent are all False (a
    moving test pattern with a tone) and its router pod's monitor container is ready;
    None before. Any of them True fails at once: the test pattern is none of these."""
    status = node.kubectl_json("get", "si", name, "-n", namespace).get("status") or {}
    conds = {c["type"]: c for c in status.get("conditions") or [] if c.get("type") in CONFIDENCE}
    lit = [c for c in conds.values() if c.get("status") == "True"]
    assert not lit, f"the confidence monitor judged the moving test pattern with a tone as {lit}"
    pods = node.kubectl_json(
        "get", "pods", "-n", namespace, "-l", f"app.kubernetes.io/name=mediamtx,streamdist.io/input={name}"
    )["items"]  # fmt: skip
    monitors = [cs for p in pods for cs in p["status"].get("containerStatuses") or [] if cs["name"] == "monitor"]
    if len(conds) < len(CONFIDENCE) or any(c.get("status") != "False" for c in conds.values()):
        return None
    if len(monitors) != 1 or not monitors[0].get("ready"):
        return None
    return {t: conds[t].get("reason", "") for t in CONFIDENCE}


def _handover(node: NodeCluster, operator: Any, before: dict[str, tuple[str, int]]) -> dict[str, float]:
    """Deletes the acting replica's pod; times the standby taking over, the standby acting
    on a change made after the deletion, and the recreated replica taking back."""
    from streamdist_dev.node import demo_settled

    acting = operator.active()
    (standby,) = [p for p in operator.ready_pods() if p != acting]
    node.kubectl("delete", "pod", acting, "-n", operator.namespace, "--wait=false")
    t0 = time.monotonic()
    node.apply(_output("late", "demo", "udp://receiver.streamdist-demo.svc:20701", suspend=True) | {
        "metadata": {"name": "late", "namespace": DEMO_NS}
    })
    node.wait_for(f"{standby} acting", lambda: operator.activity().get(standby), 120, 0.5)
    took = {"standby acting": time.monotonic() - t0}
    node.wait_for(
        "the change made after the deletion handled",
        lambda: (node.kubectl_json("get", "so", "late", "-n", DEMO_NS).get("status") or {}).get("phase") == "Suspended",
        120, 0.5,
    )  # fmt: skip
    took["change handled"] = time.monotonic() - t0
    node.wait_for(f"{acting} back and acting", lambda: operator.active() == acting, 240, 1.0)
    took["recreated replica acting again"] = time.monotonic() - t0
    node.kubectl("delete", "so", "late", "-n", DEMO_NS)
    assert demo_settled(node, DEMO_NS), node.kubectl("get", "streamdist", "-n", DEMO_NS).stdout
    after = _output_pods(node, DEMO_NS)
    assert after == before, f"an output pod or a Service was re-created (or a pod restarted) by the handover: {before} -> {after}"
    return took


def _watch(name: str, url: str, out: Path, group: ProcessGroup) -> ManagedProcess:
    """An output recorded until stopped, from the URL a viewer would use (an SRT listener
    through srt-live-transmit, as the other e2e tests call one)."""
    if url.startswith("srt://"):
        u = urllib.parse.urlsplit(url)
        return start_srt_caller_recorder(u.port or 0, out, group=group, host=u.hostname or "")
    return record(url, out, group=group, name=f"watch-{name}")


def _kill_operator_process(pod: str) -> int:
    """SIGKILLs, from this host, the `streamdist run` process of an operator pod (what an
    OOM kill or a crash does): the pod stays, the kubelet restarts its container."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            env = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"run" in argv and any(a.endswith(b"streamdist") for a in argv) and f"POD_ID={pod}".encode() in env:
            os.kill(int(proc.name), signal.SIGKILL)
            return int(proc.name)
    raise AssertionError(f"no streamdist process of pod {pod} found on this host")


def _crash(node: NodeCluster, operator: Any, before: dict[str, tuple[str, int]]) -> dict[str, float]:
    """SIGKILLs the acting replica's process; times its container's restart and its acting
    again. Its keep-alive outlives the crash, so the standby does not take over meanwhile."""
    acting = operator.active()
    (pod,) = [p for p in operator.pods() if p["metadata"]["name"] == acting]
    restarts = sum(cs.get("restartCount", 0) for cs in pod["status"].get("containerStatuses", []))
    _kill_operator_process(acting)
    t0 = time.monotonic()

    def restarted() -> bool:
        (p,) = [p for p in operator.pods() if p["metadata"]["name"] == acting]
        return sum(cs.get("restartCount", 0) for cs in p["status"].get("containerStatuses", [])) > restarts

    node.wait_for(f"{acting}'s container restarted", restarted, 120, 0.5)
    took = {"container restarted": time.monotonic() - t0}
    node.wait_for(f"{acting} acting again", lambda: operator.active() == acting, 120, 0.5)
    took["acting again"] = time.monotonic() - t0
    after = _output_pods(node, DEMO_NS)
    assert after == before, f"an output pod or a Service was re-created (or a pod restarted) by the crash: {before} -> {after}"
    return took


def test_demo_set_through_the_operator_pods_with_metrics_and_a_handover(
    node: NodeCluster, operator: Any, tmp_path: Path
) -> None:
    """The chart's two operator replicas (pods of the operator image) run examples/demo:
    the input Live, the three outputs Streaming; each replica's /metrics answers (through
    the metrics Service too) and says which one acts; deleting the acting pod hands over
    to the standby, and SIGKILLing the acting process gets it back, with no output pod
    re-created or restarted; then video is decoded at every receiver. (Recording comes
    last: an SRT listener's FFmpeg ends when its caller hangs up, and is restarted.)"""
    from streamdist_dev.node import demo_settled, start_demo_receivers, start_demo_source

    repo = Path(__file__).resolve().parents[2]
    assert sorted(operator.ready_pods()) == ["streamdist-0", "streamdist-1"]
    images = {c["image"] for p in operator.pods() for c in p["spec"]["containers"]}
    assert images == {IMAGES["operator"]}, images
    node.kubectl("create", "namespace", DEMO_NS)
    pieces = None
    try:
        t0 = time.monotonic()
        node.kubectl("apply", "-n", DEMO_NS, "-f", str(repo / "examples" / "demo"))
        pieces = start_demo_receivers(node, DEMO_NS, repo / "examples" / "demo" / "outputs.yaml", tmp_path / "rx")
        start_demo_source(node, DEMO_NS, "demo", pieces)
        node.wait_for("the demo set streaming", lambda: demo_settled(node, DEMO_NS), 300, 1.0)
        pieces.wait_received(60)
        print(f"[e2e] demo set: input Live, 3 outputs Streaming {time.monotonic() - t0:.1f}s after apply", flush=True)
        names = sorted(pieces.urls)
        assert names == ["demo-rtmp", "demo-srt", "demo-udp"], pieces.urls
        t_judged = time.monotonic()
        judged = node.wait_for(
            "the confidence monitor judging the test pattern", lambda: _confidence_nominal(node, DEMO_NS, "demo"), 120, 1.0
        )  # fmt: skip
        print(
            f"[e2e] confidence monitor (on by default): {judged} "
            f"{time.monotonic() - t_judged:.1f}s after every output streamed",
            flush=True,
        )
        assert judged == {t: "Nominal" for t in CONFIDENCE}, judged

        acting = operator.active()
        assert acting == "streamdist-1", f"the replica of the highest priority should act: {operator.activity()}"
        text = operator.metrics(acting)
        phases = [ln for ln in text.splitlines() if ln.startswith("streamdist_output_phase{") and ln.endswith(" 1.0")]
        for name in names:
            got = _metric(text, "streamdist_output_phase", namespace=DEMO_NS, output=name, phase="Streaming")
            assert got == 1, f"{name} not Streaming in {acting}'s /metrics: {phases}"
        assert (_metric(text, "streamdist_input_bitrate_kbps", namespace=DEMO_NS, input="demo") or 0) > 0
        for kind in CONFIDENCE:
            assert _metric(text, "streamdist_input_confidence", namespace=DEMO_NS, input="demo", condition=kind) == 0
        assert _metric(operator.metrics("streamdist-0"), "streamdist_operator_active") == 0
        via_service = operator.service_metrics()
        assert _metric(via_service, "streamdist_operator_active") in (0, 1), via_service[:500]

        # viewers on every output across the handover and the crash, as a person watching
        watchers = {name: _watch(name, url, tmp_path / f"{name}.ts", pieces.group) for name, url in pieces.urls.items()}
        time.sleep(3)
        before = _output_pods(node, DEMO_NS)
        assert [k for k in sorted(before) if not k.startswith("svc/")] == names, before
        t_watch = time.monotonic()
        took = _handover(node, operator, before)
        print(
            "[e2e] handover after deleting the acting replica's pod: "
            + ", ".join(f"{k} {v:.1f}s" for k, v in took.items())
            + f" (load average {os.getloadavg()[0]:.1f}); no output pod re-created or restarted",
            flush=True,
        )
        assert took["standby acting"] <= HANDOVER_BOUND, took
        assert took["change handled"] <= HANDOVER_BOUND + 5, took
        crash = _crash(node, operator, before)
        print(
            "[e2e] acting replica's process SIGKILLed: "
            + ", ".join(f"{k} {v:.1f}s" for k, v in crash.items())
            + "; no output pod re-created or restarted",
            flush=True,
        )
        assert demo_settled(node, DEMO_NS), node.kubectl("get", "streamdist", "-n", DEMO_NS).stdout
        time.sleep(2)
        for w in watchers.values():
            w.stop()
        watched = time.monotonic() - t_watch
        for name in names:
            # 25 fps: at least half the frames of the whole handover and crash window
            line = _probe_ok(tmp_path / f"{name}.ts", name, min_frames=int(watched * 25 / 2))
            print(f"[e2e] watched {watched:.0f}s across both: {line}", flush=True)
    finally:
        if pieces is not None:
            pieces.stop()
        node.kubectl("delete", "namespace", DEMO_NS, "--wait=false", check=False)


# --- alerts: the chart's monitors and rule, Prometheus, Alertmanager, a webhook --------

# The monitors' scrape interval, set through the chart's values (its default is 30 s);
# Prometheus evaluates the rule as often. The rule's `for:` and the README's Alertmanager
# timings are untouched.
SCRAPE_SECONDS = 5
MONITOR_VALUES = (
    "metrics.serviceMonitor.enabled=true", "metrics.podMonitor.enabled=true", "metrics.prometheusRule.enabled=true",
    f"metrics.serviceMonitor.interval={SCRAPE_SECONDS}s", f"metrics.serviceMonitor.scrapeTimeout={SCRAPE_SECONDS}s",
    f"metrics.podMonitor.interval={SCRAPE_SECONDS}s", f"metrics.podMonitor.scrapeTimeout={SCRAPE_SECONDS}s",
)  # fmt: skip


def _seconds(duration: str) -> float:
    """A Prometheus duration ("1m", "30s", "1m30s") in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)(ms|s|m|h)", duration))


def _rule(rules: dict[str, Any], alert: str) -> dict[str, Any]:
    return next(r for g in rules["groups"] for r in g["rules"] if r.get("alert") == alert)


def _scraped(alerting: Alerting, ns: str, output: str, operator_pods: list[str]) -> str:
    """'' once Prometheus scrapes every operator replica (the ServiceMonitor's selector
    found them), has the output's phase from the acting one (the standby exports no
    inputs or outputs) and FFmpeg's frames from the output's pod (the PodMonitor's),
    labelled as the chart says; else what is missing."""
    up = alerting.query('up{job="streamdist-metrics"} == 1')
    replicas = sorted(s["metric"].get("pod", "") for s in up)
    phase = alerting.query(f'streamdist_output_phase{{job="streamdist-metrics",namespace="{ns}",output="{output}",phase="Streaming"}} == 1')
    frames = alerting.query(f'streamdist_ffmpeg_frames_total{{namespace="{ns}",output="{output}",input="cam"}}')
    pods = {s["metric"].get("pod") for s in frames if s["metric"]["job"].endswith("/streamdist-outputs")}
    if replicas != operator_pods:
        return f"the operator's replicas scraped: {replicas}, not {operator_pods}"
    if not phase:
        return f"{output}'s Streaming phase from the operator"
    if len(pods) != 1:
        return f"FFmpeg's frames of {output} from the pods {pods}"
    return ""


def test_destination_down_alert_reaches_the_webhook(
    node: NodeCluster, operator: Any, kube: Kubectl, tmp_path: Path
) -> None:
    """The alerting path as a cluster runs it: the pinned Prometheus discovers the
    operator's replicas and the output pods through the API server with the chart's
    ServiceMonitor and PodMonitor as rendered (their selectors, ports and relabelings:
    streamdist_dev.alerting.monitor_scrape_configs) and evaluates the chart's rule as
    rendered; the pinned Alertmanager runs the README's configuration, its webhook URL
    pointed at a receiver here. The destination goes down: StreamdistOutputDown (the
    rule for an output not Streaming) arrives naming the output, its input and
    namespace, with its runbook; the destination comes back: the alert arrives resolved
    (send_resolved), at the group's next group_interval (5 min in the README)."""
    objs = rendered(*(a for v in MONITOR_VALUES for a in ("--set", v)), release=operator.release,
                    namespace=operator.namespace)  # fmt: skip
    rules = chart_rules(objs)
    down_for = _seconds(_rule(rules, "StreamdistOutputDown")["for"])
    with ProcessGroup(tmp_path / "logs") as group, Webhook() as hook:
        am_config = readme_alertmanager_config(hook.url)
        (route,) = am_config["route"]["routes"]
        scrape = monitor_scrape_configs(objs, node.kubeconfig)
        with Alerting(tmp_path / "alerting", rules, scrape, am_config, interval=f"{SCRAPE_SECONDS}s") as alerting:
            _run_destination_down(node, operator, kube, tmp_path, group, hook, alerting, down_for, route)


def _run_destination_down(node: NodeCluster, operator: Any, kube: Kubectl, tmp_path: Path, group: ProcessGroup,
                          hook: Webhook, alerting: Alerting, down_for: float, route: dict[str, Any]) -> None:
    ns = kube.ns
    recv = Receiver(tmp_path / "recv", group, name="dest")
    node.host_service(ns, "dest", recv.service_ports())
    _start_live_input(kube, group)
    kube.apply(_output("tv", "cam", f"rtmp://dest.{ns}.svc:{recv.ports['rtmp']}/live/tv",
                       reconnect={"delaySeconds": 2, "maxDelaySeconds": 10}))  # fmt: skip
    kube.wait("tv Streaming", lambda: _phase(kube, "tv") == "Streaming", 240)
    kube.wait("the destination gets tv", lambda: recv.ready("live/tv"), 60)
    t0 = time.monotonic()
    replicas = sorted(operator.ready_pods())
    waiting.wait_for("Prometheus scraping through the chart's monitors", lambda: not _scraped(alerting, ns, "tv", replicas),
                     120, 1, detail=lambda: f"{_scraped(alerting, ns, 'tv', replicas)}\n{alerting.describe_targets()}")
    print(f"[e2e] Prometheus scrapes both operator replicas, has tv's phase and its pod's frames {time.monotonic() - t0:.1f}s "
          f"after Streaming (scrape every {SCRAPE_SECONDS}s)", flush=True)

    timeline = _Timeline(kube, "tv", time.monotonic())
    recv.kill()
    t_down = time.monotonic()
    # the rule's for:, the route's group_wait, then the operator seeing it, a scrape and an evaluation
    bound = down_for + _seconds(route["group_wait"]) + 60

    def fired() -> list[tuple[float, Any]]:
        timeline.sample()
        return hook.alerts("StreamdistOutputDown", "firing", namespace=ns, output="tv")

    waiting.wait_for("StreamdistOutputDown at the webhook", fired, bound, 1,
                     detail=lambda: f"tv's status:\n{timeline}\n{alerting.describe_targets()}\n{alerting.logs()}")
    (t_fired, alert), *_ = fired()
    print(f"[e2e] destination down -> StreamdistOutputDown at the webhook in {t_fired - t_down:.1f}s (the rule's for: "
          f"{down_for:.0f}s, group_wait {route['group_wait']}, bound {bound:.0f}s); tv's status meanwhile:\n{timeline}",
          flush=True)  # fmt: skip
    _check_alert(hook, alert, ns)
    seen = sorted({(a["labels"]["alertname"], a["labels"].get("pod", "-"), round(t - t_down)) for t, a in hook.alerts(namespace=ns)})
    print(f"[e2e] every alert about {ns} so far (name, pod, seconds after the destination went down): {seen}", flush=True)

    recv.start()
    t_back = time.monotonic()
    kube.wait("tv Streaming again", lambda: _phase(kube, "tv") == "Streaming", 120)
    streaming = time.monotonic() - t_back
    resolved_bound = _seconds(route["group_interval"]) + 60
    t_resolved, resolved = hook.wait_alert("StreamdistOutputDown", resolved_bound, "resolved", namespace=ns, output="tv")
    print(f"[e2e] destination back -> tv Streaming in {streaming:.1f}s, StreamdistOutputDown resolved at the webhook "
          f"in {t_resolved - t_back:.1f}s ({t_resolved - t_fired:.1f}s after the firing notification; group_interval "
          f"{route['group_interval']})", flush=True)  # fmt: skip
    assert resolved["labels"] == alert["labels"], (resolved["labels"], alert["labels"])
    unrelated = {a["labels"]["alertname"] for _, a in hook.alerts()} & {"StreamdistOperatorDown", "StreamdistInputNotReceiving"}
    assert not unrelated, f"{unrelated} fired: {hook.received}"


def _check_alert(hook: Webhook, alert: dict[str, Any], ns: str) -> None:
    """The alert names the output, its input and namespace, and carries its runbook; the
    README's route delivered it."""
    assert {k: alert["labels"].get(k) for k in ("namespace", "output", "input", "severity")} == {
        "namespace": ns, "output": "tv", "input": "cam", "severity": "critical"}, alert["labels"]
    assert alert["annotations"]["summary"] == f"Output {ns}/tv is not streaming", alert["annotations"]
    assert f"kubectl -n {ns} get so tv -o wide" in alert["annotations"]["runbook"], alert["annotations"]
    notification = hook.notification(alert)
    assert notification["receiver"] == "streamdist-webhook" and notification["version"] == "4", notification


def test_control_room_output_added_in_the_browser_streams(
    node: NodeCluster, operator: Any, kube: Kubectl, tmp_path: Path
) -> None:
    """The control room (streamdist ui) in Debian's chromium: the input's card shows its
    latest keyframe (the router's confidence monitor, through the operator's thumbnail
    Service and the page's server, each checking streaminputs/thumbnail); an output added
    with the page's form as a token-bearing ServiceAccount reaches Streaming and its
    destination gets the stream; suspend turns it Suspended. Prints the time from the click."""
    from playwright.sync_api import sync_playwright

    from streamdist_dev.ui import (
        THUMBNAIL_RULES,
        WRITE_RULES,
        UiProcess,
        launch_chromium,
        operator_args,
        page_kubeconfig,
        results_dir,
        service_account,
    )

    with ProcessGroup(tmp_path / "logs") as group:
        recv = Receiver(tmp_path / "recv", group)
        node.host_service(kube.ns, "recv", recv.service_ports())
        _start_live_input(kube, group)
        editor = service_account(kube, kube.ns, "editor", WRITE_RULES + THUMBNAIL_RULES)
        (tmp_path / "page").mkdir()
        page_kc = page_kubeconfig(node.cp, tmp_path / "page", "streamdist-ui-e2e")
        to_operator = operator_args(node.cp.kubectl, operator, "streamdist-ui-e2e", tmp_path / "page")
        with UiProcess(page_kc, tmp_path / "ui", *to_operator) as ui, sync_playwright() as pw:
            browser = launch_chromium(pw)
            try:
                ctx = browser.new_context(viewport={"width": 1280, "height": 900},
                                          extra_http_headers={"Authorization": f"Bearer {editor}"})  # fmt: skip
                page = ctx.new_page()
                page.goto(f"{ui.url}/?namespace={kube.ns}")
                card = page.locator(f'[data-input="{kube.ns}/cam"]')
                card.locator('[data-phase="Live"]').wait_for(timeout=60_000)
                _thumbnail_shown(card, t0=time.monotonic())
                card.get_by_role("button", name="Add output").click()
                dialog = page.locator("#output-dialog")
                dialog.locator("#o-name").fill("web")
                dialog.locator("#o-protocol").select_option("rtmp")
                dialog.locator("#o-url").fill(f"rtmp://recv.{kube.ns}.svc:{recv.ports['rtmp']}/live/web")
                t0 = time.monotonic()
                dialog.get_by_role("button", name="Add output").click()
                row = page.locator(f'[data-output="{kube.ns}/web"]')
                row.wait_for(timeout=30_000)
                shown = time.monotonic() - t0
                row.locator('[data-phase="Streaming"]').wait_for(timeout=180_000)
                streaming = time.monotonic() - t0
                wait_for(lambda: recv.ready("live/web"), 60, interval=0.2, what="the receiver gets the stream")
                received = time.monotonic() - t0
                print(
                    f"[e2e] control room: 'Add output' clicked -> row shown {shown:.2f}s, Streaming in the page "
                    f"{streaming:.1f}s, the receiver has the stream {received:.1f}s (load {os.getloadavg()[0]:.1f})",
                    flush=True,
                )
                page.screenshot(path=str(results_dir("ui") / "node-desktop.png"), full_page=True)
                row.get_by_role("button", name="Suspend").click()
                row.locator('[data-phase="Suspended"]').wait_for(timeout=60_000)
                kube.wait("web's pod gone", lambda: not kube.get("pods", "-l", "streamdist.io/output=web")["items"], 60)
            finally:
                browser.close()
                wait_for(lambda: not recv.ready("live/web"), 30, interval=0.2, what="the suspended output to stop publishing")


def _thumbnail_shown(card: Any, t0: float) -> None:
    """The card's keyframe is a real picture of the monitor's width (the page refreshes it
    every 10 s: one refresh at most after the input went Live), and the monitor's
    conditions, all False, show no problem on the card."""
    thumb = card.locator("img[data-thumb]")
    thumb.wait_for(state="visible", timeout=60_000)
    width, height = thumb.evaluate("(img) => [img.naturalWidth, img.naturalHeight]")
    assert (width, height) == (320, 180), (width, height)
    print(f"[e2e] control room: the input's thumbnail ({width}x{height}) shown {time.monotonic() - t0:.1f}s "
          f"after the card went Live", flush=True)  # fmt: skip
    # A moving, sounding picture is nominal: Black/Frozen/Silent False, shown as no problem.
    from playwright.sync_api import expect

    for kind in ("Black", "Frozen", "Silent"):
        expect(card.locator(f'[data-condition="{kind}"]')).to_have_count(0, timeout=30_000)


def test_nodecost_meters_each_pods_cgroup(node: NodeCluster, kube: Kubectl, tmp_path: Path) -> None:
    """bench/nodecost on this suite's node (the benchmark's smoke run: it needs the node,
    so it runs here and not in tests/bench): each output's and the router's pod cgroup
    is found and metered while the outputs stream."""
    from bench.common import Opts
    from bench.nodecost import measure

    f = measure(node, kube.ns, 3, 10.0, tmp_path, Opts(quick=True, workdir=tmp_path, verbose=False))
    pods = f["pods"]
    assert set(pods) == {"router", "out-0", "out-1", "out-2"}, pods
    for name, p in pods.items():
        assert p["cpu_per_min"] > 0 and p["working_set_mb"] > 0 and p["pss_mb"] > 0, (name, p)
    assert f["delivered_min_mbps"] > 0, f
    print(f"[e2e] nodecost (3 outputs, 10 s): {pods}", flush=True)


def test_the_bridge_keeps_its_address_while_pods_come_and_go(node: NodeCluster, kube: Kubectl) -> None:
    """Runs after the others (pods created and deleted by the dozen): the pods' gateway
    kept one MAC. A bridge whose address was never set takes its lowest port's, and each
    change cuts every pod off from Services and this host until its ARP entry expires."""
    from streamdist_dev.node import BRIDGE, BRIDGE_MAC

    sysfs = Path("/sys/class/net") / BRIDGE
    assert (sysfs / "address").read_text().strip() == BRIDGE_MAC
    assert (sysfs / "addr_assign_type").read_text().strip() == "3", "the bridge address is not a set one"
