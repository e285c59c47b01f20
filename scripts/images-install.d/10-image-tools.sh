#!/usr/bin/env bash
# What `make images` needs (not part of `make up`): debootstrap makes the base root file system,
# buildah builds images/Containerfile from it (chroot isolation; no registry is pulled from), and
# bubblewrap runs processes inside the published trees (backends/common/container.py).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/apt.sh"
apt_install_missing images-install --no-install-recommends debootstrap buildah bubblewrap
