"""The one wait of the dev tools: poll until something is true, say what was awaited.

Every harness, test and benchmark polls through ``wait_for``; the cluster classes add
their own liveness check (``check``) and error type, tests a ``detail`` of what was
last seen.
"""

from __future__ import annotations

import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    what: str,
    fn: Callable[[], T | None],
    timeout: float = 60.0,
    interval: float = 0.25,
    *,
    check: Callable[[], None] | None = None,
    detail: Callable[[], str] | None = None,
    error: type[Exception] = TimeoutError,
) -> T:
    """Polls fn until it returns something truthy and returns that.

    An exception from fn counts as "not yet" (a kubectl call while the apiserver
    restarts) and is named in the timeout's message; one from ``check`` (a component
    died) ends the wait at once. After ``timeout`` seconds raises ``error`` naming
    ``what``, the last error and ``detail()``.
    """
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        if check is not None:
            check()
        try:
            got = fn()
            if got:
                return got
            last_exc = None
        except Exception as exc:
            last_exc = exc
        if time.monotonic() > deadline:
            extra = f" (last error: {last_exc})" if last_exc else ""
            seen = f"\n{detail()}" if detail else ""
            raise error(f"timed out after {timeout:.0f}s waiting for {what}{extra}{seen}")
        time.sleep(interval)


def http_ok(url: str, context: ssl.SSLContext | None = None, timeout: float = 5.0) -> bool:
    """True when ``url`` answers 200; raises, saying what it answered, otherwise."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as r:
            if r.status == 200:
                return True
            raise OSError(f"HTTP {r.status}: {r.read().decode(errors='replace')[:200]}")
    except urllib.error.HTTPError as e:
        raise OSError(f"HTTP {e.code}: {e.read().decode(errors='replace')[:500]}") from None
