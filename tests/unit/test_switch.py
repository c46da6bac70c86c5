"""The backup-source switcher (images/ffmpeg/streamdist_switch.py): API parsing,
freshness, the per-tick decision, the relay command line, and one short real run
against a fake control API and a fake ffmpeg."""

import importlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SWITCH = REPO / "images" / "ffmpeg" / "streamdist_switch.py"
sys.path.insert(0, str(SWITCH.parent))
sw = importlib.import_module("streamdist_switch")
FIXTURES = REPO / "tests" / "fixtures" / "mediamtx"

S = sw.Sample


# ------------------------------------------------------------------ API parsing


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"name": "a", "available": True, "inboundBytes": 10}, S(True, 10)),
        ({"name": "a", "ready": True, "bytesReceived": 7}, S(True, 7)),
        ({"name": "a", "available": False, "ready": True, "inboundBytes": 5, "bytesReceived": 9}, S(False, 5)),
        ({"name": "a", "available": None, "ready": True, "inboundBytes": None, "bytesReceived": 9}, S(True, 9)),
        ({"name": "a", "available": "yes", "inboundBytes": "12"}, S(False, 0)),
        ({"name": "a", "available": True, "inboundBytes": True, "bytesReceived": 3}, S(True, 3)),
        ({"name": "a"}, S(False, 0)),
    ],
)
def test_parse_item(item, expected):
    assert sw.parse_item(item) == expected


def test_parse_paths_real_responses_and_missing_paths():
    live = json.loads((FIXTURES / "paths_list_publisher_readers.json").read_text())
    idle = json.loads((FIXTURES / "paths_list_no_publisher.json").read_text())
    assert sw.parse_paths(live, ["in", "gone"]) == {"in": S(True, 695102), "gone": S(False, 0)}
    assert sw.parse_paths(idle, ["in"]) == {"in": S(False, 0)}
    assert sw.parse_paths({"items": None}, ["in"]) == {"in": S(False, 0)}
    assert sw.parse_paths(
        {"items": [{"name": "cam-primary", "ready": True, "bytesReceived": 4}, "junk"]}, ["cam-primary", "cam-backup"]
    ) == {
        "cam-primary": S(True, 4),
        "cam-backup": S(False, 0),
    }


@pytest.mark.parametrize("doc", [[], "x", None, {"items": {"name": "in"}}])
def test_parse_paths_rejects_unusable_bodies(doc):
    with pytest.raises(sw.ApiError):
        sw.parse_paths(doc, ["in"])


# -------------------------------------------------------------------- freshness


def _run_freshness(rounds, stale=0.5):
    """Feed (t, available, bytes) rounds of one path; return fresh() after each."""
    f = sw.Freshness(stale)
    out = []
    for t, available, nbytes in rounds:
        f.observe(t, {"p": S(available, nbytes)})
        out.append(f.fresh("p", t))
    return out


@pytest.mark.parametrize(
    ("rounds", "expected"),
    [
        # one reading is only a baseline, growth makes it fresh
        ([(0.0, True, 100), (0.1, True, 200)], [False, True]),
        # no growth: a silent source still "available" is never fresh
        ([(0.0, True, 100), (0.1, True, 100), (0.2, True, 100)], [False, False, False]),
        # silence: fresh until stale_seconds after the last growth, inclusive
        (
            [(0.0, True, 1), (0.1, True, 2), (0.5, True, 2), (0.6, True, 2), (0.7, True, 2)],
            [False, True, True, True, False],
        ),
        # growth again after staleness
        ([(0.0, True, 1), (0.1, True, 2), (1.0, True, 2), (1.1, True, 3)], [False, True, False, True]),
        # unavailable is never fresh, even with growing bytes
        ([(0.0, True, 1), (0.1, True, 2), (0.2, False, 3)], [False, True, False]),
        # a source coming back: 0 -> n on its first available sample is growth
        ([(0.0, False, 0), (0.1, True, 500)], [False, True]),
        ([(0.0, True, 1), (0.1, True, 2), (0.2, False, 0), (0.3, True, 2)], [False, True, False, True]),
        # (even if the unavailable path still showed its old counter)
        ([(0.0, True, 1), (0.1, True, 2), (0.2, False, 2), (0.3, True, 2)], [False, True, False, True]),
        # ... but available with 0 bytes is not
        ([(0.0, False, 0), (0.1, True, 0), (0.2, True, 0)], [False, False, False]),
        # counter reset (new stream): any positive value is growth, zero is not
        ([(0.0, True, 900), (0.1, True, 40)], [False, True]),
        ([(0.0, True, 900), (0.1, True, 0)], [False, False]),
    ],
)
def test_freshness(rounds, expected):
    assert _run_freshness(rounds) == expected


