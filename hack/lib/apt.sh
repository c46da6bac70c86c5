# shellcheck shell=bash
# apt_install_missing NAME PKG...: install from Debian's archive the packages that are
# not installed yet; `apt-get update` runs only then, so a machine that already has
# everything makes no network call at all. NAME prefixes the messages.
# --no-install-recommends; with no init system, nothing a package ships is started.
apt_install_missing() {
  local name=$1
  shift
  local missing=() p
  for p in "$@"; do
    if [[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" != "installed" ]]; then
      missing+=("$p")
    fi
  done
  if ((${#missing[@]} == 0)); then
    echo "$name: all present: $*" >&2
    return 0
  fi
  local sudo=()
  if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null || { echo "$name: need root or sudo to install: ${missing[*]}" >&2; return 1; }
    sudo=(sudo)
  fi
  echo "$name: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
}
