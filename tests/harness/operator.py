"""The operator as a real process (`streamdist run`) against a test control plane."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.harness.controlplane import free_ports, tail


class OperatorProcess:
    """Starts, kills (SIGKILL, as a crash would) and restarts `streamdist run`."""

    def __init__(self, kubeconfig: Path, state_dir: Path, env: dict[str, str] | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.state_dir = state_dir
        self.extra_env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = state_dir / "operator.log"
        self.port = 0
        self.metrics_port = 0
        self.starts = 0

    def __enter__(self) -> OperatorProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 60.0) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.port, self.metrics_port = free_ports(2)
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "STREAMDIST_RESYNC_SECONDS": "3",
            # KWOK plays the pods: no router answers, and Service addresses lead nowhere.
            "STREAMDIST_HEALTH_POLL": "false",
            "STREAMDIST_METRICS_PORT": str(self.metrics_port),
            "STREAMDIST_LIVENESS": f"http://127.0.0.1:{self.port}/healthz",
            **self.extra_env,
        }
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"--- start {self.starts}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streamdist.cli", "run"], stdout=out, stderr=subprocess.STDOUT, env=env
            )
        self._wait_live(timeout)

    def _wait_live(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited with {self.proc.returncode}:\n{tail(self.log)}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as resp:
                    if resp.status == 200:
                        return
            time.sleep(0.2)
        raise RuntimeError(f"operator not live after {timeout}s:\n{tail(self.log)}")

    def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye, like an OOM kill or a node loss."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