def test_freshness_stale_seconds_is_configurable():
    assert _run_freshness([(0.0, True, 1), (0.1, True, 2), (1.1, True, 2), (1.2, True, 2)], stale=1.0) == [
        False,
        True,
        True,
        False,
    ]


def test_freshness_warm_and_reset():
    f = sw.Freshness()
    both = {"a": S(True, 1), "b": S(False, 0)}
    assert not f.warm
    f.observe(0.0, both)
    assert not f.warm
    f.observe(0.1, {"a": S(True, 2), "b": S(False, 0)})
    assert f.warm
    assert (f.fresh("a", 0.1), f.fresh("b", 0.1), f.fresh("unknown", 0.1)) == (True, False, False)
    f.reset()  # after an API outage: baselines forgotten
    assert not f.warm
    assert not f.fresh("a", 0.1)
    f.observe(5.0, {"a": S(True, 90), "b": S(False, 0)})
    assert (f.warm, f.fresh("a", 5.0)) == (False, False)
    f.observe(5.1, {"a": S(True, 95), "b": S(False, 0)})
    assert (f.warm, f.fresh("a", 5.1)) == (True, True)


# ----------------------------------------------------------------- want / argv


@pytest.mark.parametrize(
    ("primary", "backup", "expected"),
    [(True, True, "primary"), (True, False, "primary"), (False, True, "backup"), (False, False, None)],
)
def test_want(primary, backup, expected):
    assert sw.want(primary, backup) == expected


def test_relay_argv():
    assert sw.relay_argv("ffmpeg", "rtsp://127.0.0.1:8554", "cam-backup", "cam", "backup") == [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "warning",
        "-rtsp_transport", "tcp", "-timeout", "2000000", "-analyzeduration", "100000",
        "-i", "rtsp://127.0.0.1:8554/cam-backup",
        "-map", "0", "-c", "copy",
        "-f", "rtsp", "-rtsp_transport", "tcp", "rtsp://127.0.0.1:8554/cam?streamdist=backup",
    ]  # fmt: skip
    argv = sw.relay_argv("/usr/bin/ffmpeg", "rtsp://127.0.0.1:8554/", "a/b-primary", "a/b", "primary")
    assert argv[0] == "/usr/bin/ffmpeg"
    assert argv[argv.index("-i") + 1] == "rtsp://127.0.0.1:8554/a/b-primary"
    assert argv[-1] == "rtsp://127.0.0.1:8554/a/b?streamdist=primary"


# ------------------------------------------------------------ one tick's plan

A = sw.Action


@pytest.mark.parametrize(
    ("wanted", "running", "last_start", "now", "expected"),
    [
        # nothing running, nothing wanted
        (None, {}, {}, 10.0, A()),
        # first start
        ("primary", {}, {}, 10.0, A(start="primary")),
        # steady state
        ("primary", {"primary": 9.0}, {"primary": 9.0}, 10.0, A()),
        # primary went stale: start the backup, leave the primary relay to be kicked
        ("backup", {"primary": 1.0}, {"primary": 1.0}, 10.0, A(start="backup")),
        # primary back: start it first, the backup relay is kicked by MediaMTX (no gap)
        ("primary", {"backup": 5.0}, {"primary": 1.0, "backup": 5.0}, 10.0, A(start="primary")),
        # the old relay not kicked yet: still left alone before the handover time
        ("primary", {"primary": 8.0, "backup": 5.0}, {"primary": 8.0, "backup": 5.0}, 10.0, A()),
        # ... and stopped after it
        ("primary", {"primary": 5.0, "backup": 4.0}, {"primary": 5.0, "backup": 4.0}, 10.0, A(stop=("backup",))),
        # nothing fresh: stop every relay so the slate plays
        (None, {"primary": 1.0}, {"primary": 1.0}, 10.0, A(stop=("primary",))),
        (None, {"primary": 1.0, "backup": 2.0}, {"primary": 1.0, "backup": 2.0}, 10.0, A(stop=("backup", "primary"))),
        # the wanted relay exited: restart, at most once per retry
        ("primary", {}, {"primary": 9.7}, 10.0, A()),
        ("primary", {}, {"primary": 9.5}, 10.0, A(start="primary")),
        # ... while the other one (not kicked, since the new one never published) stays
        ("primary", {"backup": 5.0}, {"primary": 9.8, "backup": 5.0}, 10.0, A()),
        # want flips back to a relay still running: adopt it, start nothing
        ("backup", {"backup": 5.0}, {"primary": 9.9, "backup": 5.0}, 10.0, A()),
    ],
)
def test_plan_tick(wanted, running, last_start, now, expected):
    assert sw.plan_tick(wanted, running, last_start, now, retry=0.5, handover=5.0) == expected


