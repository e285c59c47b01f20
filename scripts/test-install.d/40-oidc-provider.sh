#!/usr/bin/env bash
# The OpenID Connect provider the OIDC tests start (tests/oidc_provider/provider.mjs): npm
# oidc-provider, pinned in package.json. Idempotent: installs only when it is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "40-oidc-provider: node and npm are needed (scripts/install.d/10-base.sh installs them)" >&2; exit 1
fi
if [[ ! -f node_modules/oidc-provider/package.json ]]; then
  echo "40-oidc-provider: npm install (package.json)"
  npm install --no-audit --no-fund --loglevel=error >/dev/null
fi
node -e "import('oidc-provider').then(() => console.log('oidc-provider', require('./node_modules/oidc-provider/package.json').version, 'ready'))"
