#!/usr/bin/env bash
# HTCondor personal pool for the tests. HTCondor is not packaged for Debian 12, so the Debian 13
# ("trixie") package is installed into a debootstrap chroot outside the repository. The pool is
# configured and started by the tests (tests/htcondor_pool.py), not here.
# Reused while its stamp matches (scripts/lib/outside.sh); rebuilt from scratch when CI=true. A new
# chroot is built beside the old one, must pass a smoke test (a job runs as a non-root account in a
# pool started by tests/htcondor_pool.py), and only then replaces it.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
source "$HERE/../lib/outside.sh"
CHROOT=${AF_HTCONDOR_CHROOT:-/var/lib/analysis-facility/htcondor-trixie}
STAMP=$(af_stamp "${BASH_SOURCE[0]}" "$HERE/../lib/outside.sh")
if af_reusable "$CHROOT" "$STAMP" && [[ -f $CHROOT/.af-complete ]]; then
  echo "htcondor: chroot ready at $CHROOT (stamp $STAMP)"; exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "htcondor: need root to build the HTCondor chroot at $CHROOT" >&2; exit 1
fi
echo "htcondor: building the chroot: $(af_why_build "$CHROOT" "$STAMP")"
if ! command -v debootstrap >/dev/null; then
  source "$HERE/../lib/apt.sh"
  apt_install_missing htcondor debootstrap
fi
# The Debian mirror this machine's apt already uses (deb822 or one-line sources).
MIRROR=$(grep -hoE 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
  | head -n1 | tr -d ' ' || true)
MIRROR=${MIRROR:-http://deb.debian.org/debian}
unmount_under() {  # anything a test pool or an interrupted run left mounted inside
  local m
  for m in $(awk -v root="$1/" 'index($2, root) == 1 {print $2}' /proc/mounts | sort -r); do umount -l "$m"; done
}
NEW="$CHROOT.new"
if [[ -d $NEW ]]; then unmount_under "$NEW"; rm -rf --one-file-system "$NEW"; fi
mkdir -p "$(dirname "$CHROOT")"
started=$(date +%s)
echo "htcondor: debootstrap trixie + htcondor into $NEW from $MIRROR (about a minute)"
# debootstrap leaves htcondor's dependencies half-configured; apt and dpkg finish them below.
# git: notebook jobs run here, and nbgitpuller clones the facility's examples with it (facility/examples.py).
# bubblewrap: jobs of a backend with container_runtime: bubblewrap run it (tests/test_image_htcondor.py).
debootstrap --variant=minbase --include=htcondor,git,bubblewrap trixie "$NEW" "$MIRROR" >"$CHROOT.log" 2>&1 \
  || echo "htcondor: debootstrap reported errors (finished below); log: $CHROOT.log"
chroot "$NEW" env DEBIAN_FRONTEND=noninteractive apt-get install -y -f -qq python3-cffi-backend >>"$CHROOT.log" 2>&1
chroot "$NEW" env DEBIAN_FRONTEND=noninteractive dpkg --configure -a >>"$CHROOT.log" 2>&1
chroot "$NEW" condor_version
touch "$NEW/.af-complete"
echo "htcondor: smoke test: a pool in the new chroot runs a job as a non-root account"
if ! (cd "$ROOT" && .venv/bin/python -m tests.smoke htcondor "$NEW"); then
  unmount_under "$NEW"
  echo "htcondor: the new chroot failed its smoke test; it is left at $NEW for a look, $CHROOT is unchanged" >&2
  exit 1
fi
unmount_under "$NEW"
echo "$STAMP" >"$NEW/.af-stamp"
if [[ -d $CHROOT ]]; then unmount_under "$CHROOT"; rm -rf --one-file-system "$CHROOT"; fi
mv "$NEW" "$CHROOT"
echo "htcondor: chroot ready at $CHROOT (built and smoke-tested in $(($(date +%s) - started)) s)"
