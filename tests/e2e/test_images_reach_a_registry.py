"""`REGISTRY=... make demo` on a cluster that pulls from a registry: the images built
here are pushed with skopeo (dev/streamdist_dev/load_images.py) to a real registry
(Distribution's, Debian's docker-registry, on loopback), and what the registry then
serves is the image that was built: the same config blob (entrypoint, user, and every
layer's content digest)."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from streamdist_dev.load_images import load, plan
from streamdist_dev.media import ProcessGroup, free_tcp_port, wait_tcp_listening
from streamdist_dev.node import IMAGES, build_images, node_supported

PUSHED = ("operator", "mediamtx")  # the FFmpeg image is pushed the same way (600 MB: left out for time)


def _archive_manifest(archive: Path) -> dict:
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        digest = index["manifests"][0]["digest"].split(":")[1]
        return json.load(tar.extractfile(f"blobs/sha256/{digest}"))  # type: ignore[arg-type]


def test_built_images_pushed_to_a_registry_are_served_as_built(tmp_path: Path) -> None:
    why = node_supported() or ("" if os.path.exists("/usr/bin/docker-registry") else "docker-registry missing")
    if why and os.environ.get("STREAMDIST_REQUIRE_NODE") == "1":
        pytest.fail(f"the registry test must run here: {why} (hack/install-node-debs.sh)")
    if why:
        pytest.skip(why)
    built = build_images(PUSHED)
    archives = {key: built[IMAGES[key]] for key in PUSHED}
    port = free_tcp_port()
    config = {
        "version": 0.1,
        "storage": {"filesystem": {"rootdirectory": str(tmp_path / "data")}},
        "http": {"addr": f"127.0.0.1:{port}"},
        "log": {"level": "warn"},
    }
    (tmp_path / "config.yml").write_text(yaml.safe_dump(config))
    with ProcessGroup(tmp_path / "logs") as group:
        group.start("registry", ["docker-registry", "serve", str(tmp_path / "config.yml")])
        wait_tcp_listening(port, timeout=20)
        how = plan("any-cluster", [], f"127.0.0.1:{port}/streamdist", insecure=True)
        refs = load(how, archives, {k: IMAGES[k] for k in PUSHED}, tools={})
        assert refs == {k: f"127.0.0.1:{port}/streamdist/{IMAGES[k].rsplit('/', 1)[1]}" for k in PUSHED}
        for key, ref in refs.items():
            raw = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{ref}"],
                                 capture_output=True, text=True, timeout=60, check=True).stdout  # fmt: skip
            served, ours = json.loads(raw), _archive_manifest(archives[key])
            # the same config blob, which names every layer by the digest of its content
            # (rootfs.diff_ids): the same image, whatever compression the push chose
            assert served["config"]["digest"] == ours["config"]["digest"], (key, served, ours)
            assert len(served["layers"]) == len(ours["layers"]), key
            print(f"[e2e] {key}: pushed to {ref}; the registry serves config {served['config']['digest'][:19]}",
                  flush=True)  # fmt: skip
