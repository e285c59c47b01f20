#!/usr/bin/env bash
# What a token-protected data lake (facility.yaml data.require_token, af/data_tokens.py) needs:
# XRootD's macaroons and ztn plugins (Debian xrootd-server-plugins, xrootd-client-plugins) and
# openssl for the servers' TLS certificate. Installed as root, idempotently.
set -euo pipefail
DEBIAN_PACKAGES=(xrootd-server-plugins xrootd-client-plugins openssl)

need_apt=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$pkg")
done
if ((${#need_apt[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-data-tokens: need root to install Debian packages: ${need_apt[*]}" >&2; exit 1
  fi
  echo "install-data-tokens: apt-get install ${need_apt[*]}"
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${need_apt[@]}" >/dev/null
fi
