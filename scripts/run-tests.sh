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
# Two workers (AF_TEST_WORKERS): the facility tests in order on one, the modules marked
# no_facility beside them (tests/conftest.py's scheduler). Arguments replace the default set.
workers=(-n "${AF_TEST_WORKERS:-2}" --dist loadscope)
[[ ${AF_TEST_WORKERS:-2} == 1 ]] && workers=()
# The image tests build the images (8.5 min cold): `make test-images` runs them (README).
phase "tests (pytest)" .venv/bin/python -m pytest "${workers[@]}" -m "not images" "$@"
