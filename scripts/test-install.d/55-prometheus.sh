#!/usr/bin/env bash
# Debian's Prometheus (2.42): `af up` runs it when facility.yaml enables `metrics`, and
# tests/test_metrics.py checks its targets and alerts. Only the binaries are used: the package's
# own service start fails without systemd, and `af up` supervises its own Prometheus. Idempotent.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/apt.sh"
apt_install_missing 55-prometheus --no-install-recommends prometheus
