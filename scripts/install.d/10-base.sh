#!/usr/bin/env bash
# System packages the facility needs on Debian 12, installed as root, idempotently.
set -euo pipefail
DEBIAN_PACKAGES=(nodejs npm python3-venv)

need_apt=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$pkg")
done
# Node may come from elsewhere (nodesource); only ask apt when the commands are missing.
if command -v node >/dev/null && command -v npm >/dev/null; then
  need_apt=("${need_apt[@]/nodejs}"); need_apt=("${need_apt[@]/npm}")
fi
need_apt=($(printf '%s\n' "${need_apt[@]}" | grep -v '^$' || true))
if ((${#need_apt[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-system: need root to install Debian packages: ${need_apt[*]}" >&2; exit 1
  fi
  echo "install-system: apt-get install ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# Node programs are pinned in package.json and installed into ./node_modules.
if [[ ! -d node_modules || package.json -nt node_modules/.package-lock.json ]]; then
  echo "install-system: npm install (package.json)"
  npm install --no-audit --no-fund --loglevel=error >/dev/null
fi
