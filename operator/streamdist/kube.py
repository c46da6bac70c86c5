"""The operator's few calls to the Kubernetes API, each one named for what it does.

Server-side apply keeps child objects level-triggered: applying the same manifest twice
changes nothing, and a field another controller owns is taken back.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import kubernetes
from kubernetes.client import ApiClient, CoreV1Api, V1DeleteOptions, V1Preconditions
from kubernetes.client.exceptions import ApiException

from . import credentials
from .models import GROUP, VERSION
from .secret_policy import SecretMeta
from .status import now_iso

log = logging.getLogger("streamdist.kube")
FIELD_MANAGER = "streamdist"

PATHS = {
    ("v1", "Secret"): "/api/v1/namespaces/{ns}/secrets/{name}",
    ("networking.k8s.io/v1", "NetworkPolicy"): "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/{name}",
    ("v1", "ConfigMap"): "/api/v1/namespaces/{ns}/configmaps/{name}",
    ("v1", "Service"): "/api/v1/namespaces/{ns}/services/{name}",
    ("v1", "Pod"): "/api/v1/namespaces/{ns}/pods/{name}",
    ("apps/v1", "Deployment"): "/apis/apps/v1/namespaces/{ns}/deployments/{name}",
}
PLURALS = {"StreamInput": "streaminputs", "StreamOutput": "streamoutputs"}
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


class NameConflict(Exception):
    """A child's name is taken by an object another owner controls: never take it over."""


