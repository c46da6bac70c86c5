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
from dataclasses import dataclass

from . import urls

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


# --- the operator's destination policy ---------------------------------------------------

# Refused unless the operator allows them back: addresses an output must not reach from
# inside the cluster (cloud metadata, the node itself, the pod's own loopback, link-local
# and link-local multicast), in IPv4 and IPv6, and the metadata services' addresses.
DEFAULT_DENY_NETS = (
    "169.254.0.0/16", "fe80::/10", "127.0.0.0/8", "::1/128", "0.0.0.0/8", "::/128",
    "224.0.0.0/24", "ff02::/16", "fd00:ec2::254/128", "100.100.100.200/32",
)  # fmt: skip
DEFAULT_DENY_HOSTS = (
    "metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal",
    "kubernetes", "kubernetes.default", "kubernetes.default.svc",
)  # fmt: skip
# Kubernetes control-plane ports (etcd, API server, kubelet, controller-manager,
# scheduler): refused on any host, whatever the policy allows back.
CONTROL_PLANE_PORTS = frozenset({2379, 2380, 6443, 10250, 10255, 10257, 10259})
Net = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class DestinationPolicy:
    """The defaults, minus what the operator allows back, plus what it denies.

    Entries are CIDRs or host names. Host names are compared as written (without case
    or a trailing dot), never resolved: a name resolves again when FFmpeg connects.
    """

    deny: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    cluster_domain: str = "cluster.local"

    def refusal(self, host: str, port: int) -> str | None:
        """Why the operator refuses to send to host:port; None when it may."""
        if port in CONTROL_PLANE_PORTS:
            ports = ", ".join(str(p) for p in sorted(CONTROL_PLANE_PORTS))
            return f"the destination port is a Kubernetes control-plane port ({ports})"
        address = urls.ip_literal(host.strip("[]"))
        if address is not None:
            return self._address(address)
        name = host.lower().rstrip(".")
        if self._listed(name, self.deny):
            return "the destination host is on the operator's deny list"
        defaults = (*DEFAULT_DENY_HOSTS, f"kubernetes.default.svc.{self.cluster_domain.lower().strip('.')}")
        if name in defaults and not self._listed(name, self.allow):
            return "the destination host is the Kubernetes API server or a cloud metadata service"
        return None

    def _address(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
        mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:a.b.c.d is a.b.c.d
        plain = ipaddress.ip_address(str(address).split("%")[0]) if mapped is None else mapped
        if _within(plain, _nets(self.deny)):
            return "the destination address is on the operator's deny list"
        if _within(plain, _nets(DEFAULT_DENY_NETS)) and not _within(plain, _nets(self.allow)):
            return (
                "the destination address is link-local, loopback, unspecified, link-local multicast "
                "or a metadata service"
            )
        return None

    @staticmethod
    def _listed(name: str, entries: tuple[str, ...]) -> bool:
        return name in {e.lower().rstrip(".") for e in entries if "/" not in e}


def _nets(entries: tuple[str, ...]) -> list[Net]:
    return [ipaddress.ip_network(e, strict=False) for e in entries if "/" in e]


def _within(address: ipaddress.IPv4Address | ipaddress.IPv6Address, nets: list[Net]) -> bool:
    return any(address.version == net.version and address in net for net in nets)
