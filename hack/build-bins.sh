#!/usr/bin/env bash
# Builds the real control-plane binaries the tests run (etcd, the Kubernetes
# components, kwok, helm) from the Go module proxy, at the versions pinned in
# hack/versions.env, into a per-user cache. Binaries already there are skipped.
#
# Usage:
#   hack/build-bins.sh [COMPONENT...]   build what is missing (all, or only those named)
#   hack/build-bins.sh --print-dir      print the bin dir (builds nothing)
#   hack/build-bins.sh --list           print the component names
#   hack/build-bins.sh --tidy           rewrite hack/gobuild/*/go.mod + go.sum after a
#                                       version bump in hack/versions.env (needs the proxy)
#
# Layout (cache root: $STREAMDIST_BIN_CACHE, default ~/.cache/streamdist/bin):
#   <root>/<component>-<version>/<component>   one dir per built binary and version
#   <root>/kwok-<V>/stages/                    kwok's own Stage YAMLs (kustomize/stage of
#                                              the sigs.k8s.io/kwok module), e.g. pod/fast/
#   <root>/kube-<V>_etcd-<V>_kwok-<V>_helm-<V>/ symlinks to the above: the "bin dir"
#                                              (kwok's Stage YAMLs are its kwok-stages/)
# The bin dir is printed as the last line of stdout; progress and timings go to stderr.
#
# The Kubernetes commands are built in hack/gobuild/kubernetes (our go.mod replaces
# every k8s.io staging module with its published v0.X.Y), etcd in hack/gobuild/etcd
# (a main calling etcdmain.Main); both go.sum files are committed. kwok and helm are
# built with `go install module/cmd@version`, which uses the module's own go.mod and
# go.sum, checked against the Go checksum database.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HACK="$REPO_ROOT/hack"
# shellcheck source=versions.env
source "$HACK/versions.env"
: "${KUBE_VERSION:?missing in hack/versions.env}"
: "${ETCD_VERSION:?missing in hack/versions.env}"
: "${KWOK_VERSION:?missing in hack/versions.env}"
: "${HELM_VERSION:?missing in hack/versions.env}"

CACHE_ROOT=${STREAMDIST_BIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/streamdist/bin}
BIN_DIR="$CACHE_ROOT/kube-${KUBE_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_helm-${HELM_VERSION}"

KUBE_COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy)
ALL_COMPONENTS=(etcd "${KUBE_COMPONENTS[@]}" kwok helm)
# Built only when named: kind, and kubeadm for kind's node image (hack/build-images.sh kind-node).
OPTIONAL_COMPONENTS=(kubeadm kind)

# v1.34.4 -> staging modules at v0.34.4; major 1, minor 34.
KUBE_STAGING_VERSION="v0.${KUBE_VERSION#v1.}"
KUBE_MINOR=$(echo "$KUBE_VERSION" | cut -d. -f2)

export CGO_ENABLED=0
GO_BUILD_FLAGS=(-trimpath)

log() { echo "build-bins: $*" >&2; }
die() { echo "build-bins: ERROR: $*" >&2; exit 1; }

version_of() {
  case "$1" in
    etcd) echo "$ETCD_VERSION" ;;
    kwok) echo "$KWOK_VERSION" ;;
    helm) echo "$HELM_VERSION" ;;
    kind) echo "${KIND_VERSION:?missing in hack/versions.env}" ;;
    kube-*|kubectl|kubelet|kubeadm) echo "$KUBE_VERSION" ;;
    *) die "unknown component '$1' (known: ${ALL_COMPONENTS[*]})" ;;
  esac
}
bin_path() { echo "$CACHE_ROOT/$1-$(version_of "$1")/$1"; }

