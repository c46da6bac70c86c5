"""What the operator takes from the backup switch's GET /v1/state (switch_state), and
the switch-gap histogram it feeds (metrics)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import REGISTRY

from streamdist import metrics, switch_state
from streamdist.switch_state import Switched, SwitchState, SwitchStateError

DOC = {
    "onAir": "backup",
    "switches": [
        {"seq": 1, "from": None, "to": "primary", "gapMs": None, "reason": "start", "at": "2026-11-29T10:00:00.000Z"},
        {"seq": 2, "from": "primary", "to": "backup", "gapMs": 312, "reason": "lost", "at": "2026-11-29T10:00:05.120Z"},
        {"seq": 3, "from": "backup", "to": "backup", "gapMs": 40, "reason": "returned", "at": "2026-11-29T10:00:06.000Z"},
        {"seq": 4, "from": "backup", "to": "nonsense", "gapMs": 1, "at": "2026-11-29T10:00:07.000Z"},
        {"seq": 5, "from": "backup", "to": "slate", "gapMs": -5, "reason": "lost", "at": "2026-11-29T10:00:08.000Z"},
        "junk",
    ],
}


def test_parse_keeps_real_changes_only():
    state = switch_state.parse(DOC)
    assert state.on_air == "backup"
    assert state.switches == (
        Switched("primary", None, None, "start", "2026-11-29T10:00:00.000Z"),
        Switched("backup", "primary", 312, "lost", "2026-11-29T10:00:05.120Z"),
        Switched("slate", "backup", None, "lost", "2026-11-29T10:00:08.000Z"),
    )
    assert switch_state.parse({"onAir": "elsewhere"}) == SwitchState(None)
    with pytest.raises(SwitchStateError):
        switch_state.parse([])


@pytest.mark.parametrize(("last_at", "limit", "tos"), [
    (None, 5, ["backup", "slate"]),  # the start is no switch
    ("2026-11-29T10:00:05.120Z", 5, ["slate"]),
    ("2026-11-29T10:00:08.000Z", 5, []),
    (None, 1, ["slate"]),  # a flapping source cannot flood Events
])  # fmt: skip
def test_new_switches_after_the_last_in_status(last_at, limit, tos):
    state = switch_state.parse(DOC)
    assert [s.to for s in switch_state.new_switches(state, last_at, limit)] == tos


def test_fetch_sends_the_operators_credential():
    seen = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen["auth"], seen["path"] = self.headers.get("Authorization"), self.path
            body = json.dumps(DOC).encode() if self.headers.get("Authorization") else b"{}"
            self.send_response(200 if self.headers.get("Authorization") else 401)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        state = switch_state.fetch("127.0.0.1", server.server_address[1], "streamdist", "pw")
        assert state.on_air == "backup" and seen == {"auth": "Basic c3RyZWFtZGlzdDpwdw==", "path": "/v1/state"}
    finally:
        server.shutdown()
    with pytest.raises(SwitchStateError, match="switch state"):
        switch_state.fetch("127.0.0.1", 1, "u", "p", timeout=0.5)


def test_gaps_land_in_the_histogram_per_input_and_target_and_go_with_the_input():
    labels = {"namespace": "hist", "input": "cam", "to": "backup"}
    metrics.observe_switch_gaps("hist", "cam", (("backup", 312), ("backup", 280), ("primary", 40)))
    assert REGISTRY.get_sample_value("streamdist_input_switch_gap_seconds_count", labels) == 2
    assert REGISTRY.get_sample_value("streamdist_input_switch_gap_seconds_sum", labels) == pytest.approx(0.592)
    assert REGISTRY.get_sample_value("streamdist_input_switch_gap_seconds_bucket", {**labels, "le": "0.3"}) == 1
    metrics.forget_input("hist", "cam")
    assert REGISTRY.get_sample_value("streamdist_input_switch_gap_seconds_count", labels) is None