# ------------------------------------------------------------------ CLI, logs


def test_log_line():
    assert sw.log_line("switch", **{"from": "primary", "to": None}) == "event=switch from=primary to=none"
    assert sw.log_line("relay-exit", role="backup", pid=12, code=-2) == "event=relay-exit role=backup pid=12 code=-2"
    assert (
        sw.log_line("api-error", error="[Errno 111] Connection refused", x="")
        == 'event=api-error error="[Errno 111] Connection refused" x=""'
    )
    assert sw.log_line("e", u="http://h/p?a=b") == 'event=e u="http://h/p?a=b"'


def test_parse_args_defaults_and_overrides():
    a = sw.parse_args(["--path", "cam"])
    assert (a.path, a.primary, a.backup, a.api, a.rtsp, a.ffmpeg) == (
        "cam", "cam-primary", "cam-backup", "http://127.0.0.1:9997", "rtsp://127.0.0.1:8554", "ffmpeg",
    )  # fmt: skip
    assert (a.interval, a.stale, a.retry, a.handover) == (0.1, 0.3, 0.5, 5.0)
    b = sw.parse_args(["--path", "cam", "--primary", "p", "--backup", "b", "--interval", "0.25"])
    assert (b.primary, b.backup, b.interval) == ("p", "b", 0.25)


@pytest.mark.parametrize("bad", [["--path", "cam", "--interval", "0"], ["--path", "cam", "--stale", "nan"], []])
def test_parse_args_rejects(bad):
    with pytest.raises(SystemExit) as exc:
        sw.parse_args(bad)
    assert exc.value.code == 2


def test_script_is_stdlib_only_and_executable_by_debian_python():
    text = SWITCH.read_text()
    assert text.startswith("#!/usr/bin/python3\n")
    imported = set(re.findall(r"^\s*(?:import|from) ([a-zA-Z_]+)", text, re.M))
    assert imported <= {
        "__future__", "argparse", "collections", "ctypes", "dataclasses", "json", "math", "os", "signal",
        "subprocess", "sys", "threading", "time", "types", "typing", "urllib",
    }  # fmt: skip


# ----------------------------------------------- a short real run, fake servers


class _FakeApi:
    """A /v3/paths/list whose paths' counters grow on every request while 'live'."""

    def __init__(self):
        self.live: set[str] = set()
        self.down = False
        self.bytes: dict[str, int] = {}
        self.lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body, code = api.answer(self.path)
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, path):
        with self.lock:
            if self.down or not path.startswith("/v3/paths/list"):
                return b'{"error":"down"}', 500
            items = [{"name": "cam", "available": True, "online": False, "inboundBytes": 0}]
            for name in sorted(self.live):
                self.bytes[name] = self.bytes.get(name, 0) + 1316
                items.append({"name": name, "available": True, "online": True, "inboundBytes": self.bytes[name]})
            return json.dumps({"pageCount": 1, "itemCount": len(items), "items": items}).encode(), 200

    def set(self, live=(), down=False):
        with self.lock:
            self.live = set(live)
            self.down = down
            self.bytes = {k: v for k, v in self.bytes.items() if k in self.live}