# The go.mod files must agree with hack/versions.env, or the build would silently
# use other versions than the pinned ones.
check_mods() {
  local got
  got=$(cd "$HACK/gobuild/kubernetes" && go list -m -f '{{.Version}}' k8s.io/kubernetes)
  [[ "$got" == "$KUBE_VERSION" ]] ||
    die "hack/gobuild/kubernetes/go.mod has k8s.io/kubernetes $got, versions.env says $KUBE_VERSION: run hack/build-bins.sh --tidy"
  got=$(cd "$HACK/gobuild/kubernetes" && go list -m -f '{{if .Replace}}{{.Replace.Version}}{{end}}' k8s.io/api)
  [[ "$got" == "$KUBE_STAGING_VERSION" ]] ||
    die "hack/gobuild/kubernetes/go.mod replaces k8s.io/api with '$got', expected $KUBE_STAGING_VERSION: run hack/build-bins.sh --tidy"
  got=$(cd "$HACK/gobuild/etcd" && go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
  [[ "$got" == "$ETCD_VERSION" ]] ||
    die "hack/gobuild/etcd/go.mod has etcd server $got, versions.env says $ETCD_VERSION: run hack/build-bins.sh --tidy"
}

tidy() {
  local kdir="$HACK/gobuild/kubernetes" edir="$HACK/gobuild/etcd" gomod
  log "tidy: k8s.io/kubernetes@$KUBE_VERSION, staging modules @$KUBE_STAGING_VERSION"
  gomod=$(cd / && go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  [[ -f "$gomod" ]] || die "could not download k8s.io/kubernetes@$KUBE_VERSION"
  # The staging modules are those kubernetes requires at v0.0.0 (and replaces with ./staging/...).
  local staging
  staging=$(awk '$2 == "v0.0.0" && $1 ~ /^k8s\.io\// {print $1}' "$gomod" | sort -u)
  {
    echo '// Managed by hack/build-bins.sh --tidy from hack/versions.env; do not edit by hand.'
    echo 'module streamdist.io/hack/gobuild/kubernetes'
    echo
    echo "$(grep -m1 '^go ' "$gomod")"
    grep '^godebug ' "$gomod" | sed 's/^/\n/' || true
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    echo 'replace ('
    local m
    for m in $staging; do printf '\t%s => %s %s\n' "$m" "$m" "$KUBE_STAGING_VERSION"; done
    echo ')'
  } > "$kdir/go.mod"
  rm -f "$kdir/go.sum"
  (cd "$kdir" && go mod tidy)
  log "tidy: go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  (cd "$edir" && go mod edit -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION" && go mod tidy)
  check_mods
  log "tidy: done; commit hack/gobuild/*/go.mod and go.sum"
}

# Links every built binary of the current pins into BIN_DIR.
link_bin_dir() {
  mkdir -p "$BIN_DIR"
  local c p
  for c in "${ALL_COMPONENTS[@]}" "${OPTIONAL_COMPONENTS[@]}"; do
    p=$(bin_path "$c")
    if [[ -x "$p" ]]; then
      ln -sfn "../$c-$(version_of "$c")/$c" "$BIN_DIR/$c"
    fi
  done
  if [[ -d "$(kwok_stages_dir)" ]]; then
    ln -sfn "../kwok-$KWOK_VERSION/stages" "$BIN_DIR/kwok-stages"
  fi
}

kwok_stages_dir() { echo "$CACHE_ROOT/kwok-$KWOK_VERSION/stages"; }

# Copies the Stage YAMLs shipped in the kwok module (kustomize/stage: pod/fast,
# pod/general, pod/chaos, node/fast, node/heartbeat...) beside the kwok binary, so
# tests can start kwok with its default stages plus their own via --config.
copy_kwok_stages() {
  local dir dest
  dest=$(kwok_stages_dir)
  dir=$(cd / && go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [[ -d "$dir/kustomize/stage" ]] || die "no kustomize/stage in sigs.k8s.io/kwok@$KWOK_VERSION"
  rm -rf "$dest.tmp"
  mkdir -p "$dest.tmp"
  (cd "$dir/kustomize/stage" && find . -name '*.yaml' -not -path '*/testdata/*' -not -name kustomization.yaml |
    while read -r f; do mkdir -p "$dest.tmp/$(dirname "$f")"; cp "$f" "$dest.tmp/$f"; done)
  chmod -R u+w "$dest.tmp"
  rm -rf "$dest"
  mv "$dest.tmp" "$dest"
}

# Moves a freshly built binary from the scratch dir into its cache dir.
install_bin() { # component built-file
  local dest
  dest=$(bin_path "$1")
  mkdir -p "$(dirname "$dest")"
  mv -f "$2" "$dest.tmp"
  mv -f "$dest.tmp" "$dest"
}

TIMINGS=()
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

build_kube() { # components...
  local ldflags t0 t1 c pkgs=()
  for c in "$@"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  ldflags="-s -w"
  local pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$KUBE_MINOR -X $pkg.gitTreeState=clean"
  done
  log "building $* ($KUBE_VERSION) in one go build"
  t0=$(now)
  (cd "$HACK/gobuild/kubernetes" &&
    go build -mod=readonly "${GO_BUILD_FLAGS[@]}" -ldflags "$ldflags" -o "$SCRATCH/kube/" "${pkgs[@]}")
  t1=$(now)
  for c in "$@"; do install_bin "$c" "$SCRATCH/kube/$c"; done
  TIMINGS+=("$(elapsed "$t0" "$t1")s  $* ($KUBE_VERSION, one go build)")
}

build_etcd() {
  local t0 t1
  log "building etcd ($ETCD_VERSION)"
  t0=$(now)
  (cd "$HACK/gobuild/etcd" &&
    go build -mod=readonly "${GO_BUILD_FLAGS[@]}" -ldflags "-s -w" -o "$SCRATCH/etcd" .)
  t1=$(now)
  install_bin etcd "$SCRATCH/etcd"
  TIMINGS+=("$(elapsed "$t0" "$t1")s  etcd ($ETCD_VERSION)")
}

# go install module/cmd@version into the scratch dir (GOBIN), outside any module.
go_install() { # component package@version ldflags
  local t0 t1
  log "building $1 ($2)"
  t0=$(now)
  (cd "$SCRATCH" && GOBIN="$SCRATCH/gobin" GOFLAGS="${GOFLAGS:-}" \
    go install "${GO_BUILD_FLAGS[@]}" -ldflags "$3" "$2")
  t1=$(now)
  install_bin "$1" "$SCRATCH/gobin/$1"
  [[ "$1" != kwok ]] || copy_kwok_stages
  TIMINGS+=("$(elapsed "$t0" "$t1")s  $1 (${2#*@})")
}

build_kwok() {
  go_install kwok "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" \
    "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v} -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${KUBE_VERSION#v}"
}

build_kind() {
  go_install kind "sigs.k8s.io/kind@$KIND_VERSION" "-s -w"
}

build_helm() {
  local v=helm.sh/helm/v3
  go_install helm "$v/cmd/helm@$HELM_VERSION" \
    "-s -w -X $v/internal/version.version=$HELM_VERSION -X $v/internal/version.gitTreeState=clean \
-X $v/pkg/lint/rules.k8sVersionMajor=1 -X $v/pkg/lint/rules.k8sVersionMinor=$KUBE_MINOR \
-X $v/pkg/chartutil.k8sVersionMajor=1 -X $v/pkg/chartutil.k8sVersionMinor=$KUBE_MINOR"
}

main() {
  case "${1:-}" in
    --print-dir) echo "$BIN_DIR"; return 0 ;;
    --list) printf '%s\n' "${ALL_COMPONENTS[@]}"; return 0 ;;
    --tidy) command -v go >/dev/null || die "go not found"; tidy; return 0 ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; return 0 ;;
    -*) die "unknown option $1" ;;
  esac

  local wanted=("$@") c
  [[ ${#wanted[@]} -gt 0 ]] || wanted=("${ALL_COMPONENTS[@]}")
  for c in "${wanted[@]}"; do version_of "$c" >/dev/null; done

  local missing=() stages=0
  find_missing() {
    missing=()
    for c in "${wanted[@]}"; do
      [[ -x "$(bin_path "$c")" ]] || missing+=("$c")
    done
    stages=0
    if [[ " ${wanted[*]} " == *" kwok "* && ! -d "$(kwok_stages_dir)" ]]; then stages=1; fi
  }
  find_missing

  mkdir -p "$CACHE_ROOT"
  if [[ ${#missing[@]} -gt 0 || $stages -eq 1 ]]; then
    command -v go >/dev/null || die "go not found in PATH (Go >= 1.26 is needed)"
    # One build at a time per cache: a second caller waits, then finds the binaries built.
    exec 9>"$CACHE_ROOT/.lock"
    flock 9
    find_missing
    # kwok built by an older version of this script, without its Stage YAMLs beside it.
    if [[ $stages -eq 1 && " ${missing[*]} " != *" kwok "* ]]; then copy_kwok_stages; fi
  fi

  if [[ ${#missing[@]} -gt 0 ]]; then
    check_mods
    SCRATCH=$(mktemp -d "$CACHE_ROOT/.build.XXXXXX")
    trap 'rm -rf "$SCRATCH"' EXIT
    log "go: $(go version); building: ${missing[*]}"
    local total0 total1 kube=()
    total0=$(now)
    for c in "${missing[@]}"; do
      case "$c" in
        etcd) build_etcd ;;
        kwok) build_kwok ;;
        helm) build_helm ;;
        kind) build_kind ;;
        *) kube+=("$c") ;;
      esac
    done
    [[ ${#kube[@]} -eq 0 ]] || build_kube "${kube[@]}"
    total1=$(now)
    local t
    for t in "${TIMINGS[@]}"; do log "took $t"; done
    log "total $(elapsed "$total0" "$total1")s"
  else
    log "all of ${wanted[*]} already built"
  fi

  link_bin_dir
  echo "$BIN_DIR"
}

main "$@"
