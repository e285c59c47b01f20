#!/usr/bin/env bash
# Prints the Python interpreter the facility's venv is made from: one every facility account may run.
#
# Per-user accounts run the venv's Python, which is a link to its base interpreter. The `python3` on
# PATH may live in a private home folder (pyenv under /root): reaching it would need an ACL on that
# home, which opens what else lies there (issue 17). Such an interpreter is copied, with its standard
# library and shared library but not its site-packages or tests, to
# /opt/analysis-facility/python-<version>; its RUNPATH, which names the old prefix, is made relative
# (patchelf) so the copy loads its own libpython. An interpreter others can already reach is used
# where it is. The copy is an environment outside the repository: under CI=true it is checked
# (the stamp, and a run as `nobody`) and rebuilt when either fails.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/outside.sh
source scripts/lib/apt.sh
say() { echo "base-python: $*" >&2; }

source_python=$(command -v python3)
read -r prefix version < <("$source_python" -c 'import sys; print(sys.base_prefix, "%d.%d" % sys.version_info[:2])')
interpreter=$("$source_python" -c 'import os, sys; print(os.path.realpath(sys.executable))')

# True when `nobody` can run this interpreter with its own standard library (every folder on its
# way passable by others). Run through a shell as nobody: setpriv itself may still reach the
# file, and a Python that cannot reach its prefix falls back to /usr's library without a word.
others_can_run() {
  local expected
  expected=$("$1" -c 'import sys; print(sys.base_prefix)')
  [[ $(setpriv --reuid=nobody --regid=nogroup --clear-groups /bin/sh -c \
    '"$0" -c "import ssl, sqlite3, ctypes, decimal, sys; print(sys.base_prefix)"' "$1" 2>/dev/null) == "$expected" ]]
}

if others_can_run "$interpreter"; then
  echo "$interpreter"
  exit 0
fi

target=/opt/analysis-facility/python-$("$source_python" -c 'import platform; print(platform.python_version())')
stamp=$(af_stamp "$0" "$interpreter" "$prefix/lib/libpython$version.so.1.0")
if [[ -f $target/.af-stamp && $(cat "$target/.af-stamp") == "$stamp" ]] && others_can_run "$target/bin/python$version"; then
  echo "$target/bin/python$version"  # checked as above, under CI=true too
  exit 0
fi

say "copying $prefix (in a folder facility accounts cannot enter) to $target: $(af_why_build "$target" "$stamp")"
apt_install_missing base-python patchelf >&2
building=$(mktemp -d /opt/analysis-facility-python.XXXXXX)
trap 'rm -rf "$building"' EXIT
tar -C "$prefix" -cf - --exclude="lib/python$version/site-packages/*" --exclude="lib/python$version/test" \
  --exclude='__pycache__' "bin/python$version" lib include | tar -C "$building" -xf -
ln -s "python$version" "$building/bin/python3"
patchelf --set-rpath '$ORIGIN/../lib' "$building/bin/python$version"
echo "$stamp" >"$building/.af-stamp"
chmod -R a+rX "$building"
chmod 755 "$building"
mkdir -p "$(dirname "$target")"
chmod 755 "$(dirname "$target")"
# A venv made from an earlier copy keeps running while the new one moves in (rename, then remove).
[[ -e $target ]] && mv "$target" "$target.old.$$"
mv "$building" "$target"
rm -rf "$target.old.$$"
trap - EXIT
others_can_run "$target/bin/python$version" || { say "the copy at $target does not run as nobody"; exit 1; }
echo "$target/bin/python$version"
