#!/usr/bin/env bash
# Starts the local real single-node cluster (dev/streamdist_dev/node.py: control plane on
# loopback, containerd + kubelet + kube-proxy + CoreDNS, CNI bridge sdbr0 10.244.0.0/24)
# in the background, under one state dir, and returns when the node is Ready and DNS
# answers. Prints `export KUBECONFIG=...` as the last line of stdout.
#
#   hack/node/up.sh            # state dir: $STREAMDIST_NODE_STATE or <repo>/.state/node
#   hack/node/down.sh          # stops it and removes every trace from the host
#
# Builds or reuses: the kube binaries (hack/build-bins.sh), MediaMTX, CoreDNS, kube-router and the
# images (hack/build-images.sh). Needs root. A node already running is left as it is.
set -euo pipefail
NODE_SCRIPT=up
# shellcheck source=hack/node/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

[[ "$(id -u)" == 0 ]] || { log "needs root"; exit 1; }
if [[ -f "$STATE/serve.pid" ]] && kill -0 "$(cat "$STATE/serve.pid")" 2>/dev/null && [[ -f "$STATE/ready" ]]; then
  log "already running (pid $(cat "$STATE/serve.pid"))"
  echo "export KUBECONFIG=$STATE/cp/kubeconfig"
  exit 0
fi
t0=$(date +%s)
bash "$ROOT/hack/install-node-debs.sh"
log "building or reusing the kube binaries, CoreDNS and the images"
bash "$ROOT/hack/build-bins.sh" >/dev/null
bash "$ROOT/hack/node/build-coredns.sh" >/dev/null
bash "$ROOT/hack/node/build-kube-router.sh" >/dev/null
bash "$ROOT/hack/build-images.sh" pause mediamtx ffmpeg operator >/dev/null
# a previous node: stop it, clean the host, start from an empty state dir
if [[ -d "$STATE" ]]; then
  bash "$ROOT/hack/node/down.sh" >/dev/null 2>&1 || true
  rm -rf "$STATE"
fi
mkdir -p "$STATE"
log "starting (log: $STATE/serve.log)"
cd "$ROOT"
setsid "$PY" -m streamdist_dev.node serve "$STATE" >"$STATE/serve.log" 2>&1 </dev/null &
echo $! >"$STATE/serve.pid"
pid=$!
shown=0
while [[ ! -f "$STATE/ready" ]]; do
  if ! kill -0 "$pid" 2>/dev/null; then
    log "failed; last lines of $STATE/serve.log:"; tail -n 40 "$STATE/serve.log" >&2
    exit 1
  fi
  n=$(grep -c '^node: ' "$STATE/serve.log" || true)
  if ((n > shown)); then grep '^node: ' "$STATE/serve.log" | tail -n $((n - shown)) | sed 's/^/node\/up: /' >&2; shown=$n; fi
  sleep 0.5
done
log "ready in $(( $(date +%s) - t0 ))s (state: $STATE)"
echo "export KUBECONFIG=$STATE/cp/kubeconfig"
