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
CACHE_ROOT=${STREAMDIST_BIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/streamdist/bin}
DEST="$CACHE_ROOT/coredns-$COREDNS_VERSION/coredns"
if [[ -x "$DEST" ]]; then
  echo "build-coredns: coredns $COREDNS_VERSION already built" >&2
  echo "$DEST"; exit 0
fi
command -v go >/dev/null || { echo "build-coredns: go not found" >&2; exit 1; }
mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/.lock-coredns"
flock 9
if [[ ! -x "$DEST" ]]; then
  SCRATCH=$(mktemp -d "$CACHE_ROOT/.build-coredns.XXXXXX")
  trap 'rm -rf "$SCRATCH"' EXIT
  echo "build-coredns: building github.com/coredns/coredns@$COREDNS_VERSION (a few minutes cold)" >&2
  t0=$(date +%s)
  (cd "$SCRATCH" && CGO_ENABLED=0 GOBIN="$SCRATCH/bin" nice -n 10 go install -trimpath \
    -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" \
    "github.com/coredns/coredns@$COREDNS_VERSION")
  mkdir -p "$(dirname "$DEST")"
  mv -f "$SCRATCH/bin/coredns" "$DEST.tmp" && mv -f "$DEST.tmp" "$DEST"
  echo "build-coredns: took $(( $(date +%s) - t0 ))s" >&2
fi
echo "$DEST"
