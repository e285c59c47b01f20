#!/usr/bin/env bash
# What a token-protected data lake (facility.yaml data.require_token, facility/data_tokens.py) needs:
# XRootD's macaroons and ztn plugins (Debian xrootd-server-plugins, xrootd-client-plugins) and
# openssl for the servers' TLS certificate. Installed as root, idempotently.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/apt.sh"
apt_install_missing install-data-tokens xrootd-server-plugins xrootd-client-plugins openssl
