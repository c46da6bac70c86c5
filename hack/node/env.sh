# Sourced by hack/node/up.sh and down.sh: the repository, the node's state dir, the
# Python that runs streamdist_dev.node (the venv's when there is one) and log().
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE=${STREAMDIST_NODE_STATE:-$ROOT/.state/node}
PY=${PYTHON:-python3}
[[ -x "$ROOT/.venv/bin/python" ]] && PY="$ROOT/.venv/bin/python"
log() { echo "node/$NODE_SCRIPT: $*" >&2; }
