#!/usr/bin/env bash
# HTCondor personal pool for the tests. HTCondor is not packaged for Debian 12, so the Debian 13
# ("trixie") package is installed into a debootstrap chroot outside the repository. The pool is
# configured and started by the tests (tests/htcondor_pool.py), not here. Idempotent.
set -euo pipefail
CHROOT=${AF_HTCONDOR_CHROOT:-/var/lib/analysis-facility/htcondor-trixie}
MARK="$CHROOT/.af-complete"
[[ -f $MARK ]] && { echo "htcondor: chroot ready at $CHROOT"; exit 0; }
if [[ $(id -u) -ne 0 ]]; then
  echo "htcondor: need root to build the HTCondor chroot at $CHROOT" >&2; exit 1
fi
if ! command -v debootstrap >/dev/null; then
  source "$(dirname "${BASH_SOURCE[0]}")/../lib/apt.sh"
  apt_install_missing htcondor debootstrap
fi
# The Debian mirror this machine's apt already uses (deb822 or one-line sources).
MIRROR=$(grep -hoE 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
  | head -n1 | tr -d ' ' || true)
MIRROR=${MIRROR:-http://deb.debian.org/debian}
# A half-built chroot from an interrupted run: unmount anything left inside, start over.
if [[ -d $CHROOT ]]; then
  for m in $(awk -v root="$CHROOT" 'index($2, root) == 1 {print $2}' /proc/mounts | sort -r); do umount -l "$m"; done
  rm -rf --one-file-system "$CHROOT"
fi
mkdir -p "$(dirname "$CHROOT")"
echo "htcondor: debootstrap trixie + htcondor into $CHROOT from $MIRROR (about a minute)"
# debootstrap leaves htcondor's dependencies half-configured; apt and dpkg finish them below.
debootstrap --variant=minbase --include=htcondor trixie "$CHROOT" "$MIRROR" >"$CHROOT.log" 2>&1 \
  || echo "htcondor: debootstrap reported errors (finished below); log: $CHROOT.log"
chroot "$CHROOT" env DEBIAN_FRONTEND=noninteractive apt-get install -y -f -qq python3-cffi-backend >>"$CHROOT.log" 2>&1
chroot "$CHROOT" env DEBIAN_FRONTEND=noninteractive dpkg --configure -a >>"$CHROOT.log" 2>&1
chroot "$CHROOT" condor_version
touch "$MARK"
echo "htcondor: chroot ready at $CHROOT"
