"""Shared by the reliability tests: manifests as a user writes them, and snapshots of a
set of GOOD resources to prove that nothing about them moved.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import yaml

from streamdist_dev.kubectl import Kubectl
from streamdist_dev.wait import wait_for

T = TypeVar("T")
API = "streamdist.io/v1alpha1"
MANAGED = "app.kubernetes.io/managed-by=streamdist"


CREDENTIALED = ("srt", "rtmp", "rtsp")
PUBLISH_CREDENTIAL = "encoder:publish-pass-0001"


def si(name: str, **spec: Any) -> dict[str, Any]:
    """A StreamInput; an srt, rtmp or rtsp one names the Secret publisher(name) makes."""
    if spec.get("protocol") in CREDENTIALED:
        spec.setdefault("publishSecretRef", {"name": f"{name}-publish", "key": "credential"})
    return {"apiVersion": API, "kind": "StreamInput", "metadata": {"name": name}, "spec": spec}


def publisher(input_name: str, credential: str = PUBLISH_CREDENTIAL) -> dict[str, Any]:
    """The publishSecretRef Secret si() names for an input."""
    return secret(f"{input_name}-publish", credential=credential)


def so(name: str, input: str = "good", url: str | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"input": input}
    if url is not None:
        body["url"] = url
    body.update(spec)
    return {"apiVersion": API, "kind": "StreamOutput", "metadata": {"name": name}, "spec": body}


def url_from(name: str, key: str = "url") -> dict[str, Any]:
    return {"secretKeyRef": {"name": name, "key": key}}


# What each data key is for: the label a Secret needs before the operator uses it.
USAGES = {"url": "destination", "passphrase": "passphrase", "credential": "publish"}


def secret(name: str, usage: str | None = None, **data: str) -> dict[str, Any]:
    """An Opaque Secret, opted in (streamdist.io/secret-usage) for the use its key
    names, or for `usage`; usage="" makes one that does not opt in."""
    usage = next((USAGES[k] for k in data if k in USAGES), "") if usage is None else usage
    labels = {"streamdist.io/secret-usage": usage} if usage else {}
    meta = {"name": name, **({"labels": labels} if labels else {})}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque", "stringData": data}


def text(*docs: dict[str, Any]) -> str:
    """YAML as a user would write it (unicode kept literal, control characters escaped)."""
    return yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True, width=1 << 20)


def pods(k: Kubectl, selector: str = "streamdist.io/output") -> list[dict[str, Any]]:
    return [p for p in k.items("pods", selector) if not p["metadata"].get("deletionTimestamp")]


def poll(what: str, fn: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.5,
         detail: Callable[[], str] | None = None) -> T:
    """Like Kubectl.wait, but the failure says what was last seen (detail())."""
    return wait_for(what, fn, timeout, interval, detail=detail, error=AssertionError)


def ready(k: Kubectl, kind: str, name: str) -> dict[str, Any] | None:
    return k.condition(kind, name, "Ready")


# --- the GOOD set -------------------------------------------------------------------

GOOD_INPUT = "good"
GOOD_OUTPUTS = ("g-udp", "g-listener", "g-keyed")
GOOD_KEY = "rtmp://live.example/app/good-stream-key-1234"


def good_set(input_name: str = GOOD_INPUT, outputs: Iterable[str] = GOOD_OUTPUTS) -> str:
    """An input and three outputs: a UDP push, an SRT listener (with its Service) and an
    RTMP push whose URL (with its key) comes from a Secret."""
    a, b, c = outputs
    return text(
        secret(f"{c}-url", url=GOOD_KEY),
        si(input_name, protocol="udp"),
        so(a, input_name, "udp://playout.example:5000?pkt_size=1316"),
        so(b, input_name, "srt://:9100?mode=listener&latency=200000"),
        so(c, input_name, urlFrom=url_from(f"{c}-url")),
    )


@dataclass
class GoodSet:
    """What must not move while hostile input is applied next to it."""

    k: Kubectl
    input: str = GOOD_INPUT
    outputs: tuple[str, ...] = GOOD_OUTPUTS

    def create(self, timeout: float = 60.0) -> dict[str, Any]:
        self.k("apply", "-f", "-", input=good_set(self.input, self.outputs))
        poll("good set streaming", self._settled, timeout=timeout, detail=self._describe)
        time.sleep(1.0)  # let the last status write and its watch event land
        return self.snapshot()

    def _settled(self) -> bool:
        got = self.k.get("streaminputs,streamoutputs")["items"]
        phases = {o["metadata"]["name"]: (o.get("status") or {}).get("phase") for o in got}
        ok = phases.get(self.input) == "Waiting" and all(phases.get(o) == "Streaming" for o in self.outputs)
        return ok and len(pods(self.k, ",".join([MANAGED, f"streamdist.io/input={self.input}"]))) == 4

    def _describe(self) -> str:
        return self.k("get", "streamdist,pods,svc", "-o", "wide", check=False).stdout

    def snapshot(self) -> dict[str, Any]:
        """Pods (by UID), statuses, the router's children, and the Events on the good objects."""
        mine_cr = {("StreamInput", self.input), *(("StreamOutput", o) for o in self.outputs)}
        items = self.k.get("pods,services,configmaps,deployments,streaminputs,streamoutputs")["items"]
        snap: dict[str, Any] = {}
        for o in items:
            meta, kind = o["metadata"], o["kind"]
            labels = meta.get("labels") or {}
            if kind == "Pod":
                if meta.get("deletionTimestamp"):
                    continue
                mine = labels.get("streamdist.io/output") in self.outputs or (
                    labels.get("app.kubernetes.io/name") == "mediamtx" and labels.get("streamdist.io/input") == self.input
                )
                if mine:
                    snap[f"pod/{meta['name']}"] = meta["uid"]
            elif (kind, meta["name"]) in mine_cr:
                snap[f"{kind}/{meta['name']}"] = {"uid": meta["uid"], "generation": meta["generation"],
                                                  "status": o.get("status")}
            elif kind in ("Service", "ConfigMap", "Deployment") and meta["name"] in {
                self.input, f"{self.input}-ingest", f"{self.input}-mediamtx", *self.outputs
            }:
                spec = o.get("spec") or {}
                body = o.get("data") if kind == "ConfigMap" else {
                    "selector": spec.get("selector"), "ports": spec.get("ports"), "type": spec.get("type"),
                    "template": spec.get("template"),
                }
                snap[f"{kind}/{meta['name']}"] = {"uid": meta["uid"], "owner": meta.get("ownerReferences"),
                                                  "labels": labels, "body": body}
        events = self.k.items("events")
        snap["events"] = sorted(
            (e["involvedObject"]["kind"], e["involvedObject"]["name"], e["reason"], e["metadata"]["uid"])
            for e in events
            if (e["involvedObject"]["kind"], e["involvedObject"]["name"]) in mine_cr
        )
        return snap

    def assert_unchanged(self, before: dict[str, Any], why: str) -> None:
        after = self.snapshot()
        if after == before:
            return
        lines = []
        for key in sorted(set(before) | set(after)):
            if before.get(key) != after.get(key):
                lines.append(f"  {key}:\n    before: {json.dumps(before.get(key))[:600]}\n"
                             f"    after:  {json.dumps(after.get(key))[:600]}")
        raise AssertionError(f"GOOD resources changed after {why}:\n" + "\n".join(lines))


