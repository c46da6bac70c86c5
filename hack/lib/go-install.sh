# shellcheck shell=bash
# go_install_cached NAME VERSION PACKAGE LDFLAGS: `go install PACKAGE@VERSION` (the
# module's own go.mod and go.sum, checked against the Go checksum database) into the bin
# cache as <cache>/NAME-VERSION/NAME, once: skipped when present, one build at a time
# per NAME (flock; a second caller waits, then finds it built). Progress and the time
# taken go to stderr; the binary's path is printed on stdout.
go_install_cached() {
  local name=$1 version=$2 pkg=$3 ldflags=$4
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
    trap 'rm -rf "$scratch"' EXIT
    echo "build-$name: building $pkg@$version (a few minutes cold)" >&2
    t0=$(date +%s)
    # `|| exit 1`: set -e does not reach into a subshell on the left of `||`
    (cd "$scratch" && CGO_ENABLED=0 GOBIN="$scratch/bin" nice -n 10 go install -trimpath \
      -ldflags "$ldflags" "$pkg@$version") || exit 1
    mkdir -p "$(dirname "$dest")"
    mv -f "$scratch/bin/$name" "$dest.tmp" && mv -f "$dest.tmp" "$dest"
    echo "build-$name: took $(( $(date +%s) - t0 ))s" >&2
  ) || return 1
  echo "$dest"
}
