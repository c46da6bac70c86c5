#!/usr/bin/env bash
# The third-party assets of `streamdist ui` (Bootstrap's CSS; the page's script is its own), installed from the
# npm registry at the versions pinned in ui/package-lock.json (`npm ci`, integrity
# checked) and copied into operator/streamdist/ui/static/vendor/, so they ship inside the
# Python package and the operator image: the page fetches nothing from anywhere else at
# run time. Skipped when the copies match the lock file already.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
UI="$REPO_ROOT/ui"
DEST="$REPO_ROOT/operator/streamdist/ui/static/vendor"
stamp=$(sha256sum "$UI/package-lock.json" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)
if [[ -f "$DEST/.stamp" && "$(cat "$DEST/.stamp")" == "$stamp" ]]; then
  echo "build-ui: assets up to date ($DEST)" >&2
  exit 0
fi
if ! command -v npm >/dev/null; then
  # shellcheck source=lib/apt.sh
  source "$REPO_ROOT/hack/lib/apt.sh"
  apt_install_missing build-ui nodejs npm
fi
echo "build-ui: npm ci in ui/ and copying Bootstrap into $DEST" >&2
(cd "$UI" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
rm -rf "$DEST"
mkdir -p "$DEST"
dist="$UI/node_modules/bootstrap/dist"
cp "$dist/css/bootstrap.min.css" "$DEST/"
# no source maps ship: drop the comments that point at them
sed -i "/sourceMappingURL=/d" "$DEST/bootstrap.min.css"
cp "$UI/node_modules/bootstrap/LICENSE" "$DEST/bootstrap.LICENSE"
echo "$stamp" >"$DEST/.stamp"
