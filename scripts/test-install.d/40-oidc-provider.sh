#!/usr/bin/env bash
# The OpenID Connect provider the OIDC tests start (tests/oidc_provider/provider.mjs): npm
# oidc-provider, pinned in package.json and package-lock.json. Installed exactly from the lock
# (`npm ci`) when missing, when the lock changed, and always when CI=true (scripts/lib/outside.sh).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$HERE/../.."
source "$HERE/../lib/outside.sh"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "40-oidc-provider: node and npm are needed (scripts/install.d/10-base.sh installs them)" >&2; exit 1
fi
STAMP=$(af_stamp "${BASH_SOURCE[0]}" package.json package-lock.json)
if ! af_reusable node_modules "$STAMP" || [[ ! -f node_modules/oidc-provider/package.json ]]; then
  echo "40-oidc-provider: npm ci: $(af_why_build node_modules "$STAMP")"
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
  echo "$STAMP" >node_modules/.af-stamp
fi
# Smoke test: the provider module loads in this Node.
node -e "import('oidc-provider').then(() => console.log('oidc-provider', require('./node_modules/oidc-provider/package.json').version, 'ready'))"
