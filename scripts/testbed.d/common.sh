# shellcheck shell=bash
# Helpers shared by scripts/testbed and scripts/lib.sh (test, demo). Set KE_LOG_TAG first to
# label messages.

log() { printf '[%s] %s\n' "${KE_LOG_TAG:-kafka-e2ee}" "$*" >&2; }
die() { printf '[%s] error: %s\n' "${KE_LOG_TAG:-kafka-e2ee}" "$*" >&2; exit 1; }

# apt_install PKG... : install the Debian packages that are missing (one `apt-get update` per run).
APT_UPDATED=0
apt_install() {
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  ((${#missing[@]})) || return 0
  log "apt-get install ${missing[*]}"
  if ((APT_UPDATED == 0)); then apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
