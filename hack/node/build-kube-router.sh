#!/usr/bin/env bash
# Builds kube-router (only its NetworkPolicy controller runs: the local test node's
# NetworkPolicy enforcer) from the Go module proxy at the pinned version into the bin
# cache: <cache>/kube-router-<V>/kube-router. Skipped when present. Prints the binary's
# path as the last line of stdout.
#
# Why kube-router, and why only here (hack/NODE.md, "NetworkPolicy" has the details and
# the exact errors of the alternatives):
# - The node's CNI is the bridge plugin, which enforces no NetworkPolicy; an enforcer
#   must work beside it and beside kube-proxy (iptables mode) with what this kernel has:
#   iptables (nf_tables backend) with ipset, conntrack, physdev, NFLOG, NFQUEUE.
# - SIG Network's kube-network-policies (v0.7.0, v0.8.0 on the module proxy) sends new
#   connections to userspace with the nftables `queue` expression, which this kernel
#   lacks: `nft add rule inet t c meta l4proto tcp queue num 100 bypass` answers
#   "Error: Could not process rule: No such file or directory". It cannot enforce here.
# - Calico (felix needs its own CNI and workload interfaces), Cilium (eBPF datapath),
#   Antrea and kube-ovn (Open vSwitch) replace the bridge CNI; weave-npc and k3s' fork
#   of kube-router are not served by the module proxy; Debian packages no enforcer.
# - kube-router's controller programs iptables + ipset only and runs beside any CNI and
#   kube-proxy. The proxy serves only github.com/cloudnativelabs/kube-router/v2 v2.1.0,
#   for which security flaws are reported: it is acceptable ONLY as the enforcer of this
#   local test node (a host process started and stopped by dev/streamdist_dev/node.py). It
#   is never shipped: not in the chart, not in manifests/, not in any image.
#
# Built with the module's own go.mod and go.sum (hack/lib/go-install.sh), like CoreDNS.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=../versions.env
source "$REPO_ROOT/hack/versions.env"
: "${KUBE_ROUTER_VERSION:?missing in hack/versions.env}"
mod=github.com/cloudnativelabs/kube-router/v2
# shellcheck source=../lib/go-install.sh
source "$REPO_ROOT/hack/lib/go-install.sh"
go_install_cached kube-router "$KUBE_ROUTER_VERSION" "$mod/cmd/kube-router" "-s -w -X $mod/pkg/version.Version=$KUBE_ROUTER_VERSION"
