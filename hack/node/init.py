#!/usr/bin/env python3
"""PID 1 of the local node's own mount + PID namespace (see dev/streamdist_dev/node.py).

Started as
    unshare --mount --propagation private --pid --fork --mount-proc --kill-child=SIGKILL \
        -- python3 hack/node/init.py SPEC.json

it makes the namespace's mounts shared (the kubelet's mount propagation needs it),
puts a private tmpfs over /run/containerd (shim sockets vanish with the node), starts
containerd, waits for its socket, starts the kubelet, then reaps every process of the
namespace (shims and containers are re-parented to it). It exits as soon as
containerd or the kubelet exits (writing why into SPEC's status file); on SIGTERM it
stops the kubelet, then containerd. Either way, when it exits the kernel kills every
process left in the namespace and every mount made in it (overlay snapshots, pod
volumes, network namespace handles) goes with it: nothing outlives the node.

SPEC.json: {"containerd": [argv], "kubelet": [argv], "socket": path,
            "logs": dir, "status": path, "mkdirs": [paths]}
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time


def main() -> int:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    status_path = spec["status"]

    def status(text: str) -> None:
        with open(status_path, "a") as f:
            f.write(f"{time.time():.3f} {text}\n")

    subprocess.run(["mount", "--make-rshared", "/"], check=True)
    os.makedirs("/run/containerd", exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0711", "streamdist-node", "/run/containerd"], check=True)
    for d in spec.get("mkdirs", []):
        os.makedirs(d, exist_ok=True)

    stopping = False

    def on_term(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    procs: dict[str, subprocess.Popen] = {}

    def spawn(name: str) -> None:
        log = open(os.path.join(spec["logs"], f"{name}.log"), "ab")  # noqa: SIM115 - the child keeps it
        procs[name] = subprocess.Popen(spec[name], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        status(f"started {name} pid {procs[name].pid}")

    spawn("containerd")
    deadline = time.monotonic() + 60
    while not os.path.exists(spec["socket"]):
        if procs["containerd"].poll() is not None or time.monotonic() > deadline or stopping:
            status(f"exit containerd did not come up (code {procs['containerd'].poll()})")
            return 1
        time.sleep(0.05)
    status("containerd socket up")
    spawn("kubelet")

    by_pid = {p.pid: name for name, p in procs.items()}

    def reap() -> None:
        """Reaps every dead child (ours and adopted ones); notes ours."""
        nonlocal stopping
        while True:
            try:
                pid, st = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            name = by_pid.get(pid)
            if name:
                procs[name].returncode = os.waitstatus_to_exitcode(st)
                status(f"exit {name} exited with code {procs[name].returncode}")
                stopping = True

    while not stopping:
        reap()
        if not stopping:
            time.sleep(0.2)

    for name in ("kubelet", "containerd"):
        p = procs.get(name)
        if p is not None and p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    status("exit stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
