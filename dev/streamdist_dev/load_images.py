"""Putting locally built images where a cluster takes them (`make demo` on your cluster).

No registry publishes streamdist's images: hack/build-images.sh builds them as OCI
archives (also `docker load` archives). Each kind of local cluster takes such an
archive its own documented way, and any other cluster pulls from a registry:

| cluster                                   | how                                              |
|-------------------------------------------|--------------------------------------------------|
| kind (context ``kind-NAME``)              | ``kind load image-archive FILE --name NAME``     |
| k3d (context ``k3d-NAME``)                | ``k3d image import FILE... --cluster NAME``      |
| minikube (nodes labelled by their profile)| ``minikube image load FILE --profile NAME``      |
| any, with ``REGISTRY=host[:port]/path``   | ``skopeo copy oci-archive:FILE docker://REGISTRY/NAME:TAG`` |

``plan()`` decides (pure: table-tested), ``commands()`` says what to run (pure),
``load()`` runs it. The chart is then installed with ``references()``: the names the
cluster now has, never one a registry does not hold.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class LoadPlan:
    how: str  # "kind", "k3d", "minikube", "registry", or "" (cannot)
    cluster: str = ""  # the kind or k3d cluster, or the minikube profile
    registry: str = ""
    insecure: bool = False  # push over plain HTTP / without TLS verification
    why: str = ""  # one sentence for the user


def plan(context: str, nodes: Sequence[Mapping[str, Any]], registry: str = "", insecure: bool = False) -> LoadPlan:
    """How images reach the cluster of kube context ``context`` with these Nodes."""
    if registry:
        return LoadPlan("registry", registry=registry.rstrip("/"), insecure=insecure,
                        why=f"REGISTRY is set: pushing the images to {registry.rstrip('/')}")  # fmt: skip
    provider = next((str((n.get("spec") or {}).get("providerID", "")) for n in nodes), "")
    labels = next((dict((n.get("metadata") or {}).get("labels") or {}) for n in nodes), {})
    if provider.startswith("kind://") or context.startswith("kind-"):
        # providerID kind://<provider>/<cluster>/<node>
        name = provider.split("/")[3] if provider.count("/") >= 4 else context.removeprefix("kind-")
        return LoadPlan("kind", cluster=name, why=f"a kind cluster ({name}): kind load image-archive")
    if context.startswith("k3d-"):
        name = context.removeprefix("k3d-")
        return LoadPlan("k3d", cluster=name, why=f"a k3d cluster ({name}): k3d image import")
    if "minikube.k8s.io/name" in labels:
        name = labels["minikube.k8s.io/name"]
        return LoadPlan("minikube", cluster=name, why=f"a minikube cluster (profile {name}): minikube image load")
    return LoadPlan("", why=f"context {context!r} is not a kind, k3d or minikube cluster, and REGISTRY is not set: "
                    "set REGISTRY=host[:port]/path to a registry this cluster pulls from")  # fmt: skip


def references(p: LoadPlan, images: Mapping[str, str]) -> dict[str, str]:
    """{image: the reference the cluster's pods use}: the local names, or pushed ones."""
    if p.how != "registry":
        return dict(images)
    return {key: f"{p.registry}/{ref.rsplit('/', 1)[-1]}" for key, ref in images.items()}


def commands(p: LoadPlan, archives: Mapping[str, Path], images: Mapping[str, str], tools: Mapping[str, str]) -> list[list[str]]:
    """The commands putting each archive where the cluster of ``p`` takes it.

    archives/images: {image key: OCI archive / local name}; tools: {"kind": path, ...}.
    """
    files = [str(archives[k]) for k in sorted(archives)]
    if p.how == "kind":
        return [[tools.get("kind", "kind"), "load", "image-archive", f, "--name", p.cluster] for f in files]
    if p.how == "k3d":
        return [[tools.get("k3d", "k3d"), "image", "import", *files, "--cluster", p.cluster]]
    if p.how == "minikube":
        return [[tools.get("minikube", "minikube"), "image", "load", f, "--profile", p.cluster] for f in files]
    if p.how == "registry":
        refs = references(p, images)
        tls = ["--dest-tls-verify=false"] if p.insecure else []
        return [
            [tools.get("skopeo", "skopeo"), "copy", "--quiet", *tls, f"oci-archive:{archives[k]}", f"docker://{refs[k]}"]
            for k in sorted(archives)
        ]
    raise ValueError(p.why or "no way to load images into this cluster")


def load(
    p: LoadPlan,
    archives: Mapping[str, Path],
    images: Mapping[str, str],
    tools: Mapping[str, str] | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, str]:
    """Runs ``commands()``, saying each; returns ``references()``. Raises on a failure."""
    for cmd in commands(p, archives, images, tools or {}):
        say("  $ " + " ".join(cmd))
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd[0]} exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-1500:]}")
    return references(p, images)
