#!/usr/bin/env bash
# Debian's Chromium for the browser tests (driven by PyPI playwright, which cannot download its
# own browsers here). Idempotent.
set -euo pipefail
if [[ -x /usr/bin/chromium ]]; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "browser: need root to install Debian chromium" >&2; exit 1
fi
echo "browser: apt-get install chromium"
# Another apt run (a parallel install step) may hold the lock: wait for it rather than fail.
apt-get -o DPkg::Lock::Timeout=600 update -qq
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq chromium >/dev/null