class _Lines:
    """The switcher's stdout, line by line, waited on with a timeout."""

    def __init__(self, stream):
        self.q: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream):
        for line in stream:
            self.q.put(line.rstrip("\n"))

    def wait(self, pattern, timeout=5.0):
        while True:
            try:
                line = self.q.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r}; seen: {self.seen}") from None
            self.seen.append(line)
            if re.search(pattern, line):
                return line


def test_real_run_switches_hands_over_and_stops_everything(tmp_path):
    api = _FakeApi()
    calls = tmp_path / "calls"
    fake = tmp_path / "ffmpeg"
    fake.write_text(f'#!/bin/sh\necho "$$ $*" >> {calls}\nexec sleep 30\n')
    fake.chmod(0o755)
    proc = subprocess.Popen(
        [sys.executable, str(SWITCH), "--path", "cam", "--api", api.url, "--ffmpeg", str(fake), "--handover", "0.6", "--retry", "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "http_proxy": "http://127.0.0.1:1"},
    )  # fmt: skip
    lines = _Lines(proc.stdout)
    try:
        lines.wait(r"^event=started path=cam primary=cam-primary backup=cam-backup ")
        api.set(live=["cam-primary", "cam-backup"])
        assert lines.wait(r"^event=switch") == "event=switch from=none to=primary"
        primary = lines.wait(r"^event=relay-start")
        assert re.fullmatch(r"event=relay-start role=primary pid=\d+ source=cam-primary target=cam", primary)
        # the primary goes away: the backup relay starts, the primary relay is left
        # to be kicked, and stopped only after the handover time (the fake never is)
        api.set(live=["cam-backup"])
        assert lines.wait(r"^event=switch") == "event=switch from=primary to=backup"
        assert re.fullmatch(
            r"event=relay-start role=backup pid=\d+ source=cam-backup target=cam", lines.wait(r"^event=relay-")
        )
        assert re.fullmatch(r"event=relay-stop role=primary pid=\d+ reason=handover", lines.wait(r"^event=relay-"))
        assert re.fullmatch(r"event=relay-exit role=primary pid=\d+ code=-2", lines.wait(r"^event=relay-"))
        # nothing fresh: the backup relay is stopped, the slate plays
        api.set(live=[])
        assert lines.wait(r"^event=switch") == "event=switch from=backup to=none"
        assert re.fullmatch(r"event=relay-stop role=backup pid=\d+ reason=no-source", lines.wait(r"^event=relay-"))
        assert re.fullmatch(r"event=relay-exit role=backup pid=\d+ code=-2", lines.wait(r"^event=relay-"))
        # an API outage is logged once, and its end once
        api.set(down=True)
        assert lines.wait(r"^event=api") == f'event=api-error api={api.url} error="HTTP 500"'
        api.set(live=["cam-primary"])
        assert lines.wait(r"^event=api") == f"event=api-recovered api={api.url}"
        assert lines.wait(r"^event=switch") == "event=switch from=none to=primary"
        lines.wait(r"^event=relay-start role=primary ")
        deadline = time.monotonic() + 5  # the fake relay has run far enough to say so
        while len(calls.read_text().splitlines()) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        tail = [lines.q.get(timeout=1) for _ in range(4)]
        assert tail[0] == "event=signal name=SIGTERM"
        assert re.fullmatch(r"event=relay-stop role=primary pid=\d+ reason=shutdown", tail[1])
        assert re.fullmatch(r"event=relay-exit role=primary pid=\d+ code=-2", tail[2])
        assert tail[3] == "event=stopped"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        api.server.shutdown()
    assert not any("api-error" in ln for ln in lines.seen[lines.seen.index(f"event=api-recovered api={api.url}") :])
    assert sum(ln.startswith("event=api-error") for ln in lines.seen) == 1
    started = [ln.split(" ", 1) for ln in calls.read_text().splitlines()]
    assert [argv for _, argv in started] == [
        " ".join(sw.relay_argv(str(fake), "rtsp://127.0.0.1:8554", f"cam-{role}", "cam", role)[1:])
        for role in ("primary", "backup", "primary")
    ]
    for pid, _ in started:  # every relay it started is gone
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
