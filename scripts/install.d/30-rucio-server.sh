#!/usr/bin/env bash
# The Rucio server (PyPI rucio, served by gunicorn) that `af up` starts when facility.yaml sets
# data.rucio (af/rucio_server.py). A venv of its own, outside the repository and apart from the
# facility's .venv: rucio pins its dependencies (urllib3, requests, SQLAlchemy, ...) to versions the
# facility does not run; the facility talks to it with rucio-clients over HTTP only.
# Installed exactly from scripts/rucio/server.lock (--no-deps) into $AF_RUCIO_SERVER_DIR (default
# /opt/analysis-facility/rucio-server for root, ~/.local/share/analysis-facility/rucio-server for
# others), stamped by this script's and the lock's hash (scripts/lib/outside.sh): rebuilt when
# missing, when either changed, and always when CI=true.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$HERE/../.."
source scripts/lib/outside.sh
LOCK=scripts/rucio/server.lock
if [[ -n ${AF_RUCIO_SERVER_DIR:-} ]]; then DIR=$AF_RUCIO_SERVER_DIR
elif [[ $(id -u) -eq 0 ]]; then DIR=/opt/analysis-facility/rucio-server
else DIR=${XDG_DATA_HOME:-$HOME/.local/share}/analysis-facility/rucio-server
fi

STAMP=$(af_stamp "${BASH_SOURCE[0]}" "$LOCK")
smoke_test() {
  "$DIR/bin/python" -m pip check >/dev/null \
    && "$DIR/bin/python" -c "import importlib.util as u, gunicorn, flask, sqlalchemy, alembic, rucio.vcsversion
assert u.find_spec('rucio.web.rest.flaskapi.v1.main')" 2>/dev/null  # the app itself needs a rucio.cfg
}
if af_reusable "$DIR" "$STAMP" && smoke_test; then
  echo "rucio-server: ready ($DIR)"
  exit 0
fi
echo "rucio-server: building $DIR: $(af_why_build "$DIR" "$STAMP")"
base=$(bash scripts/base-python.sh)
rm -rf "$DIR"  # no stamp is written until the smoke test passes: a broken build is built again
mkdir -p "$(dirname "$DIR")"
"$base" -m venv "$DIR"
"$DIR/bin/python" -m pip install --quiet --upgrade pip
"$DIR/bin/python" -m pip install --quiet --no-deps -r "$LOCK"
smoke_test || { echo "rucio-server: the venv in $DIR does not import rucio's server and gunicorn" >&2; exit 1; }
echo "$STAMP" >"$DIR/.af-stamp"
echo "rucio-server: rucio $("$DIR/bin/python" -c 'import rucio.vcsversion as v; print(v.VERSION)') ready ($DIR)"
