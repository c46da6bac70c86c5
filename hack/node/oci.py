#!/usr/bin/env python3
"""Builds an OCI image archive from a root filesystem directory, with no registry
and no image tool: one uncompressed layer (the whole rootfs), an image config, a
manifest and an index, packed as the tar `ctr images import` reads.

    oci.py --rootfs DIR --name localhost/streamdist/ffmpeg:dev --out ffmpeg.tar \
        [--entrypoint '["/mediamtx"]'] [--cmd '[]'] [--user 10001:10001] \
        [--env K=V ...] [--workdir /] [--exclude REL ...] [--expose 8080/tcp ...] [--label K=V ...]
        [--stop-signal SIGRTMIN+3]

The archive is also a `docker load` archive (a manifest.json beside the OCI index), so
the same file goes into containerd (`ctr images import`, `kind load image-archive`,
`k3d image import`) and into a Docker daemon.

The layer is reproducible: entries sorted, mtimes clamped to SOURCE_DATE_EPOCH (0
when unset), so the same rootfs gives the same image digest. Device nodes and
everything below /proc, /sys and /dev are left out (the runtime mounts those).
Ownership and modes come from the files as they are on disk (build as root).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import stat
import tarfile
import tempfile
from pathlib import Path

SKIP_TOP = {"proc", "sys", "dev"}


class _HashWriter(io.RawIOBase):
    """A file that writes through and hashes what passes."""

    def __init__(self, f):
        self.f = f
        self.h = hashlib.sha256()
        self.n = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.f.write(b)
        self.h.update(b)
        self.n += len(b)
        return len(b)


def _walk(root: Path, excludes: set[str]):
    """Yields paths relative to root, parents before children, sorted."""
    stack = [""]
    while stack:
        rel = stack.pop()
        base = root / rel if rel else root
        try:
            names = sorted(os.listdir(base), reverse=True)
        except NotADirectoryError:
            continue
        for name in names:
            r = f"{rel}/{name}" if rel else name
            if r in excludes or (not rel and name in SKIP_TOP):
                continue
            yield r
            p = root / r
            if p.is_dir() and not p.is_symlink():
                stack.append(r)


def build_layer(root: Path, out, excludes: set[str], epoch: int) -> tuple[str, int]:
    hw = _HashWriter(out)
    inodes: dict[tuple[int, int], str] = {}
    with tarfile.open(fileobj=hw, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        # the top dirs the runtime mounts over, empty
        for d in sorted(SKIP_TOP):
            if (root / d).is_dir():
                ti = tarfile.TarInfo(d)
                ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, epoch
                tar.addfile(ti)
        for rel in _walk(root, excludes):
            p = root / rel
            st = os.lstat(p)
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISSOCK(st.st_mode):
                continue
            ti = tar.gettarinfo(str(p), arcname=rel)
            ti.mtime = min(int(st.st_mtime), epoch) if epoch else 0
            ti.uname = ti.gname = ""
            if ti.isreg() and st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                if key in inodes:
                    ti.type, ti.linkname, ti.size = tarfile.LNKTYPE, inodes[key], 0
                    tar.addfile(ti)
                    continue
                inodes[key] = rel
            if ti.isreg():
                with open(p, "rb") as f:
                    tar.addfile(ti, f)
            else:
                tar.addfile(ti)
    return "sha256:" + hw.h.hexdigest(), hw.n


def _blob(tar: tarfile.TarFile, data: bytes) -> tuple[str, int]:
    d = hashlib.sha256(data).hexdigest()
    ti = tarfile.TarInfo(f"blobs/sha256/{d}")
    ti.size, ti.mode = len(data), 0o644
    tar.addfile(ti, io.BytesIO(data))
    return "sha256:" + d, len(data)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rootfs", required=True, type=Path)
    ap.add_argument("--name", required=True)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--entrypoint", default="null")
    ap.add_argument("--cmd", default="null")
    ap.add_argument("--user", default="")
    ap.add_argument("--workdir", default="/")
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--exclude", action="append", default=[])
    ap.add_argument("--expose", action="append", default=[])
    ap.add_argument("--label", action="append", default=[])
    ap.add_argument("--stop-signal", default="")
    a = ap.parse_args()
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))

    a.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=a.out.parent) as tmp:
        layer_path = Path(tmp) / "layer.tar"
        with open(layer_path, "wb") as lf:
            diff_id, size = build_layer(a.rootfs, lf, {e.strip("/") for e in a.exclude}, epoch)

        env = a.env or ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
        cfg: dict = {"Env": env, "WorkingDir": a.workdir}
        if a.user:
            cfg["User"] = a.user
        ep, cmd = json.loads(a.entrypoint), json.loads(a.cmd)
        if ep is not None:
            cfg["Entrypoint"] = ep
        if cmd is not None:
            cfg["Cmd"] = cmd
        if a.expose:
            cfg["ExposedPorts"] = {port: {} for port in a.expose}
        if a.label:
            cfg["Labels"] = dict(lab.split("=", 1) for lab in a.label)
        if a.stop_signal:
            cfg["StopSignal"] = a.stop_signal
        created = "1970-01-01T00:00:00Z"
        config = {
            "created": created,
            "architecture": "amd64",
            "os": "linux",
            "config": cfg,
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": created, "created_by": "hack/node/oci.py"}],
        }
        tmp_out = a.out.with_suffix(".tmp")
        with tarfile.open(tmp_out, "w", format=tarfile.PAX_FORMAT) as tar:
            for d in ("blobs", "blobs/sha256"):
                ti = tarfile.TarInfo(d)
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(ti)
            ti = tarfile.TarInfo(f"blobs/sha256/{diff_id.split(':')[1]}")
            ti.size, ti.mode = size, 0o644
            with open(layer_path, "rb") as lf:
                tar.addfile(ti, lf)
            cdig, csize = _blob(tar, json.dumps(config, sort_keys=True).encode())
            manifest = {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdig, "size": csize},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": diff_id, "size": size}],
            }
            mdig, msize = _blob(tar, json.dumps(manifest, sort_keys=True).encode())
            tag = a.name.rsplit(":", 1)[1] if ":" in a.name.rsplit("/", 1)[-1] else "latest"
            index = {
                "schemaVersion": 2,
                "manifests": [
                    {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": mdig,
                        "size": msize,
                        "platform": {"architecture": "amd64", "os": "linux"},
                        "annotations": {"io.containerd.image.name": a.name, "org.opencontainers.image.ref.name": tag},
                    }
                ],
            }
            docker = [
                {
                    "Config": f"blobs/sha256/{cdig.split(':')[1]}",
                    "RepoTags": [a.name],
                    "Layers": [f"blobs/sha256/{diff_id.split(':')[1]}"],
                }
            ]
            for name, data in (
                ("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode()),
                ("index.json", json.dumps(index, sort_keys=True).encode()),
                ("manifest.json", json.dumps(docker).encode()),
            ):
                ti = tarfile.TarInfo(name)
                ti.size, ti.mode = len(data), 0o644
                tar.addfile(ti, io.BytesIO(data))
        os.replace(tmp_out, a.out)
    print(f"{a.name} {mdig} {a.out}")


if __name__ == "__main__":
    main()
