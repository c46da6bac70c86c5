"""The telemetry poll against a real local page: a missed read keeps the pod's last
record for a few periods (one late answer must not flip status to NoTelemetry and
back: two writes per hiccup per output, as bench/telemetry.py saw on a loaded machine),
a pod silent for longer loses it, and a new pod never inherits its predecessor's."""

import socket
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from test_telemetry import PAGE

from streamdist.handlers import context, telemetry
from streamdist.handlers.memory import OutputKey
from streamdist.settings import Settings

KEY = OutputKey("live", "far")


class Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = PAGE.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _ctx(port: int) -> context.Context:
    settings = Settings(telemetry=True, telemetry_seconds=10.0, telemetry_port=port)
    return context.Context(kube=None, settings=settings)  # type: ignore[arg-type]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once closed


def test_a_missed_read_keeps_the_record_a_new_pod_or_a_long_silence_drops_it():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ctx = _ctx(int(server.server_address[1]))
        assert telemetry.poll(ctx, KEY, "far-1", "127.0.0.1", False)
        record = ctx.memory.output(KEY).telemetry
        assert record is not None and record.summary.link == "Up" and record.summary.rtt_ms == 20.765
    finally:
        server.shutdown()
        server.server_close()

    ctx.settings = replace(ctx.settings, telemetry_port=_closed_port())
    for missed in range(1, telemetry.MISSED_READS + 1):
        assert not telemetry.poll(ctx, KEY, "far-1", "127.0.0.1", False)
        kept = ctx.memory.output(KEY).telemetry
        assert kept is not None, f"{missed} missed read(s) are not news"
        assert (kept.sample, kept.summary, kept.missed) == (record.sample, record.summary, missed)

    # silent for one read more: no telemetry
    assert not telemetry.poll(ctx, KEY, "far-1", "127.0.0.1", False)
    assert ctx.memory.output(KEY).telemetry is None

    # a replaced pod that does not answer yet shows nothing of its predecessor
    ctx.memory.output(KEY).telemetry = record
    assert not telemetry.poll(ctx, KEY, "far-2", "127.0.0.1", False)
    assert ctx.memory.output(KEY).telemetry is None
