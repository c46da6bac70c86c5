#!/usr/bin/env bash
# Build promtool, Prometheus and Alertmanager at the versions pinned in
# hack/versions.env into the bin cache (~/.cache/streamdist/bin/<name>-<version>/<name>),
# each once (flock: a second caller waits, then finds it built), and print their paths.
#
#   hack/build-prometheus.sh [promtool] [prometheus] [alertmanager]   (default: all three)
#
# Why: no registry here ships them as packages (Debian's prometheus is 2.42, older than
# the rule syntax the chart is tested with, and pulls a web UI from elsewhere); the Go
# module proxy serves both modules. Prometheus' web UI is embedded only with the
# `builtinassets` tag and a Node build of its pages: built without it, the server and its
# API (what the e2e test uses) work and the UI pages say the assets are missing.
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
    alertmanager) go_install_cached alertmanager "$ALERTMANAGER_VERSION" "$am/cmd/alertmanager" \
      "$(ldflags "${ALERTMANAGER_VERSION#v}")" ;;
    *) echo "build-prometheus: unknown component $1" >&2; return 1 ;;
  esac
}

[[ $# -gt 0 ]] || set -- promtool prometheus alertmanager
for name in "$@"; do build "$name"; done