class Kube:
    """A thin, thread-safe wrapper: handlers run in kopf's executor threads."""

    def __init__(self, api: ApiClient | None = None) -> None:
        self.api = api or _default_client()
        self.core = CoreV1Api(self.api)

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str | None = None,
        query: list[tuple[str, str]] | None = None,
        accept: str = "application/json",
    ) -> Any:
        headers = {"Accept": accept}
        if content_type:
            headers["Content-Type"] = content_type
        _, url, headers, body, _ = self.api.param_serialize(
            method, path, query_params=query or [], header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        resp = self.api.call_api(method, url, header_params=headers, body=body, _request_timeout=30)
        data = resp.read()  # type: ignore[no-untyped-call]
        if not 200 <= resp.status <= 299:
            exc = ApiException(status=resp.status, reason=resp.reason)
            exc.body = data
            raise exc
        return json.loads(data) if data else None

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply of one child manifest; returns the object as stored."""
        meta = obj["metadata"]
        path = PATHS[(obj["apiVersion"], obj["kind"])].format(ns=meta["namespace"], name=meta["name"])
        return self._call(  # type: ignore[no-any-return]
            "PATCH",
            path,
            body=obj,
            content_type="application/apply-patch+yaml",
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
        )

    def apply_owned(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Apply a child only if it is new or already ours (its controller is our owner).

        Server-side apply with force would silently take over a Service of the same name
        that belongs to another input or output; creating first makes the check atomic.
        """
        meta = obj["metadata"]
        path = PATHS[(obj["apiVersion"], obj["kind"])].format(ns=meta["namespace"], name=meta["name"])
        try:
            return self._call("POST", path.rsplit("/", 1)[0], body=obj, content_type="application/json")  # type: ignore[no-any-return]
        except ApiException as exc:
            if exc.status != 409:
                raise
        current = self._call("GET", path) or {}
        mine = meta["ownerReferences"][0]
        ctrl = next((r for r in current.get("metadata", {}).get("ownerReferences") or [] if r.get("controller")), None)
        if ctrl is None or ctrl.get("uid") != mine["uid"]:
            owner = f"{ctrl['kind']} {ctrl['name']!r}" if ctrl else "no streamdist object"
            raise NameConflict(f"{obj['kind']} {meta['name']!r} already exists and belongs to {owner}")
        return self.apply(obj)

    def get(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """The stored object of a child manifest's kind and name; None when absent."""
        meta = obj["metadata"]
        path = PATHS[(obj["apiVersion"], obj["kind"])].format(ns=meta["namespace"], name=meta["name"])
        try:
            return self._call("GET", path)  # type: ignore[no-any-return]
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def create(self, obj: dict[str, Any]) -> bool:
        """Create a child; False when it exists already (a handler may run twice)."""
        meta = obj["metadata"]
        path = PATHS[(obj["apiVersion"], obj["kind"])].format(ns=meta["namespace"], name=meta["name"])
        try:
            self._call("POST", path.rsplit("/", 1)[0], body=obj, content_type="application/json")
            return True
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise

    def delete_pod(self, namespace: str, name: str, uid: str | None = None, grace_seconds: int = 5) -> None:
        body = V1DeleteOptions(preconditions=V1Preconditions(uid=uid), grace_period_seconds=grace_seconds)
        try:
            self.core.delete_namespaced_pod(name, namespace, body=body)
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise

    def delete_service(self, namespace: str, name: str, owner_uid: str) -> None:
        """Delete a Service only when its controller is `owner_uid` (names can collide)."""
        try:
            current = self.core.read_namespaced_service(name, namespace)
            refs = (current.metadata.owner_references if current.metadata else None) or []
            if not any(r.controller and r.uid == owner_uid for r in refs):
                return
            self.core.delete_namespaced_service(
                name,
                namespace,
                body=V1DeleteOptions(
                    preconditions=V1Preconditions(uid=current.metadata.uid if current.metadata else None)
                ),
            )
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise

    def patch_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURALS[kind]}/{name}/status"
        try:
            self._call("PATCH", path, body={"status": status}, content_type="application/merge-patch+json")
        except ApiException as exc:
            if exc.status != 404:  # deleted meanwhile: nothing to report on
                raise

    def read_secret_key(self, namespace: str, name: str, key: str) -> tuple[str, str] | None:
        """(value, resourceVersion) of one Secret key, or None when either is missing."""
        try:
            secret = self.core.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        raw = (secret.data or {}).get(key)
        if raw is None:
            return None
        version = str(secret.metadata.resource_version) if secret.metadata else ""
        return base64.b64decode(raw).decode("utf-8", "replace"), version

    def secret_meta(self, namespace: str, name: str) -> SecretMeta | None:
        """Labels, type and version of a Secret, without its data (None when absent).

        The Table form with the object's metadata carries the type as a column: no
        value of a Secret that does not opt in is ever fetched.
        """
        path = PATHS[("v1", "Secret")].format(ns=namespace, name=name)
        try:
            table = self._call("GET", path, query=[("includeObject", "Metadata")], accept=TABLE) or {}
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        row = (table.get("rows") or [{}])[0]
        columns = [c.get("name") for c in table.get("columnDefinitions") or []]
        cells = dict(zip(columns, row.get("cells") or [], strict=False))
        meta = (row.get("object") or {}).get("metadata") or {}
        return SecretMeta(meta.get("labels") or {}, str(cells.get("Type", "")), str(meta.get("resourceVersion", "")))

    def installation_key(self, namespace: str, name: str) -> str:
        """The key every router credential is derived from; created when missing.

        Two replicas starting together may both create it: the loser reads the winner's.
        """
        path = PATHS[("v1", "Secret")].format(ns=namespace, name=name)
        for _ in range(3):
            try:
                secret = self._call("GET", path) or {}
                return base64.b64decode((secret.get("data") or {})[credentials.KEY_FIELD]).decode()
            except ApiException as exc:
                if exc.status != 404:
                    raise
            body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                    "metadata": {"name": name, "namespace": namespace,
                                 "labels": {"app.kubernetes.io/managed-by": "streamdist"}},
                    "stringData": {credentials.KEY_FIELD: credentials.new_key()}}  # fmt: skip
            try:
                self._call("POST", path.rsplit("/", 1)[0], body=body, content_type="application/json")
            except ApiException as exc:
                if exc.status != 409:
                    raise
        raise RuntimeError("the installation key Secret could not be read after creating it")

    def peering_status(self, name: str, namespace: str | None) -> dict[str, Any]:
        """status of kopf's peering object (list: the operator may not `get` it)."""
        if namespace:
            path = f"/apis/kopf.dev/v1/namespaces/{namespace}/kopfpeerings"
        else:
            path = "/apis/kopf.dev/v1/clusterkopfpeerings"
        items = (self._call("GET", path, query=[("fieldSelector", f"metadata.name={name}")]) or {}).get("items") or []
        return (items[0].get("status") or {}) if items else {}

    def review(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a TokenReview or SubjectAccessReview; the API server's answer."""
        group, version = body["apiVersion"].split("/")
        path = f"/apis/{group}/{version}/{body['kind'].lower()}s"
        return self._call("POST", path, body=body, content_type="application/json") or {}

    def get_input(self, namespace: str, name: str) -> dict[str, Any] | None:
        """One StreamInput, by list with a field selector: the operator lists and watches
        its kinds and needs no `get` on them."""
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURALS['StreamInput']}"
        items = (self._call("GET", path, query=[("fieldSelector", f"metadata.name={name}")]) or {}).get("items") or []
        return items[0] if items else None

    def get_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get({"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": namespace, "name": name}})

    def live_pod_names(self, namespaces: tuple[str, ...] = ()) -> set[tuple[str, str]]:
        """(namespace, name) of every FFmpeg pod that exists now (in `namespaces`, or all)."""
        selector = [("labelSelector", "app.kubernetes.io/managed-by=streamdist,streamdist.io/output")]
        paths = [f"/api/v1/namespaces/{ns}/pods" for ns in namespaces] or ["/api/v1/pods"]
        items = [p for path in paths for p in (self._call("GET", path, query=selector) or {}).get("items") or []]
        return {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in items}

    def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """A core/v1 Event on a StreamInput/StreamOutput; never raises into a handler."""
        meta = obj["metadata"]
        ts = now_iso()
        body = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion", f"{GROUP}/{VERSION}"),
                "kind": obj["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "streamdist"},
            "reportingComponent": "streamdist",
            "firstTimestamp": ts,
            "lastTimestamp": ts,
            "count": 1,
        }
        try:
            self._call("POST", f"/api/v1/namespaces/{meta['namespace']}/events", body=body)
        except ApiException as exc:
            log.warning("event not posted reason=%s status=%s", reason, exc.status)


def _default_client() -> ApiClient:
    try:
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]
    cfg = kubernetes.client.Configuration.get_default_copy()
    cfg.connection_pool_maxsize = 32
    return ApiClient(cfg)
