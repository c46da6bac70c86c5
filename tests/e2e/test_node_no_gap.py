"""Outputs added and removed without touching the others, measured at the receivers.

19 outputs stream from one input to 19 paths of a host receiver (RTSP publish); each
path is recorded. Meanwhile a 20th output is added and one of the 19 is deleted. From
the recorded video timestamps of the 18 untouched outputs, the longest gap between two
consecutive frames must stay under 0.5 s: the new pod and the deleted one change no
router config and no other pod.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import time
from pathlib import Path

import pytest
from tests.e2e.conftest import Kube
from tests.e2e.test_node_streaming import Receiver, _all_streaming, _output, _start_live_input
from tests.harness.media import ProcessGroup
from tests.harness.node import NodeCluster

pytestmark = [pytest.mark.timeout(1800)]

OTHERS = 19
MAX_GAP = 0.5
RECORD = 40.0
SKIP = 50  # packets (2 s at 25 fps)


def _video_pts(path: Path) -> list[float]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time", "-of", "json",
         str(path)],
        capture_output=True, text=True, timeout=120, check=True,
    )
    return sorted(float(p["pts_time"]) for p in json.loads(out.stdout).get("packets", []) if "pts_time" in p)


def test_adding_and_deleting_outputs_leaves_the_others_without_gaps(
    node: NodeCluster, kube: Kube, tmp_path: Path
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
        print(f"[e2e] longest frame gap over the 18 untouched outputs: {gaps[worst]:.3f}s ({worst}); "
              f"median of their maxima {sorted(gaps.values())[len(gaps) // 2]:.3f}s", flush=True)
        assert gaps[worst] < MAX_GAP, f"{worst} saw a {gaps[worst]:.3f}s gap: {gaps}"
