# shellcheck shell=bash
# cached_build NAME VERSION BUILDER [ARGS...]: runs `BUILDER ARGS... SCRATCH`, which leaves
# the binary at SCRATCH/bin/NAME, and keeps it in the bin cache as
# <cache>/NAME-VERSION/NAME, once: skipped when present, one build at a time per NAME
# (flock; a second caller waits, then finds it built). Progress and the time taken go to
# stderr; the binary's path is printed on stdout.
cached_build() {
  local name=$1 version=$2; shift 2
  local cache=${STREAMDIST_BIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/streamdist/bin}
  local dest="$cache/$name-$version/$name"
  if [[ -x "$dest" ]]; then
    echo "build-$name: $name $version already built" >&2
    echo "$dest"; return 0
  fi
  command -v go >/dev/null || { echo "build-$name: go not found" >&2; return 1; }
  mkdir -p "$cache"
  (
    exec 9>"$cache/.lock-$name"
    flock 9
    [[ -x "$dest" ]] && exit 0
    scratch=$(mktemp -d "$cache/.build-$name.XXXXXX")
    # module copies are read-only: writable again before removal
    trap 'chmod -R u+w "$scratch" 2>/dev/null; rm -rf "$scratch"' EXIT
    t0=$(date +%s)
    # `|| exit 1`: set -e does not reach into a subshell on the left of `||`
    "$@" "$scratch" || exit 1
    mkdir -p "$(dirname "$dest")"
    mv -f "$scratch/bin/$name" "$dest.tmp" && mv -f "$dest.tmp" "$dest"
    echo "build-$name: took $(( $(date +%s) - t0 ))s" >&2
  ) || return 1
  echo "$dest"
}

# go_install_cached NAME VERSION PACKAGE LDFLAGS: `go install PACKAGE@VERSION` (the
# module's own go.mod and go.sum, checked against the Go checksum database), cached as
# cached_build says.
go_install_cached() {
  cached_build "$1" "$2" _go_install "$1" "$3@$2" "$4"
}

_go_install() { # name package@version ldflags scratch
  echo "build-$1: building $2 (a few minutes cold)" >&2
  (cd "$4" && CGO_ENABLED=0 GOBIN="$4/bin" nice -n 10 go install -trimpath -ldflags "$3" "$2")
}
