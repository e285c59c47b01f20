#!/usr/bin/env bash
# A single-node Slurm for the tests (tests/slurm_cluster.py starts it): Debian slurm-wlm + munge.
# The packages come from apt; what lives outside them (the munge key and its folders) is checked by
# a smoke test (a job runs as a non-root account) whenever it is (re)made: on first use, when this
# script changed, and always when CI=true (scripts/lib/outside.sh).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
source "$HERE/../lib/apt.sh"
source "$HERE/../lib/outside.sh"
# The packages' own service start fails without systemd; the tests start the daemons themselves.
apt_install_missing 20-slurm --no-install-recommends slurm-wlm munge
[[ $(id -u) -eq 0 ]] || { echo "20-slurm: the test Slurm needs root (munged runs as user munge)" >&2; exit 1; }

RECORD=/var/lib/analysis-facility/slurm
STAMP=$(af_stamp "${BASH_SOURCE[0]}" "$HERE/../lib/outside.sh")
if af_reusable "$RECORD" "$STAMP" && [[ -s /etc/munge/munge.key ]]; then
  echo "20-slurm: ready (stamp $STAMP)"; exit 0
fi
echo "20-slurm: setting up munge: $(af_why_build "$RECORD" "$STAMP")"
# munged refuses to run as root or with loose permissions on its folders and key.
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/log/munge
# A new key each time: the tests' Slurm is the only user of this machine's munge.
dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key.new status=none
chown munge:munge /etc/munge/munge.key.new
chmod 0400 /etc/munge/munge.key.new
mv /etc/munge/munge.key.new /etc/munge/munge.key
(cd "$ROOT" && .venv/bin/python -m tests.smoke slurm)
mkdir -p "$RECORD"
echo "$STAMP" >"$RECORD/.af-stamp"
echo "20-slurm: ready"
