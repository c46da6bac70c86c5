#!/usr/bin/env bash
# Install, from Debian's own archive, the tools the media tests and the harness run:
#   ffmpeg      ffmpeg + ffprobe; Debian's build links libsrt, librtmp-free native RTMP(S)
#               and gnutls, so every output protocol streamdist renders can be exercised
#   srt-tools   srt-live-transmit, an SRT listener/caller independent of FFmpeg
#   openssl     self-signed certificates for the RTMPS receiver
#   lua5.4      kept for later tooling
#   iproute2    `ss`, to see which ports are bound
#   procps      `pkill`-free process inspection (ps) in debugging
#   ca-certificates, curl: the media tests call the routers' control API with curl
#   socat       relays a test client's TCP connection from another loopback address
#   chromium    the headless browser the control room's tests (streamdist ui) drive with
#               Playwright (which downloads no browser of its own)
#   linux-perf, valgrind: the mediaprofile benchmark (perf stat/record, callgrind)
#   iptables    the random loss of the impaired SRT link (dev/streamdist_dev/impair.py:
#               the `statistic` match, inside a network namespace the test creates)
#
# Idempotent: installs only what is missing (hack/lib/apt.sh).
set -euo pipefail

PKGS=(ffmpeg srt-tools openssl lua5.4 iproute2 procps ca-certificates curl socat chromium linux-perf valgrind iptables)

# shellcheck source=lib/apt.sh
source "$(dirname "$0")/lib/apt.sh"
apt_install_missing install-debs "${PKGS[@]}"
