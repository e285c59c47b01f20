#!/usr/bin/env bash
# XRootD server and client from Debian (the data lake origin and the XCache in front of it),
# installed as root, idempotently. `af up` writes their configuration; see af/xrootd.py.
set -euo pipefail
DEBIAN_PACKAGES=(xrootd-server xrootd-client)

need_apt=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$pkg")
done
if ((${#need_apt[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-xrootd: need root to install Debian packages: ${need_apt[*]}" >&2; exit 1
  fi
  echo "install-xrootd: apt-get install ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
