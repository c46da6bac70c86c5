"""Smoke run of every benchmark at its smallest size (``python -m bench --quick``), so
``make bench`` keeps working (nodecost, which needs the local real node, has its smoke
run in tests/e2e on that suite's node). Asserts that each ran and produced its figures, never a
speed target: the machine running ``make test`` is small and busy."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

import bench
from bench.common import Opts, Result
from streamdist_dev import media

CLUSTER = ("scale", "steady", "restart", "schedule", "telemetry")
MEDIA = ("mediacost", "mediaprofile", "recovery", "latency", "failover", "confidence")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not (isinstance(value, float) and math.isnan(value))


def _run(name: str, tmp_path: Path) -> Result:
    res = bench.run_one(name, Opts(quick=True, workdir=tmp_path, verbose=False))
    print(res.text())  # the table, in the test's captured output
    assert not res.error, res.error
    assert res.tables and all(t.rows for t in res.tables), res.text()
    assert res.load_before and res.load_after
    return res


@pytest.mark.cluster
@pytest.mark.parametrize("name", CLUSTER)
def test_cluster_benchmark(name: str, tmp_path: Path) -> None:
    res = _run(name, tmp_path)
    f = res.figures
    if name == "scale":
        (size,) = f.values()
        assert size["pods_seen"] == size["outputs"] and size["settled"], size
        assert all(_number(v) for v in (*size["apply_pod"], *size["so_pod"], size["rss_mb"], size["cpu_s"]))
        assert size["writes"] > 0 and size["rss_mb"] > 0
    elif name == "schedule":
        assert f["pods_seen"] == f["outputs"] and f["stops_seen"] == f["outputs"], f
        assert f["early"] == 0, "no pod before its window, no stop before its end"
        assert all(_number(v) for v in (*f["start"], *f["stop"], f["cpu_s"], f["margin_s"])), f
    elif name == "steady":
        assert f["window_s"] >= 29 and _number(f["cpu_per_min"]) and _number(f["status_patches_per_min"])
    elif name == "telemetry":
        off, on = f["off"], f["on"]
        assert off["pages_per_min"] == 0 and off["window_s"] >= 29
        # on: every pod read about every 10 s (6 a minute), and every healthy output stays so
        assert on["pages_per_min"] >= 3 * on["outputs"], on["pages_per_min"]
        assert on["degraded"] == 0 and on["streaming_after"] == on["outputs"], on
        assert all(_number(x[k]) for x in (off, on) for k in ("cpu_per_min", "rss_mb", "status_patches_per_min"))
    else:
        assert _number(f["readopted_s"]) and f["pods_before"] == f["outputs"], f
        assert _number(f["reconnects_after"]) and _number(f["cpu_s"])


@pytest.mark.media
@pytest.mark.parametrize("name", MEDIA)
def test_media_benchmark(name: str, tmp_path: Path) -> None:
    media.require_media_tools()
    res = _run(name, tmp_path)
    f = res.figures
    if name == "mediacost":
        (size,) = f["sizes"].values()
        for v in ("ours", "tee", "forward", "direct"):
            assert size[v]["cpu_per_min"] > 0 and size[v]["pss_mb"] > 0, (v, size[v])
            assert size[v]["delivered_min_mbps"] > 0, (v, size[v])
            assert _number(size[v]["router_cpu_per_reader"]), (v, size[v])
            assert v == "direct" or isinstance(size[v]["interruptions"], int), (v, size[v])
        # the outputs were metered with the FFmpeg their wrapper runs
        assert {"ffmpeg", "streamdist-ffmp"} <= set(size["ours"]["members"]), size["ours"]["members"]
        assert size["ours"]["own_pss_mb"] > 0
        assert all(_number(r) for r in size["ratios"].values())
    elif name == "mediaprofile":
        c = f["syscalls"]
        assert _number(c["packets_per_s"]) and c["packets_per_s"] > 0 and c["readers"] == f["outputs"], c
        for who in ("output FFmpeg", "router"):
            assert c["counts"][who]["all syscalls"] > 0, (who, c["counts"][who])
        assert f["perf"]["ffmpeg"] and f["perf"]["mediamtx"]
        assert all(f["callgrind"][k] > 0 for k in ("loader", "setup", "probe", "relay")), f["callgrind"]
    elif name == "recovery":
        for key, o in f.items():
            assert _number(o["recovered_s"]), (key, o)
    elif name == "confidence":
        assert f["alive"] and f["cpu_per_min"] > 0 and f["pss_mb"] > 0 and f["processes"] == 2, f
        assert f["thumbnail_age"] is not None and f["thumbnail_age"] < 5, f  # keyframes decoded to the end
    elif name == "failover":
        (run,) = f.values()
        assert run["switches"] >= 2 * run["cycles"], run  # each cycle: to the backup and back
        assert all(_number(v) for v in (*run["to_backup"], *run["to_primary"], run["switch_cpu_s"])), run
        assert run["slate_cpu"] and run["measured"].get("backup"), run
    else:
        assert f["sent"] > 0
        for p in ("udp", "srt", "rtmp", "rtsp"):
            assert f[p]["matched"] > 0 and _number(f[p]["relay"][0]), (p, f[p])
