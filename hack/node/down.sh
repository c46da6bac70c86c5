#!/usr/bin/env bash
# Stops the local node started by hack/node/up.sh and removes every trace of it from
# the host: processes, mounts (they lived in the node's own mount namespace), the
# bridge, iptables rules and chains (KUBE-*, CNI-*, STREAMDIST-NODE), kube-router's
# ipsets, the routing rule for the service CIDR, the cgroup tree
# /streamdist-node, and restores the sysctls it changed. Then checks that nothing is
# left and says so. The state dir (logs) stays for reading; up.sh starts a fresh one.
set -euo pipefail
NODE_SCRIPT=down
# shellcheck source=hack/node/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

if [[ -f "$STATE/serve.pid" ]]; then
  pid=$(cat "$STATE/serve.pid")
  if kill -0 "$pid" 2>/dev/null && grep -q "streamdist_dev.node" "/proc/$pid/cmdline" 2>/dev/null; then
    log "stopping (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && { log "still running after 60s: SIGKILL"; kill -KILL "$pid"; }
  fi
  rm -f "$STATE/serve.pid"
fi
cd "$ROOT"
"$PY" -m streamdist_dev.node cleanup "$STATE" || true

# Check: nothing of the node is left.
left=0
if pgrep -f -- "$STATE" >/dev/null; then log "processes left:"; pgrep -af -- "$STATE" >&2; left=1; fi
if grep -q -- "$STATE" /proc/mounts; then log "mounts left:"; grep -- "$STATE" /proc/mounts >&2; left=1; fi
if ip link show sdbr0 >/dev/null 2>&1; then log "bridge sdbr0 left"; left=1; fi
if iptables-save 2>/dev/null | grep -qE '(KUBE-|CNI-|STREAMDIST-NODE)'; then log "iptables rules left"; left=1; fi
if ipset list -n 2>/dev/null | grep -qE '^(KUBE-(SRC|DST)-|TMP-)'; then log "kube-router ipsets left"; left=1; fi
if ip rule show pref 10244 2>/dev/null | grep -q .; then log "routing rule 10244 (service CIDR) left"; left=1; fi
if ls -d /sys/fs/cgroup/*/streamdist-node >/dev/null 2>&1; then log "cgroups left"; left=1; fi
if ((left)); then exit 1; fi
log "stopped; no process, mount, bridge, iptables rule, ipset, routing rule or cgroup of the node is left"
