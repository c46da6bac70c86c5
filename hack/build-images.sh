#!/usr/bin/env bash
# Builds the images the local real node (hack/node/) runs, with no registry and no
# image builder: each image is a root filesystem made here, packed as an OCI archive
# by hack/node/oci.py, for `ctr -n k8s.io images import`. Cached: an archive is
# rebuilt only when what it is made from changes (its recipe key is in its name).
#
# Usage: hack/build-images.sh [pause] [mediamtx] [ffmpeg] [operator]   (default: all)
#        hack/build-images.sh --print-dir
# Prints, on stdout, one line per image: "<name> <archive path>".
#
#   localhost/streamdist/pause:3.10.1   the sandbox (pod infra) image: Kubernetes' own
#                                       build/pause/linux/pause.c (from the pinned
#                                       k8s.io/kubernetes module) compiled -static
# Names: the operator and FFmpeg images carry the project's version (pyproject.toml, the
# chart's appVersion: the chart's defaults name them), MediaMTX its pinned release.
#
#   localhost/streamdist/mediamtx:1.20.1  scratch-like: only the binary hack/build-mediamtx.sh
#                                       builds, at /mediamtx, ENTRYPOINT ["/mediamtx"]
#   localhost/streamdist/ffmpeg:0.1.0   Debian 12 minbase (debootstrap) + Debian's ffmpeg
#                                       (images/ffmpeg/packages.txt, --no-install-recommends),
#                                       user 10001, ENTRYPOINT ["streamdist-ffmpeg"] (the
#                                       masking wrapper of images/ffmpeg/streamdist-ffmpeg)
#   localhost/streamdist/operator:0.1.0 the Dockerfile's equivalent: Debian 12's python3.11,
#                                       a venv at /opt/venv with this repo's wheel and its
#                                       pinned dependencies (binary wheels from PyPI), user
#                                       10001, ENTRYPOINT ["streamdist", "run"]
#
# Debian packages come from the Debian archive (debootstrap, then apt inside the
# chroot with bookworm, bookworm-updates and bookworm-security, like debian:12-slim).
# Cache: ${STREAMDIST_IMAGE_CACHE:-~/.cache/streamdist/images}.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=versions.env
source "$REPO_ROOT/hack/versions.env"
CACHE=${STREAMDIST_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/streamdist/images}
MIRROR=${STREAMDIST_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${STREAMDIST_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
SUITE=bookworm
# the project's version (pyproject.toml): the tag of the operator and FFmpeg images
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$REPO_ROOT/pyproject.toml" | head -n1)
PAUSE_VERSION=3.10.1 # kubeadm 1.34's PauseVersion
OCI="$REPO_ROOT/hack/node/oci.py"
# The run-time config (ENTRYPOINT, CMD, USER, ENV, EXPOSE, LABEL) and the build context
# of the operator and FFmpeg images come from their Dockerfiles, read by this parser:
# what `docker build` would make and what is built here cannot drift apart.
DOCKERFILE="$REPO_ROOT/hack/node/dockerfile.py"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}

log() { echo "build-images: $*" >&2; }
die() { echo "build-images: ERROR: $*" >&2; exit 1; }
now() { date +%s; }

[[ "${1:-}" == "--print-dir" ]] && { echo "$CACHE"; exit 0; }
[[ -n "$VERSION" ]] || die "no version in pyproject.toml"
[[ "$(id -u)" == 0 ]] || die "run as root (debootstrap, chroot and file ownership in the images)"
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9

# The recipe of an image: the bash functions that build it, as bash prints them (so an
# edit elsewhere in this script does not invalidate every cached image).
recipe() { declare -f "$@"; }

key() { # files and strings -> short hash
  { for a in "$@"; do if [[ -f "$a" ]]; then sha256sum <"$a"; else echo "$a"; fi; done; } | sha256sum | cut -c1-12
}

# The Debian minbase root filesystem every Debian-based image starts from (cached).
base_rootfs() {
  local dir="$CACHE/rootfs/$SUITE-minbase"
  if [[ ! -f "$dir/.done" ]]; then
    command -v debootstrap >/dev/null || die "debootstrap missing: run hack/install-node-debs.sh"
    log "debootstrap --variant=minbase $SUITE (once; about a minute)"
    local t0; t0=$(now)
    rm -rf "$dir"; mkdir -p "$(dirname "$dir")"
    debootstrap --variant=minbase "$SUITE" "$dir" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 ||
      die "debootstrap failed; see $CACHE/debootstrap.log"
    cat >"$dir/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
EOF
    # as in the debian:*-slim images: no docs, man pages or locales from later installs
    cat >"$dir/etc/dpkg/dpkg.cfg.d/01-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
    touch "$dir/.done"
    log "debootstrap took $(( $(now) - t0 ))s"
  fi
  echo "$dir"
}

# Runs a command chrooted into a rootfs, with /proc and the host's resolv.conf, in a
# private mount namespace (so nothing stays mounted, whatever happens).
in_chroot() { # rootfs cmd...
  local root=$1; shift
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  unshare -m --propagation private -- bash -c '
    root=$1; shift
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive HOME=/root "$@"
  ' _ "$root" "$@"
  local rc=$?
  : >"$root/etc/resolv.conf"
  return $rc
}

# A copy of the base rootfs to build one image in.
fresh_copy() { # dest
  local base; base=$(base_rootfs)
  rm -rf "$1"; mkdir -p "$1"
  cp -a "$base/." "$1/"
  rm -f "$1/.done"
}

slim() { # rootfs: what no image needs at run time
  rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/cache/debconf/*-old \
    "$1"/var/log/* "$1"/tmp/* "$1"/root/.cache "$1"/usr/share/doc/*/[!c]* \
    "$1"/usr/share/man "$1"/usr/share/info
  mkdir -p "$1/tmp"; chmod 1777 "$1/tmp"
}

add_user() { # rootfs name
  in_chroot "$1" sh -c "groupadd --system --gid 10001 $2 && useradd --system --uid 10001 --gid 10001 \
    --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin $2"
}

pack() { # rootfs name out [oci.py args...]
  local root=$1 name=$2 out=$3; shift 3
  python3 "$OCI" --rootfs "$root" --name "$name" --out "$out" "$@" >/dev/null
}

chroot_apt() { # rootfs packages...: Debian packages into the rootfs, no recommends, lists cleaned
  local root=$1; shift
  in_chroot "$root" sh -c "apt-get update -qq && apt-get install -y -qq --no-install-recommends $* >/dev/null && apt-get clean"
}

# The final stage's run-time config of a Dockerfile, as oci.py flags (one per line).
dockerfile_config() { # Dockerfile -> fills the array CONFIG
  mapfile -t CONFIG < <(python3 "$DOCKERFILE" "$1" --oci-args)
  [[ ${#CONFIG[@]} -gt 0 ]] || die "no run-time config read from $1"
}

# ------------------------------------------------------------------- the images

build_pause() {
  local src out k
  src=$(cd / && go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')/build/pause/linux/pause.c
  [[ -f "$src" ]] || die "no build/pause/linux/pause.c in k8s.io/kubernetes@$KUBE_VERSION"
  k=$(key "$src" "$OCI" "$PAUSE_VERSION" v1)
  out="$CACHE/pause-$PAUSE_VERSION-$k.tar"
  if [[ ! -f "$out" ]]; then
    log "pause: compiling $src -static"
    local root="$CACHE/work/pause"
    rm -rf "$root"; mkdir -p "$root"
    gcc -Os -Wall -static -DVERSION="v$PAUSE_VERSION-streamdist" -o "$root/pause" "$src"
    strip "$root/pause"
    pack "$root" "localhost/streamdist/pause:$PAUSE_VERSION" "$out" --entrypoint '["/pause"]' --user 65535:65535
    rm -rf "$root"
  fi
  echo "localhost/streamdist/pause:$PAUSE_VERSION $out"
}

build_mediamtx() {
  local bin out k
  bin=$(bash "$REPO_ROOT/hack/build-mediamtx.sh" | tail -n1)
  [[ -x "$bin" ]] || die "hack/build-mediamtx.sh gave no binary"
  k=$(key "$bin" "$OCI" "$MEDIAMTX_VERSION" v2)
  out="$CACHE/mediamtx-$MEDIAMTX_VERSION-$k.tar"
  if [[ ! -f "$out" ]]; then
    log "mediamtx: packing $bin"
    local root="$CACHE/work/mediamtx"
    rm -rf "$root"; mkdir -p "$root/tmp" "$root/etc"
    chmod 1777 "$root/tmp"
    install -m 0755 "$bin" "$root/mediamtx"
    # like the upstream image: the binary and nothing else (users are numeric)
    printf 'root:x:0:0:root:/:/sbin/nologin\nmediamtx:x:10001:10001::/nonexistent:/sbin/nologin\n' >"$root/etc/passwd"
    printf 'root:x:0:\nmediamtx:x:10001:\n' >"$root/etc/group"
    pack "$root" "localhost/streamdist/mediamtx:${MEDIAMTX_VERSION#v}" "$out" --entrypoint '["/mediamtx"]' --env PATH=/
    rm -rf "$root"
  fi
  echo "localhost/streamdist/mediamtx:${MEDIAMTX_VERSION#v} $out"
}

build_ffmpeg() {
  local pk="$REPO_ROOT/images/ffmpeg/packages.txt" out k pkgs
  local wrapper="$REPO_ROOT/images/ffmpeg/streamdist-ffmpeg"
  local switch="$REPO_ROOT/images/ffmpeg/streamdist_switch.py" switchlib=("$REPO_ROOT"/images/ffmpeg/switchlib/*.py)
  local monitor="$REPO_ROOT/images/ffmpeg/streamdist_confidence.py"
  pkgs=$(grep -v '^[[:space:]]*#' "$pk" | xargs)
  [[ -n "$pkgs" ]] || die "no packages in $pk"
  local df="$REPO_ROOT/images/ffmpeg/Dockerfile"
  k=$(key "$pk" "$wrapper" "$switch" "$monitor" "${switchlib[@]}" "$OCI" "$SUITE" "$df" "$DOCKERFILE" "$VERSION" \
    "$(recipe build_ffmpeg base_rootfs fresh_copy in_chroot chroot_apt add_user slim pack dockerfile_config)")
  out="$CACHE/ffmpeg-$k.tar"
  if [[ ! -f "$out" ]]; then
    local root="$CACHE/work/ffmpeg" t0; t0=$(now)
    fresh_copy "$root"
    log "ffmpeg: apt-get install --no-install-recommends $pkgs (in a chroot)"
    chroot_apt "$root" "$pkgs"
    add_user "$root" ffmpeg
    install -m 0755 "$wrapper" "$root/usr/local/bin/streamdist-ffmpeg"
    in_chroot "$root" perl -c /usr/local/bin/streamdist-ffmpeg 2>/dev/null || die "streamdist-ffmpeg does not compile"
    # the backup switcher: stdlib-only Python on Debian's python3-minimal + libpython3-stdlib;
    # its modules beside it (python puts the symlink's target directory on sys.path)
    install -D -m 0755 "$switch" "$root/usr/local/lib/streamdist-switch/streamdist_switch.py"
    install -D -m 0644 -t "$root/usr/local/lib/streamdist-switch/switchlib" "${switchlib[@]}"
    ln -sf ../lib/streamdist-switch/streamdist_switch.py "$root/usr/local/bin/streamdist-switch"
    # the confidence monitor (black, frozen, silent, thumbnail), beside the switch's modules
    install -D -m 0755 "$monitor" "$root/usr/local/lib/streamdist-switch/streamdist_confidence.py"
    ln -sf ../lib/streamdist-switch/streamdist_confidence.py "$root/usr/local/bin/streamdist-confidence"
    in_chroot "$root" sh -c "python3 -c 'import json, urllib.request, argparse, subprocess, signal, ctypes, selectors, fractions, statistics, hmac' &&
        python3 /usr/local/bin/streamdist-switch --help >/dev/null && python3 /usr/local/bin/streamdist-confidence --help >/dev/null &&
        test -f /usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf" ||
      die "streamdist-switch or streamdist-confidence does not run on the image's python3, or the slate font is missing (packages.txt?)"
    # the Dockerfile's checks: SRT and RTMPS are built in
    in_chroot "$root" sh -c "ffmpeg -hide_banner -protocols 2>/dev/null | grep -qx '  srt' && ffmpeg -hide_banner -protocols 2>/dev/null | grep -qx '  rtmps'" ||
      die "ffmpeg in the image lacks srt or rtmps"
    in_chroot "$root" srt-live-transmit -version >/dev/null 2>&1 || die "srt-live-transmit (srt-tools) missing from the image"
    slim "$root"
    log "ffmpeg: packing"
    dockerfile_config "$df"
    pack "$root" "localhost/streamdist/ffmpeg:$VERSION" "$out" "${CONFIG[@]}"
    rm -rf "$root"
    log "ffmpeg: took $(( $(now) - t0 ))s"
  fi
  echo "localhost/streamdist/ffmpeg:$VERSION $out"
}

build_operator() {
  local out k src df="$REPO_ROOT/Dockerfile" copies
  bash "$REPO_ROOT/hack/build-ui.sh" # the control room's assets ship inside the package
  # the wheel is built from exactly what the Dockerfile's build stage copies
  mapfile -t copies < <(python3 "$DOCKERFILE" "$df" --copies build)
  [[ ${#copies[@]} -gt 0 ]] || die "the Dockerfile's build stage copies nothing?"
  src=$(cd "$REPO_ROOT" && find "${copies[@]}" -type f ! -path '*/__pycache__/*' ! -path '*.egg-info/*' -print0 |
    sort -z | xargs -0 sha256sum | sha256sum | cut -c1-12)
  k=$(key "$src" "$OCI" "$SUITE" "$df" "$DOCKERFILE" \
    "$(recipe build_operator base_rootfs fresh_copy in_chroot chroot_apt add_user slim pack dockerfile_config)")
  out="$CACHE/operator-$k.tar"
  if [[ ! -f "$out" ]]; then
    local root="$CACHE/work/operator" t0; t0=$(now)
    fresh_copy "$root"
    log "operator: python3.11 + venv with this repo's wheel (in a chroot)"
    chroot_apt "$root" python3 python3-venv
    rm -rf "$root/src"; mkdir -p "$root/src"
    (cd "$REPO_ROOT" && cp -a --parents "${copies[@]}" "$root/src/")
    find "$root/src" \( -name __pycache__ -o -name '*.egg-info' \) -prune -exec rm -rf {} + || true
    # pip trusts what this host trusts (a TLS-intercepting proxy's CA, say), for the
    # build only: the bundle sits in /tmp, which slim() empties before packing
    local ca=${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
    [[ -f "$ca" ]] && cp "$ca" "$root/tmp/build-ca.crt"
    in_chroot "$root" sh -c 'set -e; cd /src
      export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
      [ -f /tmp/build-ca.crt ] && export PIP_CERT=/tmp/build-ca.crt
      python3 -m venv /opt/venv
      /opt/venv/bin/pip install -q --upgrade "setuptools>=68" wheel
      /opt/venv/bin/pip wheel -q --no-deps --no-build-isolation --wheel-dir /wheels .
      /opt/venv/bin/pip install -q --only-binary=:all: /wheels/streamdist-*.whl
      /opt/venv/bin/pip uninstall -q --yes setuptools wheel pip
      /opt/venv/bin/python -m compileall -q /opt/venv/lib
      /opt/venv/bin/python -c "import streamdist.cli, streamdist.handlers.registry, streamdist.ui.server"
      test -s /opt/venv/lib/python3*/site-packages/streamdist/ui/static/vendor/bootstrap.min.css
      /opt/venv/bin/streamdist --help >/dev/null'
    rm -rf "$root/src" "$root/wheels"
    add_user "$root" streamdist
    slim "$root"
    log "operator: packing"
    dockerfile_config "$df"
    pack "$root" "localhost/streamdist/operator:$VERSION" "$out" "${CONFIG[@]}"
    rm -rf "$root"
    log "operator: took $(( $(now) - t0 ))s"
  fi
  echo "localhost/streamdist/operator:$VERSION $out"
}

# ------------------------------------------------------------ kind's node image
#
# kind's own node images come from a registry; here, `kind-node` rebuilds the recipe of
# kind's base image (images/base/Dockerfile of the pinned sigs.k8s.io/kind module) on
# Debian 12 minbase with Debian's systemd, containerd, runc and CNI plugins, adds the
# Kubernetes binaries hack/build-bins.sh builds (kubeadm, kubelet, kubectl), and
# pre-imports into its containerd the images kubeadm runs, each built here from those
# same binaries: localhost/streamdist/kind/{kube-apiserver,kube-controller-manager,
# kube-scheduler,kube-proxy}:$KUBE_VERSION, .../etcd:$ETCD_VERSION, .../coredns:
# $COREDNS_VERSION, and the pause image. A cluster made from it takes a kubeadm patch
# naming that repository (dev/streamdist_dev/kind.py writes it). Its CNI is a static ptp
# config for the one node (no kindnetd image here) and its StorageClass has no
# provisioner (no local-path-provisioner image here).

KIND_REPO=localhost/streamdist/kind

# A scratch-like image holding one static binary at /usr/local/bin (as the upstream
# distroless images do), run as root like kubeadm's static pods.
binary_image() { # name binary tag out
  local root="$CACHE/work/kind-$1"
  rm -rf "$root"; mkdir -p "$root/usr/local/bin" "$root/etc" "$root/tmp" "$root/var/run"
  chmod 1777 "$root/tmp"
  install -m 0755 "$2" "$root/usr/local/bin/$1"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534::/nonexistent:/sbin/nologin\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  pack "$root" "$KIND_REPO/$1:$3" "$4" --entrypoint "[\"/usr/local/bin/$1\"]" \
    --env PATH=/usr/local/bin:/usr/bin:/bin
  rm -rf "$root"
}

# kube-proxy runs iptables and conntrack: Debian minbase with those.
kube_proxy_image() { # binary out
  local root="$CACHE/work/kind-kube-proxy"
  fresh_copy "$root"
  chroot_apt "$root" iptables conntrack kmod
  install -m 0755 "$1" "$root/usr/local/bin/kube-proxy"
  slim "$root"
  pack "$root" "$KIND_REPO/kube-proxy:$KUBE_VERSION" "$2" --entrypoint '["/usr/local/bin/kube-proxy"]'
  rm -rf "$root"
}

# Imports OCI archives into the containerd content store of a rootfs (what kind's own
# node image build does inside a container), with a containerd of the same release as
# the node's (Debian's), CRI off, for this once.
import_into() { # rootfs archives...
  local root=$1 dir="$CACHE/work/kind-import" pid i
  shift
  rm -rf "$dir"; mkdir -p "$dir"
  printf '%s\n' 'version = 2' "root = \"$root/var/lib/containerd\"" "state = \"$dir/state\"" \
    'disabled_plugins = ["io.containerd.grpc.v1.cri"]' '[grpc]' "  address = \"$dir/containerd.sock\"" >"$dir/config.toml"
  containerd --config "$dir/config.toml" >"$dir/containerd.log" 2>&1 &
  pid=$!
  for i in $(seq 1 100); do [[ -S "$dir/containerd.sock" ]] && break; sleep 0.1; done
  [[ -S "$dir/containerd.sock" ]] || { kill "$pid"; die "containerd for the import did not start: $(tail -5 "$dir/containerd.log")"; }
  for i in "$@"; do
    ctr --address "$dir/containerd.sock" -n k8s.io images import "$i" >/dev/null ||
      { kill "$pid"; die "import of $i into the kind node image failed"; }
  done
  ctr --address "$dir/containerd.sock" -n k8s.io images ls -q >&2
  kill "$pid"
  wait "$pid" || true
  rm -rf "$dir"
}

build_kind_node() {
  local kind_dir bins coredns pause_tar out k t0 root files comp
  kind_dir=$(cd / && go mod download -json "sigs.k8s.io/kind@$KIND_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')/images/base
  [[ -f "$kind_dir/Dockerfile" ]] || die "no images/base in sigs.k8s.io/kind@$KIND_VERSION"
  bins=$(bash "$REPO_ROOT/hack/build-bins.sh" etcd kube-apiserver kube-controller-manager kube-scheduler kube-proxy \
    kubelet kubectl kubeadm | tail -n1)
  coredns=$(bash "$REPO_ROOT/hack/node/build-coredns.sh" | tail -n1)
  pause_tar=$(build_pause | cut -d' ' -f2)
  files=$(cd "$kind_dir" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-12)
  k=$(key "$files" "$OCI" "$SUITE" "$pause_tar" "$coredns" "$KIND_VERSION" "$KUBE_VERSION" "$ETCD_VERSION" \
    "$KIND_CNI" "$KIND_CNI_MANIFEST" "$KIND_STORAGE_MANIFEST" \
    "$(recipe build_kind_node kind_base binary_image kube_proxy_image import_into base_rootfs fresh_copy in_chroot chroot_apt slim pack)")
  out="$CACHE/kind-node-$KUBE_VERSION-$k.tar"
  if [[ ! -f "$out" ]]; then
    t0=$(now)
    comp="$CACHE/work/kind-images"
    rm -rf "$comp"; mkdir -p "$comp"
    for c in kube-apiserver kube-controller-manager kube-scheduler; do
      binary_image "$c" "$bins/$c" "$KUBE_VERSION" "$comp/$c.tar"
    done
    binary_image etcd "$bins/etcd" "$ETCD_VERSION" "$comp/etcd.tar"
    binary_image coredns "$coredns" "$COREDNS_VERSION" "$comp/coredns.tar"
    kube_proxy_image "$bins/kube-proxy" "$comp/kube-proxy.tar"
    log "kind-node: component images built in $(( $(now) - t0 ))s"
    root="$CACHE/work/kind-node"
    fresh_copy "$root"
    kind_base "$root" "$kind_dir"
    install -m 0755 "$bins/kubeadm" "$bins/kubelet" "$bins/kubectl" "$root/usr/bin/"
    echo "$KUBE_VERSION" >"$root/kind/version"
    import_into "$root" "$pause_tar" "$comp"/*.tar
    rm -rf "$comp"
    slim "$root"
    log "kind-node: packing"
    pack "$root" "localhost/streamdist/kind-node:$KUBE_VERSION" "$out" \
      --entrypoint '["/usr/local/bin/entrypoint","/sbin/init"]' --env container=docker \
      --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --stop-signal 'SIGRTMIN+3'
    rm -rf "$root"
    log "kind-node: took $(( $(now) - t0 ))s"
  fi
  echo "localhost/streamdist/kind-node:$KUBE_VERSION $out"
}

# The one node's pod network: ptp + host-local (the plugins kindnetd itself drives).
KIND_CNI='{"cniVersion": "0.4.0", "name": "kind-ptp", "plugins": [
  {"type": "ptp", "ipMasq": true, "mtu": 1500,
   "ipam": {"type": "host-local", "dataDir": "/run/cni-ipam-state",
            "ranges": [[{"subnet": "10.244.0.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}'
KIND_CNI_MANIFEST='# streamdist kind node image: pods are wired by a static ptp CNI config
# (/etc/cni/net.d/10-streamdist-ptp.conflist, single node, 10.244.0.0/24): no CNI daemon.
apiVersion: v1
kind: ConfigMap
metadata:
  name: streamdist-kind-cni
  namespace: kube-system
data:
  cni: ptp + host-local, 10.244.0.0/24, single node'
KIND_STORAGE_MANIFEST='# No dynamic provisioner in streamdist kind node image (streamdist needs no volumes).
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer'

# kind's images/base/Dockerfile, step by step, on Debian's packages.
kind_base() { # rootfs kind-base-dir
  local root=$1 kb=$2 pause_name="localhost/streamdist/pause:$PAUSE_VERSION" p
  log "kind-node: kind's base packages (in a chroot)"
  in_chroot "$root" sh -c "apt-get update -qq && apt-get install -y -qq --no-install-recommends \
    systemd conntrack iptables nftables iproute2 ethtool util-linux mount kmod libseccomp2 pigz fuse-overlayfs \
    bash ca-certificates curl jq procps containerd runc containernetworking-plugins ebtables socat >/dev/null && apt-get clean"
  mkdir -p "$root/kind/bin" "$root/kind/manifests" "$root/opt/cni/bin" "$root/etc/cni/net.d" \
    "$root/etc/kubernetes/manifests" "$root/etc/systemd/system/kubelet.service.d" "$root/etc/containerd"
  install -m 0755 "$kb"/files/usr/local/bin/* "$root/usr/local/bin/"
  install -m 0755 "$kb"/files/kind/bin/* "$root/kind/bin/"
  install -m 0644 "$kb"/files/etc/crictl.yaml "$root/etc/"
  install -m 0644 "$kb"/files/etc/containerd/config.toml "$root/etc/containerd/config.toml"
  install -m 0644 "$kb"/files/etc/default/kubelet "$root/etc/default/"
  install -m 0644 "$kb"/files/etc/sysctl.d/* "$root/etc/sysctl.d/"
  install -m 0644 "$kb"/files/etc/systemd/system/*.service "$kb"/files/etc/systemd/system/*.slice "$root/etc/systemd/system/"
  install -m 0644 "$kb"/files/etc/systemd/system/kubelet.service.d/* "$root/etc/systemd/system/kubelet.service.d/"
  # Debian's containerd and runc where kind's units and scripts look for them
  ln -sf /usr/bin/containerd /usr/bin/ctr /usr/bin/containerd-shim-runc-v2 "$root/usr/local/bin/"
  for p in host-local loopback ptp portmap bridge; do ln -sf "/usr/lib/cni/$p" "$root/opt/cni/bin/$p"; done
  # No CAP_SYS_RESOURCE on these machines (hack/NODE.md): containers may not lower
  # their oom_score_adj; and the sandbox image is the one built here.
  sed -i -e 's/^\([[:space:]]*restrict_oom_score_adj[[:space:]]*=[[:space:]]*\).*/\1true/' \
    -e "s|^\([[:space:]]*sandbox_image[[:space:]]*=[[:space:]]*\).*|\1\"$pause_name\"|" "$root/etc/containerd/config.toml"
  grep -q "sandbox_image = \"$pause_name\"" "$root/etc/containerd/config.toml" || die "kind-node: sandbox_image not set"
  in_chroot "$root" sh -c 'ctr oci spec | jq ".hooks.createContainer[.hooks.createContainer| length] |= . + {\"path\": \"/kind/bin/mount-product-files.sh\"}" | jq "del(.process.rlimits)" > /etc/containerd/cri-base.json'
  in_chroot "$root" sh -c 'set -e
    find /lib/systemd/system/sysinit.target.wants/ -name "systemd-tmpfiles-setup.service" -delete
    rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* \
      /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* \
      /lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/*
    echo "ReadKMsg=no" >> /etc/systemd/journald.conf
    ln -sf /lib/systemd/systemd /sbin/init
    systemctl enable kubelet.service containerd.service undo-mount-hacks.service
    systemctl mask systemd-binfmt.service'
  # Lowering oom_score_adj needs CAP_SYS_RESOURCE, which these machines do not give
  # (hack/NODE.md): systemd fails a unit whose OOMScoreAdjust it cannot set (containerd's
  # -999, journald's -250). Those units keep the default score instead.
  local unit
  for unit in $(grep -lsE '^OOMScoreAdjust=-' "$root"/lib/systemd/system/*.service "$root"/etc/systemd/system/*.service); do
    mkdir -p "$root/etc/systemd/system/$(basename "$unit").d"
    printf '[Service]\nOOMScoreAdjust=0\n' >"$root/etc/systemd/system/$(basename "$unit").d/10-streamdist-oom.conf"
  done
  echo "$KIND_CNI" >"$root/etc/cni/net.d/10-streamdist-ptp.conflist"
  echo "$KIND_CNI_MANIFEST" >"$root/kind/manifests/default-cni.yaml"
  echo "$KIND_STORAGE_MANIFEST" >"$root/kind/manifests/default-storage.yaml"
}

wanted=("$@")
[[ ${#wanted[@]} -gt 0 ]] || wanted=(pause mediamtx ffmpeg operator)
for w in "${wanted[@]}"; do
  case "$w" in
    pause|mediamtx|ffmpeg|operator) "build_$w" ;;
    kind-node) build_kind_node ;;
    *) die "unknown image '$w' (pause, mediamtx, ffmpeg, operator, kind-node)" ;;
  esac
done
