"""The chart as the tests and the demo render it: the pinned helm (built by
hack/build-bins.sh, with a private cache and config), ``helm template`` of
charts/streamdist, and finding objects in what it renders."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "streamdist"
HACK = REPO / "hack"


@cache
def versions() -> dict[str, str]:
    """hack/versions.env as a dict (KEY=VALUE lines, comments skipped)."""
    out = {}
    for line in (HACK / "versions.env").read_text().splitlines():
        m = re.match(r"^([A-Z_]+)=(.*)$", line.strip())
        if m:
            out[m.group(1)] = m.group(2).strip().strip('"')
    return out


def cache_root() -> Path:
    env = os.environ.get("STREAMDIST_BIN_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "streamdist" / "bin"


@cache
def helm_path() -> Path:
    """The pinned helm (hack/build-bins.sh helm builds it when missing)."""
    path = cache_root() / f"helm-{versions()['HELM_VERSION']}" / "helm"
    if not os.access(path, os.X_OK):
        subprocess.run(["bash", str(HACK / "build-bins.sh"), "helm"], check=True, stdout=subprocess.DEVNULL,
                       timeout=1800)
    assert os.access(path, os.X_OK), f"{path} missing after hack/build-bins.sh helm"
    return path


def helm(*args: str, env: dict[str, str] | None = None, check: bool = True, timeout: float = 300,
         input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Runs the pinned helm with a private cache/config dir (never the user's repos)."""
    home = Path(tempfile.gettempdir()) / f"streamdist-helm-home-{os.getuid()}"
    base = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    proc = subprocess.run([str(helm_path()), *args], capture_output=True, text=True, timeout=timeout,
                          env={**base, **(env or {})}, input=input)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}\n{proc.stdout[-2000:]}")
    return proc


def template(*args: str, release: str = "streamdist", namespace: str = "streamdist") -> str:
    return helm("template", release, str(CHART), "--namespace", namespace, *args).stdout


def docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def rendered(*args: str, release: str = "streamdist", namespace: str = "streamdist") -> list[dict[str, Any]]:
    return docs(template(*args, release=release, namespace=namespace))


def find(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
