#!/usr/bin/env bash
# tests/test_image_build.py builds the images (images/build.py; from its cache under
# ~/.cache/analysis-facility/images when nothing changed, about 8.5 min on a fresh machine) and runs
# processes inside them: the same tools as `make images` (debootstrap, buildah, bubblewrap).
set -euo pipefail
bash "$(dirname "${BASH_SOURCE[0]}")/../images-install.d/10-image-tools.sh"
