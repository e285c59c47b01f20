#!/usr/bin/env bash
# A single-node Slurm for the tests (tests/slurm_cluster.py starts it): Debian slurm-wlm + munge.
# Idempotent: installs only what is missing and creates the munge key once.
set -euo pipefail
DEBIAN_PACKAGES=(slurm-wlm munge)

need_apt=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$pkg")
done
if ((${#need_apt[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "20-slurm: need root to install Debian packages: ${need_apt[*]}" >&2; exit 1
  fi
  echo "20-slurm: apt-get install ${need_apt[*]}"
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  # The packages' own service start fails without systemd; the tests start the daemons themselves.
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

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
