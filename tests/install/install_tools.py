"""Tools of the install tests: RBAC rules flattened, promtool (the pinned Prometheus
binaries: streamdist_dev.alerting) and Argo CD's Lua (the pinned helm and the chart
rendered: streamdist_dev.chart).

Nothing here needs a cluster. The cluster tests' fixtures are in conftest.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from streamdist_dev.alerting import prometheus_bin
from streamdist_dev.chart import REPO, cache_root

HEALTH_DIR = REPO / "argocd" / "health"
KINDS = ("StreamInput", "StreamOutput")
# gopher-lua release Argo CD links (github.com/argoproj/argo-cd go.mod).
GOPHER_LUA_VERSION = "v1.1.1"


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Runs the pinned promtool; the caller looks at the exit code."""
    return subprocess.run([str(prometheus_bin("promtool")), *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def flat_rules(rules: list[dict[str, Any]]) -> set[tuple[str, str, str, str]]:
    """(group, resource, verb, resourceName or '') for every combination RBAC rules grant."""
    return {
        (g, res, v, n)
        for r in rules
        for g in r["apiGroups"]
        for res in r["resources"]
        for v in r["verbs"]
        for n in r.get("resourceNames") or [""]
    }


# --- Argo CD health scripts ---------------------------------------------------------


def health_source(kind: str) -> str:
    """A kind's whole check, as argocd-cm holds it: the common start, then the kind's part."""
    return (HEALTH_DIR / "common.lua").read_text() + (HEALTH_DIR / f"{kind}.lua").read_text()


@cache
def health_script(kind: str) -> Path:
    """A file holding ``health_source(kind)``, for the Lua VMs to run."""
    path = Path(tempfile.mkdtemp(prefix="argocd-health-")) / f"{kind}.lua"
    path.write_text(health_source(kind))
    return path


def lua_literal(value: Any) -> str:
    """A Python (JSON) value as a Lua table constructor expression."""
    match value:
        case None:
            return "nil"
        case bool():
            return "true" if value else "false"
        case int() | float():
            return repr(value)
        case str():
            # bytes outside printable ASCII, quotes and backslashes as Lua's \ddd escapes
            chars = (chr(b) if 32 <= b < 127 and chr(b) not in '"\\' else f"\\{b:03d}" for b in value.encode())
            return '"' + "".join(chars) + '"'
        case list():
            return "{" + ", ".join(lua_literal(v) for v in value) + "}"
        case dict():
            items = [f"[{lua_literal(str(k))}] = {lua_literal(v)}" for k, v in value.items() if v is not None]
            return "{" + ", ".join(items) + "}"
    raise TypeError(f"no Lua literal for {type(value)}")


@cache
def stock_lua() -> str:
    """A stock Lua interpreter (hack/install-debs.sh installs lua5.4)."""
    for name in ("lua5.4", "lua5.3", "lua5.1", "lua"):
        if shutil.which(name):
            return name
    raise AssertionError("no Lua interpreter: run hack/install-debs.sh (installs lua5.4)")


@cache
def gopher_lua_harness() -> Path:
    """tests/install/argocd_lua built against the gopher-lua release Argo CD links.

    Built once into the cache from the Go module proxy (like every other pinned part).
    """
    out = cache_root() / f"argocd-lua-gopher-lua-{GOPHER_LUA_VERSION}" / "argocd-lua"
    src = Path(__file__).parent / "argocd_lua"
    stamp = out.with_suffix(".src")
    digest = "\n".join(f"{p.name}:{hashlib.sha256(p.read_bytes()).hexdigest()}" for p in sorted(src.iterdir()))
    if os.access(out, os.X_OK) and stamp.exists() and stamp.read_text() == digest:
        return out
    go = shutil.which("go") or "/usr/local/go/bin/go"
    assert os.access(go, os.X_OK), "go not found: needed to build the gopher-lua harness (Argo CD's Lua VM)"
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([go, "build", "-trimpath", "-o", str(out), "."], cwd=src, check=True, timeout=600,
                   env={**os.environ, "CGO_ENABLED": "0"})
    stamp.write_text(digest)
    return out


def run_health(kind: str, obj: dict[str, Any], vm: str = "gopher-lua") -> tuple[str, str]:
    """(status, message) of Argo CD's health check of `obj`, run in `vm`.

    vm: "gopher-lua" (Argo CD's own VM, its calling convention re-created in Go) or
    "stock" (lua5.4 or whichever stock Lua is installed, sandboxed the same way).
    """
    script = health_script(kind)
    if vm == "gopher-lua":
        proc = subprocess.run([str(gopher_lua_harness()), str(script)], input=json.dumps(obj), capture_output=True,
                              text=True, timeout=30)
        assert proc.returncode == 0, f"{kind} health.lua failed in gopher-lua: {proc.stderr}"
        got = json.loads(proc.stdout)
        return got["status"], got.get("message", "")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write("return " + lua_literal(obj) + "\n")
        obj_path = f.name
    try:
        proc = subprocess.run([stock_lua(), str(Path(__file__).parent / "argocd_sandbox.lua"), str(script), obj_path],
                              capture_output=True, text=True, timeout=30)
    finally:
        os.unlink(obj_path)
    assert proc.returncode == 0, f"{kind} health.lua failed in {stock_lua()}: {proc.stderr}"
    status, _, message = proc.stdout.partition("\n")
    return status, message
