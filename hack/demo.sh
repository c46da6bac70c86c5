#!/usr/bin/env bash
# make demo / make demo-down
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${VENV:-.venv}/bin/python" hack/demo.py "$@"
