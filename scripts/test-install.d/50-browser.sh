#!/usr/bin/env bash
# Debian's Chromium for the browser tests (driven by PyPI playwright, which cannot download its
# own browsers here). Idempotent.
set -euo pipefail
if [[ -x /usr/bin/chromium ]]; then
  exit 0
fi
source "$(dirname "${BASH_SOURCE[0]}")/../lib/apt.sh"
apt_install_missing browser chromium
