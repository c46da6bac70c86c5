"""Destinations an output may not send to: the routers and ingests of streamdist itself.

An output whose destination is a router (``rtsp://<input>.<ns>.svc:8554/<input>``) or an
ingest (``<input>-ingest``) would publish into another input, possibly another
tenant's, with no pod of its own. The rule is about the Service an address names, in
every form cluster DNS resolves (short name, ``.ns``, ``.ns.svc``, the FQDN with or
without its trailing dot) and by its ClusterIP.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection

INGEST_SUFFIX = "-ingest"
MESSAGE = "the destination (spec.url or the URL of spec.urlFrom) must not be a streamdist router or ingest Service"


def service_of(host: str, namespace: str, cluster_domain: str) -> tuple[str, str] | None:
    """(namespace, service) a cluster DNS name resolves to, or None for other names."""
    labels = host.lower().rstrip(".").split(".")
    domain = cluster_domain.lower().strip(".").split(".")
    if len(labels) == 1:
        return namespace, labels[0]
    if len(labels) == 2:
        return labels[1], labels[0]
    if labels[2] != "svc" or labels[3:] not in ([], domain):
        return None
    return labels[1], labels[0]


def is_router(
    host: str,
    namespace: str,
    inputs: Collection[tuple[str, str]],
    router_ips: Collection[str],
    cluster_domain: str = "cluster.local",
) -> bool:
    """Whether `host` (of an output in `namespace`) is a router or ingest Service."""
    try:
        return str(ipaddress.ip_address(host.strip("[]"))) in router_ips
    except ValueError:
        pass
    found = service_of(host, namespace, cluster_domain)
    if found is None:
        return False
    ns, service = found
    if service.endswith(INGEST_SUFFIX):
        service = service[: -len(INGEST_SUFFIX)]
    return (ns, service) in inputs or (ns, found[1]) in inputs
