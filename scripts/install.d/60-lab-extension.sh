#!/usr/bin/env bash
# The JupyterLab Dask panel (extensions/af-dask-lab): npm dependencies, TypeScript, the prebuilt
# labextension (JupyterLab's own builder), then the Python package into .venv, which puts the
# labextension in share/jupyter/labextensions and enables the server extension. Idempotent: a
# stamp holds the hash of the sources, so an unchanged extension is not rebuilt.
# Needs .venv's jupyterlab: the Makefile runs this again after `pip install` of the project.
set -euo pipefail
cd "$(dirname "$0")/../.."
EXT=extensions/af-dask-lab
PY=.venv/bin/python
if [[ ! -x .venv/bin/jupyter-builder ]]; then
  echo "lab-extension: .venv has no JupyterLab yet; built after the Python install"
  exit 0
fi
# JupyterLab's "get Jupyter news?" prompt fetches from the internet, which facility nodes often cannot reach.
.venv/bin/jupyter labextension disable --level=sys_prefix "@jupyterlab/apputils-extension:announcements" >/dev/null 2>&1
sources_hash=$(cat "$EXT"/package.json "$EXT"/tsconfig.json "$EXT"/pyproject.toml "$EXT"/src/*.ts "$EXT"/style/* \
  "$EXT"/af_dask_lab/*.py "$EXT"/jupyter-config/server-config/*.json | sha256sum | cut -d' ' -f1)
stamp=.venv/.af-dask-lab.sha256
if [[ -f $stamp && $(cat "$stamp") == "$sources_hash" && -f $EXT/af_dask_lab/labextension/package.json ]] \
  && "$PY" -c "import af_dask_lab" 2>/dev/null; then
  exit 0
fi
echo "lab-extension: building $EXT"
(
  cd "$EXT"
  if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then
    npm ci --no-audit --no-fund --loglevel=error >/dev/null
  fi
  PATH="$PWD/../../.venv/bin:$PATH" npm run --silent build >/dev/null
)
"$PY" -m pip install --quiet --no-deps --force-reinstall "./$EXT"
echo "$sources_hash" >"$stamp"
