#!/usr/bin/env bash
# Install, from Debian's own archive, the tools the media tests and the harness run:
#   ffmpeg      ffmpeg + ffprobe; Debian's build links libsrt, librtmp-free native RTMP(S)
#               and gnutls, so every output protocol streamdist renders can be exercised
#   srt-tools   srt-live-transmit, an SRT listener/caller independent of FFmpeg
#   openssl     self-signed certificates for the RTMPS receiver
#   lua5.4      kept for later tooling
#   iproute2    `ss`, to see which ports are bound
#   procps      `pkill`-free process inspection (ps) in debugging
#   ca-certificates, curl: harmless helpers used in debugging the control API
#
# Idempotent: installs only what is missing and runs `apt-get update` only then,
# so a machine that already has everything does no network call at all.
set -euo pipefail

PKGS=(ffmpeg srt-tools openssl lua5.4 iproute2 procps ca-certificates curl)

missing=()
for p in "${PKGS[@]}"; do
  if [[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" != "installed" ]]; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-debs: all present: ${PKGS[*]}" >&2
  exit 0
fi

SUDO=()
if [[ "$(id -u)" != 0 ]]; then
  command -v sudo >/dev/null || { echo "install-debs: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO=(sudo)
fi

echo "install-debs: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
