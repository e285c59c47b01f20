#!/usr/bin/env bash
# Makes the facility's venv (.venv) from scripts/base-python.sh's interpreter, one every facility
# account may run. A venv made from another interpreter (e.g. pyenv's under /root, before) is made
# anew; pip's cache makes the reinstall that follows quick.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv}
base=$(bash scripts/base-python.sh)
if [[ -f $venv/pyvenv.cfg ]]; then
  made_from=$(sed -n 's/^executable = //p' "$venv/pyvenv.cfg")
  [[ $made_from == "$base" && -x $venv/bin/python ]] && exit 0
  echo "make-venv: $venv was made from ${made_from:-an unknown Python}; making it anew from $base"
  rm -rf "$venv"
fi
"$base" -m venv "$venv"
