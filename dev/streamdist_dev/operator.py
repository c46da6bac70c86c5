"""The operator as a real process (`streamdist run`) against a test control plane."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from streamdist_dev.procs import StartStop, free_ports, reap, spawn, tail
from streamdist_dev.wait import http_ok, wait_for


class OperatorProcess(StartStop):
    """Starts, kills (SIGKILL, as a crash would) and restarts `streamdist run`."""

    def __init__(self, kubeconfig: Path, state_dir: Path, env: dict[str, str] | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.state_dir = state_dir
        self.extra_env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = state_dir / "operator.log"
        self.port = 0
        self.metrics_port = 0
        self.thumbnail_port = 0
        self.starts = 0

    def start(self, timeout: float = 60.0) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.port, self.metrics_port, self.thumbnail_port = free_ports(3)
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "STREAMDIST_RESYNC_SECONDS": "3",
            # KWOK plays the pods: no router answers, and Service addresses lead nowhere.
            "STREAMDIST_HEALTH_POLL": "false",
            "STREAMDIST_METRICS_PORT": str(self.metrics_port),
            "STREAMDIST_THUMBNAIL_PORT": str(self.thumbnail_port),
            "STREAMDIST_LIVENESS": f"http://127.0.0.1:{self.port}/healthz",
            **self.extra_env,
        }
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"--- start {self.starts}\n".encode())
        self.proc = spawn([sys.executable, "-m", "streamdist.cli", "run"], self.log, env=env)
        wait_for(
            "the operator's liveness", lambda: http_ok(f"http://127.0.0.1:{self.port}/healthz", timeout=2),
            timeout, 0.2, check=self._running, error=RuntimeError,
        )

    def _running(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"operator exited with {self.proc.returncode}:\n{tail(self.log)}")

    def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye, like an OOM kill or a node loss."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        reap(self.proc, grace=15)

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
