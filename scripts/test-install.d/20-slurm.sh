#!/usr/bin/env bash
# A single-node Slurm for the tests (tests/slurm_cluster.py starts it): Debian slurm-wlm + munge.
# Idempotent: installs only what is missing and creates the munge key once.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/apt.sh"
# The packages' own service start fails without systemd; the tests start the daemons themselves.
apt_install_missing 20-slurm --no-install-recommends slurm-wlm munge

# munged refuses to run as root or with loose permissions on its folders and key.
if [[ $(id -u) -eq 0 ]]; then
  install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 /var/log/munge
  if [[ ! -s /etc/munge/munge.key ]]; then
    echo "20-slurm: creating /etc/munge/munge.key"
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
  fi
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
fi
