"""A router that answers badly cannot hold the operator: real HTTP servers on loopback
that drip-feed, stay silent, answer too much, redirect or claim endless pages, against
the client the health poll uses, and the poll of a good router beside a bad one."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from streamdist import mediamtx, render
from streamdist.handlers import context, health
from streamdist.handlers.memory import Applied, InputKey
from streamdist.settings import Settings

DEADLINE = 1.0
OK_PATH = {"name": "cam", "available": True, "online": True, "tracks2": [{"codec": "H264"}], "readers": []}


@contextmanager
def server(handle: Callable[[socket.socket], None], host: str = "127.0.0.1", port: int = 0) -> Iterator[int]:
    """A TCP server whose every connection `handle` serves, in a thread; stopped after."""
    listener = socket.create_server((host, port))
    listener.settimeout(0.2)
    stop = threading.Event()
    served: list[threading.Thread] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            thread = threading.Thread(target=_serve, args=(handle, conn, stop), daemon=True)
            thread.start()
            served.append(thread)

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        acceptor.join(5)
        for thread in served:
            thread.join(5)
        listener.close()


def _serve(handle: Callable[[socket.socket], None], conn: socket.socket, stop: threading.Event) -> None:
    with conn:
        conn.settimeout(5)
        try:
            conn.recv(65536)
            handle(conn)
        except OSError:
            pass


def _reply(body: bytes, status: str = "200 OK", extra: str = "") -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


def drip_body(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
    for _ in range(100):
        conn.sendall(b" ")
        time.sleep(0.2)


def drip_headers(conn: socket.socket) -> None:
    for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100:
        conn.sendall(bytes([byte]))
        time.sleep(0.2)


def silent(conn: socket.socket) -> None:
    time.sleep(DEADLINE * 6)


def huge(conn: socket.socket) -> None:
    body = b"[" + b"0," * (mediamtx.MAX_REPLY_BYTES // 2 + 1) + b"0]"
    conn.sendall(_reply(body))


def redirect(conn: socket.socket) -> None:
    conn.sendall(_reply(b"", "302 Found", "Location: http://169.254.169.254/\r\n"))


def good(conn: socket.socket) -> None:
    conn.sendall(_reply(json.dumps(OK_PATH).encode()))


@pytest.mark.parametrize("handle", [drip_body, drip_headers, silent], ids=lambda h: h.__name__)
def test_one_deadline_per_request(handle):
    with server(handle) as port:
        client = mediamtx.MediaMTXClient(f"http://127.0.0.1:{port}", timeout=DEADLINE)
        started = time.monotonic()
        with pytest.raises(mediamtx.MediaMTXAPIError, match="no complete reply within the deadline"):
            client.get_json("/v3/paths/get/cam")
        assert time.monotonic() - started < DEADLINE + 2.0  # the servers hold on for 4 s or more


def test_a_reply_too_large_is_refused():
    with server(huge) as port, pytest.raises(mediamtx.MediaMTXAPIError, match="larger than"):
        mediamtx.MediaMTXClient(f"http://127.0.0.1:{port}", timeout=10).get_json("/v3/paths/list")


def test_redirects_are_not_followed():
    with server(redirect) as port, pytest.raises(mediamtx.MediaMTXAPIError, match="HTTP 302") as err:
        mediamtx.MediaMTXClient(f"http://127.0.0.1:{port}", timeout=DEADLINE).get_json("/v3/paths/list")
    assert err.value.status == 302


def test_page_count_is_not_trusted():
    requests: list[int] = []

    def endless(conn: socket.socket) -> None:
        requests.append(1)
        conn.sendall(_reply(json.dumps({"pageCount": 10**9, "items": [{"id": "x"}]}).encode()))

    with server(endless) as port:
        items = mediamtx.MediaMTXClient(f"http://127.0.0.1:{port}", timeout=DEADLINE)._list_all("/v3/rtspsessions/list")
    assert len(items) == len(requests) == mediamtx.MAX_PAGES


def test_a_hostile_router_does_not_stall_the_poll_of_a_good_one():
    """Both behind the operator's real poll (handlers.health), on the API port it uses."""
    ctx = context.Context(kube=None, settings=Settings(health_poll=True))  # type: ignore[arg-type]
    ctx.idx.inputs = {("ns", "good"): [{}], ("ns", "bad"): [{}]}
    with server(good, "127.0.9.1", render.API_PORT), server(drip_body, "127.0.9.2", render.API_PORT):
        ctx.memory.input(InputKey("ns", "good")).applied = Applied("d", (), "127.0.9.1", api_auth=("u", "p"))
        ctx.memory.input(InputKey("ns", "bad")).applied = Applied("d", (), "127.0.9.2", api_auth=("u", "p"))
        started = time.monotonic()
        health.poll_all(ctx)
        took = time.monotonic() - started
    assert took < health.POLL_TIMEOUT * 2 + 2, took  # the drip alone would take 20 s
    good_seen = ctx.memory.input(InputKey("ns", "good")).observation
    bad_seen = ctx.memory.input(InputKey("ns", "bad")).observation
    assert good_seen is not None and good_seen.health is not None and good_seen.health.ready
    assert bad_seen is not None and bad_seen.health is None and "deadline" in bad_seen.error
