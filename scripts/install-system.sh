#!/usr/bin/env bash
# Install what the facility needs to run (`make install`): every scripts/install.d/*.sh in order.
# Each drop-in is idempotent and installs one part (base tools, XRootD, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
for step in scripts/install.d/*.sh; do
  bash "$step"
done
