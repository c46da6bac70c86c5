#!/usr/bin/env bash
# Builds CoreDNS (the local node's cluster DNS) from the Go module proxy at the pinned
# version into the bin cache: <cache>/coredns-<V>/coredns. Skipped when present.
# Prints the binary's path as the last line of stdout.
#
# v1.12.1 is the CoreDNS release kubeadm 1.34 deploys (cmd/kubeadm/app/constants:
# CoreDNSVersion), i.e. the one Kubernetes 1.34 is tested with. Pinned here until
# hack/versions.env carries COREDNS_VERSION (which wins when set).
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=../versions.env
source "$REPO_ROOT/hack/versions.env"
COREDNS_VERSION=${COREDNS_VERSION:-v1.12.1}
# shellcheck source=../lib/go-install.sh
source "$REPO_ROOT/hack/lib/go-install.sh"
go_install_cached coredns "$COREDNS_VERSION" github.com/coredns/coredns \
  "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION"
