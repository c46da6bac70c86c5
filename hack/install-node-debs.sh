#!/usr/bin/env bash
# Install, from Debian's own archive, what the local real node (hack/node/, issue 7) runs:
#   containerd                   the container runtime (Debian 12 ships 1.6.x; CRI v1)
#   runc                         the OCI runtime containerd starts containers with
#   containernetworking-plugins  CNI plugins: bridge, host-local, portmap, loopback
#   iptables                     kube-proxy (iptables mode), the CNI bridge/portmap plugins
#   conntrack                    kube-proxy flushes UDP conntrack entries with it
#   debootstrap                  builds the FFmpeg and operator image rootfs from Debian
#   ebtables, ethtool, socat, util-linux, iproute2, kmod: kubelet/kube-proxy helpers
#   (socat for port-forward, nsenter from util-linux, ip/modprobe for the bridge)
#   gcc, libc6-dev               compile the tiny static `pause` program (sandbox image)
#   jq                           the image build scripts edit OCI JSON
#
# Idempotent: installs only what is missing and runs `apt-get update` only then.
set -euo pipefail

PKGS=(containerd runc containernetworking-plugins iptables conntrack debootstrap
      ebtables ethtool socat util-linux iproute2 kmod gcc libc6-dev jq ffmpeg)

missing=()
for p in "${PKGS[@]}"; do
  if [[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" != "installed" ]]; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-node-debs: all present: ${PKGS[*]}" >&2
  exit 0
fi

SUDO=()
if [[ "$(id -u)" != 0 ]]; then
  command -v sudo >/dev/null || { echo "install-node-debs: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO=(sudo)
fi

echo "install-node-debs: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
# --no-install-recommends; policy-rc.d-free: with no init system nothing is started.
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
