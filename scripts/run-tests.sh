#!/usr/bin/env bash
# `make test`: install the test daemons, lint (ruff, import contracts), then run every test. The
# tests' own fixtures start and stop the real daemons (hub, proxy, gateways, XRootD, Slurm, HTCondor, OIDC provider).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/lint-imports
mkdir -p test-artifacts
exec .venv/bin/python -m pytest "$@"