# --- identities -------------------------------------------------------------------------


def user_kubeconfig(cp: Any, user: str, out_dir: Any) -> Any:
    """A kubeconfig for `user` (group system:masters) with a client certificate signed by
    the control plane's CA: the audit log then tells this client's requests apart."""
    import shutil
    import subprocess
    from pathlib import Path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pki = Path(cp.pki_dir)
    key, csr, crt = out / f"{user}.key", out / f"{user}.csr", out / f"{user}.crt"
    ext = out / f"{user}.ext"
    ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                   "extendedKeyUsage=clientAuth\n")
    for args in (
        ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(csr), "-subj", f"/O=system:masters/CN={user}"],
        ["x509", "-req", "-in", str(csr), "-CA", str(pki / "ca.crt"), "-CAkey", str(pki / "ca.key"),
         "-CAcreateserial", "-CAserial", str(out / "ca.srl"), "-out", str(crt), "-days", "2", "-extfile", str(ext)],
    ):
        subprocess.run([shutil.which("openssl") or "openssl", *args], check=True, capture_output=True)
    cfg = json.loads(Path(cp.kubeconfig).read_text())
    cfg["users"] = [{"name": user, "user": {"client-certificate": str(crt), "client-key": str(key)}}]
    cfg["contexts"][0]["context"]["user"] = user
    path = out / f"{user}.kubeconfig"
    path.write_text(json.dumps(cfg))
    path.chmod(0o600)
    return path


def peered_replicas(cp: Any, peering: str, tmp_path: Any, users: tuple[str, str]) -> tuple[Any, Any]:
    """Two operator replicas in one kopf peering, not started: A (priority 2, acts) and
    B (priority 1, waits), each as its own user (``users``) so the audit log tells them apart."""
    from pathlib import Path

    from streamdist_dev.operator import OperatorProcess

    cp.kubectl("apply", "-f", str(Path(__file__).resolve().parents[2] / "charts/streamdist/crds/kopf-peerings.yaml"))
    cp.kubectl("wait", "--for=condition=Established", "crd/clusterkopfpeerings.kopf.dev", "--timeout=60s")
    cp.apply({"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": peering}})
    env = {"STREAMDIST_PEERING": peering}
    a, b = (
        OperatorProcess(user_kubeconfig(cp, user, tmp_path / d), tmp_path / d, {**env, "STREAMDIST_PRIORITY": p})
        for user, d, p in ((users[0], "a", "2"), (users[1], "b", "1"))
    )
    return a, b
