#!/usr/bin/env bash
# System packages the facility needs on Debian 12, installed as root, idempotently.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/apt.sh"
# acl: setfacl lets the per-user accounts pass through private folders (facility.accounts.grant_traverse).
DEBIAN_PACKAGES=(python3-venv acl)
# Node may come from elsewhere (nodesource); only ask apt when the commands are missing.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  DEBIAN_PACKAGES+=(nodejs npm)
fi
apt_install_missing install-system "${DEBIAN_PACKAGES[@]}"

# Node programs are pinned in package.json and package-lock.json, installed exactly from the lock.
if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then
  echo "install-system: npm ci (package-lock.json)"
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
fi
