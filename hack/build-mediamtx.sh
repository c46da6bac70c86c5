#!/usr/bin/env bash
# Build MediaMTX at the release pinned in hack/versions.env into
#   ${STREAMDIST_CACHE:-~/.cache/streamdist}/bin/mediamtx-<version>/mediamtx
# and print that path on stdout. Skips the build when the binary is already there.
#
# Why this script exists: no registry ships MediaMTX as a package, and a fresh
# machine may fetch only from package registries. So the source comes from the Go
# module proxy and the one generated asset that upstream downloads from a CDN
# (hls.js, embedded in the HLS server's page) comes from the npm registry instead.
#
# Upstream's `go generate ./...` does three things; this script does each by hand:
#   internal/core/versiongetter      -> writes internal/core/VERSION from `git describe`:
#                                        the module zip has no .git, so we write the tag.
#   internal/servers/hls/hlsjsdownloader -> downloads hls.js release.zip (GitHub) and
#                                        extracts dist/hls.min.js into internal/servers/hls/:
#                                        we take the same hls.js release from npm.
#   internal/staticsources/rpicamera/mtxrpicamdownloader -> only compiled on linux/arm*,
#                                        not needed for amd64; refused below on arm.
#
# About the hash: upstream's hlsjsdownloader/HASH is the SHA-256 of GitHub's
# release.zip, not of hls.min.js, so it cannot check a file taken from npm. npm
# checks the tarball against the registry's sha512 integrity; on top of that this
# script pins the SHA-256 of dist/hls.min.js (its SHA-384, base64
# NsaFqWMOpy26cQK1F9VfwDdMFB97h7JCesDaPSI1sr79bzoezFrUOTYBhdsLJgha, matches the
# Subresource-Integrity value published for the same file on the npm CDN), and
# refuses to build if upstream's pinned hls.js VERSION or HASH ever differ from the
# ones this pin was made for.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck disable=SC1091
source "$HERE/versions.env"

: "${MEDIAMTX_VERSION:?MEDIAMTX_VERSION must be set in hack/versions.env}"
CACHE="${STREAMDIST_CACHE:-$HOME/.cache/streamdist}"
OUT_DIR="$CACHE/bin/mediamtx-$MEDIAMTX_VERSION"
OUT="$OUT_DIR/mediamtx"
MODULE=github.com/bluenviron/mediamtx

# Pins for the hls.js asset, per MediaMTX release (add a row when bumping MediaMTX).
case "$MEDIAMTX_VERSION" in
  v1.20.1)
    HLSJS_VERSION=v1.7.0
    HLSJS_UPSTREAM_ZIP_SHA256=e6f742917020e6f43b54270d71065763f2d92c4acf32dccf7dd76cb28832b2c3
    HLSJS_MIN_SHA256=1f28c6a43deedddbd59aea4c119bd788f5e2347772c19da1f6f92f8d0032d9dc
    ;;
  *)
    echo "build-mediamtx: no hls.js pin for MediaMTX $MEDIAMTX_VERSION; add one to $0" >&2
    exit 1
    ;;
esac

log() { echo "build-mediamtx: $*" >&2; }

if [[ -x "$OUT" ]] && [[ "$("$OUT" --version 2>/dev/null)" == "$MEDIAMTX_VERSION" ]]; then
  log "already built: $OUT"
  echo "$OUT"
  exit 0
fi

case "$(go env GOARCH)" in
  amd64|386) ;;
  *) log "GOARCH $(go env GOARCH) needs the rpicamera asset, which this script does not fetch"; exit 1 ;;
esac

for tool in go npm tar sha256sum; do
  command -v "$tool" >/dev/null || { log "missing tool: $tool"; exit 1; }
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/build-mediamtx.XXXXXX")"
trap 'chmod -R u+w "$WORK" 2>/dev/null || true; rm -rf "$WORK"' EXIT

start=$(date +%s)
log "downloading $MODULE@$MEDIAMTX_VERSION from the Go module proxy"
# -json prints an Error field (and exits non-zero) when the proxy refuses the version.
if ! json="$(cd "$WORK" && GOFLAGS=-mod=mod go mod download -json "$MODULE@$MEDIAMTX_VERSION")"; then
  log "go mod download failed:"; echo "$json" >&2; exit 1
fi
SRC_DIR="$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[[ -d "$SRC_DIR" ]] || { log "no source dir in: $json"; exit 1; }

# The module cache is read-only; generated files go into a private copy.
cp -r "$SRC_DIR" "$WORK/src"
chmod -R u+w "$WORK/src"
cd "$WORK/src"

# 1. version (what versiongetter would write from the git tag)
printf '%s' "$MEDIAMTX_VERSION" > internal/core/VERSION

# 2. hls.js from npm, checked against the pins above
dl=internal/servers/hls/hlsjsdownloader
want_ver="$(tr -d '[:space:]' < "$dl/VERSION")"
want_zip="$(tr -d '[:space:]' < "$dl/HASH")"
if [[ "$want_ver" != "$HLSJS_VERSION" || "$want_zip" != "$HLSJS_UPSTREAM_ZIP_SHA256" ]]; then
  log "upstream pins hls.js $want_ver ($want_zip); this script pins $HLSJS_VERSION ($HLSJS_UPSTREAM_ZIP_SHA256)"
  exit 1
fi
log "fetching hls.js@${HLSJS_VERSION#v} from the npm registry"
mkdir "$WORK/npm"
tgz="$(cd "$WORK/npm" && npm pack --silent "hls.js@${HLSJS_VERSION#v}" 2>/dev/null | tail -n1)"
tar -xzf "$WORK/npm/$tgz" -C "$WORK/npm" package/dist/hls.min.js
got="$(sha256sum "$WORK/npm/package/dist/hls.min.js" | cut -d' ' -f1)"
if [[ "$got" != "$HLSJS_MIN_SHA256" ]]; then
  log "hls.min.js SHA-256 mismatch: got $got, want $HLSJS_MIN_SHA256"; exit 1
fi
cp "$WORK/npm/package/dist/hls.min.js" internal/servers/hls/hls.min.js

# 3. build, as upstream's release binaries are built (static, no cgo)
log "compiling (CGO_ENABLED=0); this takes a few minutes on 2 cores"
mkdir -p "$OUT_DIR"
CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -o "$WORK/mediamtx" .
v="$("$WORK/mediamtx" --version)"; [[ "$v" == "$MEDIAMTX_VERSION" ]] || { log "built binary says version $v"; exit 1; }
mv "$WORK/mediamtx" "$OUT"
log "built $OUT in $(( $(date +%s) - start ))s"
echo "$OUT"
