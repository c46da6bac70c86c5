#!/usr/bin/env bash
# Build promtool, Prometheus and Alertmanager at the versions pinned in
# hack/versions.env into the bin cache (~/.cache/streamdist/bin/<name>-<version>/<name>),
# each once (flock: a second caller waits, then finds it built), and print their paths.
#
#   hack/build-prometheus.sh [promtool] [prometheus] [alertmanager]   (default: all three)
#
# Why: no registry here ships them as packages (Debian's prometheus is 2.42, older than
# the rule syntax the chart is tested with); the Go module proxy serves both modules.
# Neither web UI is built (each is a Node/Elm build of its own): Prometheus embeds its
# UI only with the `builtinassets` tag, so without it the server and its API (what
# tests/install/test_alerting.py uses) work and the UI pages say the assets are missing; Alertmanager embeds
# ui/app/dist unconditionally, so its build gets that directory holding one page saying
# the UI was not built (its API and its receivers, the webhook, are unaffected).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck disable=SC1091
source "$HERE/versions.env"
# shellcheck source=lib/go-install.sh
source "$HERE/lib/go-install.sh"
: "${PROMETHEUS_VERSION:?missing in hack/versions.env}"
: "${ALERTMANAGER_VERSION:?missing in hack/versions.env}"

prom=github.com/prometheus/prometheus
am=github.com/prometheus/alertmanager
common=github.com/prometheus/common/version
# Prometheus 3.N.M is tagged v0.3NN.M for Go: the version it reports is 3.N.M.
prom_release() {
  local v=${PROMETHEUS_VERSION#v0.}
  echo "$((${v%%.*} / 100)).$((${v%%.*} % 100)).${v#*.}"
}
ldflags() { echo "-s -w -X $common.Version=$1 -X $common.Branch=HEAD -X $common.BuildUser=streamdist"; }

build() {
  case "$1" in
    promtool) go_install_cached promtool "$PROMETHEUS_VERSION" "$prom/cmd/promtool" "$(ldflags "$(prom_release)")" ;;
    prometheus) go_install_cached prometheus "$PROMETHEUS_VERSION" "$prom/cmd/prometheus" "$(ldflags "$(prom_release)")" ;;
    alertmanager) build_alertmanager ;;
    *) echo "build-prometheus: unknown component $1" >&2; return 1 ;;
  esac
}

# Alertmanager from a copy of its module (ui/app/dist added), built with the module's
# own go.mod and go.sum, cached like the others (hack/lib/go-install.sh).
build_alertmanager() {
  cached_build alertmanager "$ALERTMANAGER_VERSION" _alertmanager
}

_alertmanager() { # scratch
  local scratch=$1 dir ui
  dir=$(cd "$scratch" && GOFLAGS=-mod=mod go mod download -json "$am@$ALERTMANAGER_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [[ -d "$dir" ]] || { echo "build-alertmanager: module not downloaded" >&2; return 1; }
  cp -r "$dir" "$scratch/src" && chmod -R u+w "$scratch/src"
  for ui in elm mantine; do
    mkdir -p "$scratch/src/ui/app/dist/$ui"
    printf '%s\n' '<!doctype html><title>Alertmanager</title><p>The web UI is not built here (hack/build-prometheus.sh); the API under /api/v2 works.' \
      > "$scratch/src/ui/app/dist/$ui/index.html"
  done
  echo "build-alertmanager: building $am@$ALERTMANAGER_VERSION (a few minutes cold)" >&2
  (cd "$scratch/src" && CGO_ENABLED=0 nice -n 10 go build -trimpath -mod=readonly \
    -ldflags "$(ldflags "${ALERTMANAGER_VERSION#v}")" -o "$scratch/bin/alertmanager" ./cmd/alertmanager)
}

[[ $# -gt 0 ]] || set -- promtool prometheus alertmanager
for name in "$@"; do build "$name"; done
