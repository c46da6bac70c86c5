#!/usr/bin/env bash
# Every test: unit, integration (real apiserver + KWOK), media (real MediaMTX + FFmpeg).
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
[ "$workers" -gt 1 ] && args+=(-n "$workers" --dist loadfile)
"$VENV/bin/pytest" "${args[@]}" tests "$@"
rc=$?
if [ $rc -eq 5 ]; then
  echo "run-tests: pytest collected no tests: failing" >&2
  exit 1
fi
exit $rc
