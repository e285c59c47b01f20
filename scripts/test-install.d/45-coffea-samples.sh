#!/usr/bin/env bash
# Real CMS NanoAOD samples for tests/test_data_lake.py: coffea's source distribution (its
# tests/samples/ folder) in the download cache that `af data import-samples` reads. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION=$(.venv/bin/python -c "from af.data import COFFEA_VERSION; print(COFFEA_VERSION)")
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/analysis-facility"
if [[ ! -f "$CACHE/coffea-$VERSION.tar.gz" ]]; then
  echo "coffea-samples: downloading coffea $VERSION's source distribution into $CACHE"
  mkdir -p "$CACHE"
  .venv/bin/python -m pip download --quiet --no-binary :all: --no-deps "coffea==$VERSION" --dest "$CACHE"
fi
