#!/usr/bin/env bash
# Every test: unit, integration (real apiserver + KWOK), install, media (real MediaMTX +
# FFmpeg), reliability and bench smoke in parallel; then the e2e tests on the local real
# node on their own, since their timings (recovery within maxDelaySeconds + 5 s) are
# about the node, not about a machine busy with the other suites.
# pytest's exit 5 (no tests collected) is a failure here, never a pass.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
workers=${PYTEST_WORKERS:-2}
# A missing install step must fail, not pass as a skip: media tools always; the real
# node wherever we are root (where `make deps` installs it).
export STREAMDIST_REQUIRE_MEDIA=${STREAMDIST_REQUIRE_MEDIA:-1}
if [ "$(id -u)" = 0 ]; then export STREAMDIST_REQUIRE_NODE=${STREAMDIST_REQUIRE_NODE:-1}; fi
args=(-q -p no:cacheprovider)
parallel=("${args[@]}")
[ "$workers" -gt 1 ] && parallel+=(-n "$workers" --dist loadfile)

run() {
  "$VENV/bin/pytest" "$@"
  local rc=$?
  if [ $rc -eq 5 ]; then
    echo "run-tests: pytest collected no tests in: ${*: -1}: failing" >&2
    return 1
  fi
  return $rc
}

run "${parallel[@]}" --ignore=tests/e2e tests "$@"
rc_main=$?
run "${args[@]}" tests/e2e "$@"
rc_e2e=$?
echo "run-tests: main suites exit $rc_main, e2e exit $rc_e2e"
[ $rc_main -eq 0 ] && [ $rc_e2e -eq 0 ]
