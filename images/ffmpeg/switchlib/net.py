"""The switch's two HTTP ends, both non-blocking on the one selector loop (a blocked
socket must never hold frames back):

* ``ApiPoll``: GET MediaMTX's ``/v3/paths/list`` on the pod's loopback (user ``any``
  from 127.0.0.1 may): which ingest paths have a source, so readers start only then;
* ``StateServer``: ``GET /v1/state`` for the operator (what is on air, every switch
  with its measured gap). Only the operator's control-API credential gets an answer:
  it is checked against the MediaMTX ``sha256:`` hash the router's ConfigMap holds
  (``switch-credential.json``), so the switch holds no password either.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import hmac
import json
import selectors
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_REQUEST = 8192
MAX_RESPONSE = 4 << 20


def hashed(value: str) -> str:
    """MediaMTX's ``sha256:`` form of a credential: base64 of its SHA-256."""
    return "sha256:" + base64.b64encode(hashlib.sha256(value.encode()).digest()).decode()


@dataclass(frozen=True)
class Credential:
    user: str
    hashed_password: str

    @classmethod
    def load(cls, path: Path) -> Credential | None:
        """``{"user": ..., "pass": "sha256:..."}``; None when missing or malformed."""
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(doc, Mapping) or not isinstance(doc.get("user"), str):
            return None
        password = doc.get("pass")
        if not isinstance(password, str) or not password.startswith("sha256:"):
            return None
        return cls(doc["user"], password)

    def allows(self, authorization: str | None) -> bool:
        """Whether an ``Authorization: Basic ...`` header carries this credential."""
        if not authorization or not authorization.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(authorization[6:].strip(), validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        same_user = hmac.compare_digest(user.encode(), self.user.encode())
        return hmac.compare_digest(hashed(password).encode(), self.hashed_password.encode()) and same_user


# ------------------------------------------------------------------- API client


class ApiPoll:
    """One GET at a time against MediaMTX's API; ``done(doc | None, error)`` at the end."""

    def __init__(self, selector: selectors.BaseSelector, host: str, port: int, path: str, timeout: float = 1.0,
                 done: Callable[[Any, str | None], None] | None = None) -> None:  # fmt: skip
        self.selector, self.address, self.path, self.timeout = selector, (host, port), path, timeout
        self.done = done or (lambda doc, error: None)
        self.sock: socket.socket | None = None
        self.started = 0.0
        self.buf = bytearray()
        self.sent = False

    @property
    def busy(self) -> bool:
        return self.sock is not None

    def start(self, now: float) -> None:
        sock = socket.socket(socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        code = sock.connect_ex(self.address)
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            self.done(None, errno.errorcode.get(code, str(code)))
            return
        self.sock, self.started, self.buf, self.sent = sock, now, bytearray(), False
        self.selector.register(sock, selectors.EVENT_WRITE, (self, "api"))

    def check_timeout(self, now: float) -> None:
        if self.sock is not None and now - self.started > self.timeout:
            self._end(None, "timed out")

    def handle(self, mask: int) -> None:
        assert self.sock is not None
        try:
            if mask & selectors.EVENT_WRITE and not self.sent:
                err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    self._end(None, errno.errorcode.get(err, str(err)))
                    return
                host = self.address[0]
                request = f"GET {self.path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                self.sock.sendall(request.encode())
                self.sent = True
                self.selector.modify(self.sock, selectors.EVENT_READ, (self, "api"))
                return
            data = self.sock.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError as exc:
            self._end(None, str(exc))
            return
        if data and len(self.buf) < MAX_RESPONSE:
            self.buf += data
            return
        self._end(*parse_response(bytes(self.buf)))

    def _end(self, doc: Any, error: str | None) -> None:
        if self.sock is not None:
            self.selector.unregister(self.sock)
            self.sock.close()
            self.sock = None
        self.done(doc, error)


def parse_response(raw: bytes) -> tuple[Any, str | None]:
    """(JSON body, None) of an HTTP/1.0 200 response; (None, why) otherwise."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return None, "incomplete response"
    status = head.split(b"\r\n", 1)[0].split()
    if len(status) < 2 or status[1] != b"200":
        return None, f"HTTP {status[1].decode(errors='replace') if len(status) > 1 else '?'}"
    try:
        return json.loads(body), None
    except ValueError as exc:
        return None, f"invalid JSON: {exc}"


# ------------------------------------------------------------------ state server


class StateServer:
    """``GET /v1/state`` with the operator's credential: ``state()`` as JSON."""

    def __init__(self, selector: selectors.BaseSelector, host: str, port: int, credential: Credential | None,
                 state: Callable[[], dict[str, Any]]) -> None:  # fmt: skip
        self.selector, self.credential, self.state = selector, credential, state
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(16)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.requests: dict[socket.socket, bytearray] = {}
        selector.register(self.sock, selectors.EVENT_READ, (self, "listen"))

    def handle(self, sock: socket.socket) -> None:
        if sock is self.sock:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.setblocking(False)
            self.requests[conn] = bytearray()
            self.selector.register(conn, selectors.EVENT_READ, (self, "conn"))
            return
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        buf = self.requests[sock]
        buf += data
        if data and b"\r\n\r\n" not in buf and len(buf) < MAX_REQUEST:
            return
        self._respond(sock, bytes(buf))

    def _respond(self, sock: socket.socket, request: bytes) -> None:
        self.selector.unregister(sock)
        del self.requests[sock]
        status, body = self.answer(request)
        reason = {200: "OK", 401: "Unauthorized", 404: "Not Found", 400: "Bad Request"}[status]
        head = (f"HTTP/1.0 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                + ('WWW-Authenticate: Basic realm="streamdist-switch"\r\n' if status == 401 else "")
                + "Connection: close\r\n\r\n")  # fmt: skip
        try:
            sock.settimeout(0.5)
            sock.sendall(head.encode() + body)
        except OSError:
            pass
        finally:
            sock.close()

    def answer(self, request: bytes) -> tuple[int, bytes]:
        """Status and body for one raw request (pure but for ``state()``)."""
        lines = request.decode("latin-1").split("\r\n")
        parts = lines[0].split()
        if len(parts) < 2 or parts[0] != "GET":
            return 400, b'{"error":"bad request"}'
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        if self.credential is None or not self.credential.allows(headers.get("authorization")):
            return 401, b'{"error":"unauthorized"}'
        if parts[1].split("?", 1)[0] != "/v1/state":
            return 404, b'{"error":"not found"}'
        return 200, json.dumps(self.state(), separators=(",", ":")).encode()

    def close(self) -> None:
        for conn in list(self.requests):
            self.selector.unregister(conn)
            conn.close()
        self.requests.clear()
        self.selector.unregister(self.sock)
        self.sock.close()
