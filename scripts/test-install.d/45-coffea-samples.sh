#!/usr/bin/env bash
# Real CMS NanoAOD samples for tests/test_data_lake.py: coffea's source distribution (its
# tests/samples/ folder) in the download cache that `af data import-samples` reads. Verified against
# PyPI's sha256 (af.data.COFFEA_SDIST_SHA256) every time; downloaded again when CI=true.
set -euo pipefail
cd "$(dirname "$0")/../.."
read -r VERSION SHA256 < <(.venv/bin/python -c "from af.data import COFFEA_VERSION as v, COFFEA_SDIST_SHA256 as s; print(v, s)")
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/analysis-facility"
SDIST="$CACHE/coffea-$VERSION.tar.gz"
if [[ ${CI:-} == true && -f $SDIST ]]; then
  echo "coffea-samples: CI=true downloads coffea $VERSION's source distribution again"
  rm -f "$SDIST"
fi
if [[ -f $SDIST ]] && ! echo "$SHA256  $SDIST" | sha256sum --check --status; then
  echo "coffea-samples: $SDIST is not PyPI's file (sha256 differs); downloading it again"
  rm -f "$SDIST"
fi
if [[ ! -f $SDIST ]]; then
  echo "coffea-samples: downloading coffea $VERSION's source distribution into $CACHE"
  mkdir -p "$CACHE"
  .venv/bin/python -m pip download --quiet --no-binary :all: --no-deps "coffea==$VERSION" --dest "$CACHE"
  echo "$SHA256  $SDIST" | sha256sum --check --quiet
fi
# Smoke test: the samples the tests import are in it.
# (tar lists the one member; `tar | grep -q` would fail under pipefail when grep stops reading early)
tar -tzf "$SDIST" "coffea-$VERSION/tests/samples/nano_dy.root" >/dev/null \
  || { echo "coffea-samples: no tests/samples/nano_dy.root in $SDIST" >&2; exit 1; }
echo "coffea-samples: ready ($SDIST)"
