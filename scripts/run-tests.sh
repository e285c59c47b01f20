#!/usr/bin/env bash
# `make test`: install the facility, install the test daemons, lint, then run every test. The tests'
# own fixtures start and stop the real daemons (hub, proxy, gateways, XRootD, Slurm, HTCondor, OIDC
# provider). Ends with the time each phase took.
set -euo pipefail
cd "$(dirname "$0")/.."
phases=()
phase() {  # phase NAME COMMAND...: run one phase, remember how long it took
  local name=$1 started=$SECONDS status=0
  shift
  echo "== make test: $name"
  "$@" || status=$?
  phases+=("$(printf '%-28s %4d s%s' "$name" $((SECONDS - started)) "$([[ $status -eq 0 ]] || echo "  (failed, exit $status)")")")
  return $status
}
summary() {
  echo "== make test: time per phase"
  printf '  %s\n' "${phases[@]}"
}
trap summary EXIT
phase "install (make install)" make --no-print-directory install
phase "test daemons (test-install.d)" bash scripts/install-test-deps.sh
phase "lint (make lint)" make --no-print-directory lint
mkdir -p test-artifacts
phase "tests (pytest)" .venv/bin/python -m pytest "$@"
