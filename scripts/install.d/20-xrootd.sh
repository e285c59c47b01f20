#!/usr/bin/env bash
# XRootD server and client from Debian (the data lake origin and the XCache in front of it),
# installed as root, idempotently. `af up` writes their configuration; see af/xrootd.py.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/apt.sh"
apt_install_missing install-xrootd xrootd-server xrootd-client
