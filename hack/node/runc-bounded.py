#!/usr/bin/env python3
"""runc, with each new container's capabilities cut to those this machine can give.

These VMs run every process without CAP_SYS_RESOURCE in its bounding set (hack/NODE.md).
Docker 20.10 gives a `--privileged` container every capability the kernel knows, and
runc then fails: "unable to apply caps: operation not permitted". kind runs its nodes
privileged, so the tests' dockerd (dev/streamdist_dev/kind.py) uses this as its runtime:
before `runc create`/`runc run` it drops from the bundle's config.json the capabilities
outside our own bounding set (what a newer Docker does itself), and before `runc exec`
(`docker exec --privileged`, which kind uses) the same in the exec's process.json; then
it runs runc as asked. Every other runc call passes through untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

# Linux capability numbers (include/uapi/linux/capability.h), 0 to 40.
CAPS = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)


def bounding_set() -> set[str]:
    with open("/proc/self/status") as f:
        mask = int(next(ln.split()[1] for ln in f if ln.startswith("CapBnd:")), 16)
    return {f"CAP_{name}" for bit, name in enumerate(CAPS) if mask >> bit & 1}


def option(argv: list[str], *names: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg in names and i + 1 < len(argv):
            return argv[i + 1]
        for name in names:
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def bound(path: str, allowed: set[str], in_process: bool) -> None:
    """Cuts the capabilities of a bundle's config.json (under "process") or of an exec's
    process.json (at the top) to ``allowed``; leaves the file as it is when they fit."""
    with open(path) as f:
        spec = json.load(f)
    caps = (spec if in_process else spec.get("process") or {}).get("capabilities") or {}
    if not any(set(v or []) - allowed for v in caps.values()):
        return
    for kind, names in caps.items():
        caps[kind] = [c for c in names or [] if c in allowed]
    with open(path + ".tmp", "w") as f:
        json.dump(spec, f)
    os.replace(path + ".tmp", path)


def main() -> None:
    argv = sys.argv[1:]
    runc = os.environ.get("STREAMDIST_RUNC") or shutil.which("runc") or "/usr/sbin/runc"
    if "create" in argv or "run" in argv:
        bound(os.path.join(option(argv, "--bundle", "-b") or ".", "config.json"), bounding_set(), False)
    elif "exec" in argv and (process := option(argv, "--process", "-p")):
        bound(process, bounding_set(), True)
    os.execv(runc, [runc, *argv])


if __name__ == "__main__":
    main()
