"""Reading every running output pod's own metrics (its telemetry) into memory.

Runs from its own periodic loop (settings.telemetry_seconds). Each pod's page is small
(about 20 samples); it is read with one bounded request (connect, send, every read
within TELEMETRY_TIMEOUT, at most MAX_PAGE bytes: a pod cannot hold the poll) and only
its summary is kept (memory.OutputTelemetry). The output's reconcile turns the summary
into status: the resync picks it up, nothing here writes to the API.
"""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from .. import telemetry
from .context import Context
from .memory import OutputKey, OutputTelemetry

TELEMETRY_TIMEOUT = 1.0
MAX_PAGE = 64 * 1024
WORKERS = 16
# A pod keeps its last record through this many failed reads in a row: one late answer
# (a busy node, a busy operator) is not news, and dropping the record would flip status
# to NoTelemetry and back, two status writes per hiccup per output (bench/telemetry.py
# saw that at load 10 on two cores). Counted in reads, not seconds: a poll round of
# many pods takes longer on a busy operator. A pod silent for longer is NoTelemetry; a
# new pod never inherits its predecessor's record.
MISSED_READS = 3


def poll_all(ctx: Context) -> int:
    """Read every running output pod once; returns how many answered."""
    if not ctx.settings.telemetry:
        return 0
    targets = [t for key in ctx.idx.keys(ctx.idx.outputs) if (t := _target(ctx, OutputKey(*key)))]
    if not targets:
        return 0
    with ThreadPoolExecutor(max_workers=min(WORKERS, len(targets))) as pool:
        return sum(pool.map(lambda t: poll(ctx, *t), targets))


def _target(ctx: Context, key: OutputKey) -> tuple[OutputKey, str, str, bool] | None:
    """(key, pod name, pod IP, SRT listener) of an output whose pod runs."""
    for pod in ctx.idx.all(ctx.idx.pods, (key.namespace, key.name)):
        status: dict[str, Any] = pod.get("status") or {}
        if pod["metadata"].get("deletionTimestamp") or status.get("phase") != "Running" or not status.get("podIP"):
            continue
        body = ctx.idx.one(ctx.idx.outputs, (key.namespace, key.name)) or {}
        listener = (body.get("status") or {}).get("protocol") == "srt-listener"  # resolved, even from a Secret
        return key, pod["metadata"]["name"], str(status["podIP"]), listener
    ctx.memory.output(key).telemetry = None
    return None


def poll(ctx: Context, key: OutputKey, pod: str, ip: str, listener: bool) -> bool:
    """One read of one pod; the record is replaced whole (or dropped when unreadable)."""
    memory = ctx.memory.output(key)
    try:
        page = fetch(ip, ctx.settings.telemetry_port)
    except (OSError, ValueError):
        kept = memory.telemetry
        if kept is None or kept.sample.pod != pod or kept.missed >= MISSED_READS:
            memory.telemetry = None
        else:
            memory.telemetry = replace(kept, missed=kept.missed + 1)
        return False
    before = memory.telemetry
    current = telemetry.sample(pod, time.monotonic(), telemetry.parse_exposition(page))
    previous = before.sample if before else None
    memory.telemetry = OutputTelemetry(current, telemetry.summarize(previous, current, listener))
    return True


def fetch(host: str, port: int, timeout: float = TELEMETRY_TIMEOUT) -> str:
    """GET /metrics within one deadline for the whole exchange; the body as text."""
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(b"GET /metrics HTTP/1.0\r\nHost: pod\r\nAccept: text/plain\r\n\r\n")
        chunks, size = [], 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ValueError("no complete reply within the deadline")
            sock.settimeout(left)
            chunk = sock.recv(16384)
            if not chunk:
                break
            size += len(chunk)
            if size > MAX_PAGE:
                raise ValueError("reply too large")
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    if not head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")):
        raise ValueError("not a 200 reply")
    return body.decode("utf-8", "replace")

