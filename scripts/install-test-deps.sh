#!/usr/bin/env bash
# Install what only the tests need (`make test`): the real daemons of the batch backends, the
# browser, the OIDC provider. Every scripts/test-install.d/*.sh in order, each idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
shopt -s nullglob
for step in scripts/test-install.d/*.sh; do
  echo "== $step"
  bash "$step"
done
