#!/usr/bin/env bash
# Install, from Debian's own archive, what the local real node (hack/node/, issue 7) runs:
#   containerd                   the container runtime (Debian 12 ships 1.6.x; CRI v1)
#   runc                         the OCI runtime containerd starts containers with
#   containernetworking-plugins  CNI plugins: bridge, host-local, portmap, loopback
#   iptables                     kube-proxy (iptables mode), the CNI bridge/portmap plugins
#   conntrack                    kube-proxy flushes UDP conntrack entries with it
#   ipset                        kube-router's NetworkPolicy controller (the node's enforcer)
#   debootstrap                  builds the FFmpeg and operator image rootfs from Debian
#   ebtables, ethtool, socat, util-linux, iproute2, kmod: kubelet/kube-proxy helpers
#   (socat for port-forward, nsenter from util-linux, ip/modprobe for the bridge)
#   gcc, libc6-dev               compile the tiny static `pause` program (sandbox image)
#   jq                           the image build scripts edit OCI JSON
#   skopeo                       pushes the built images to $REGISTRY (make demo on a cluster
#                                that pulls from a registry)
#   docker-registry              Distribution's registry: the e2e test of that push
#   docker.io                    Docker (20.10): kind runs its nodes in it (tests/e2e/test_kind_streaming.py
#                                starts its own dockerd, no iptables rules; nothing is started at install)
#
# Idempotent: installs only what is missing (hack/lib/apt.sh).
set -euo pipefail

PKGS=(containerd runc containernetworking-plugins iptables ipset conntrack debootstrap
      ebtables ethtool socat util-linux iproute2 kmod gcc libc6-dev jq ffmpeg skopeo docker-registry docker.io)

# shellcheck source=lib/apt.sh
source "$(dirname "$0")/lib/apt.sh"
apt_install_missing install-node-debs "${PKGS[@]}"
