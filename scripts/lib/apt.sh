# Sourced by the install steps (scripts/install.d, scripts/test-install.d): install Debian packages
# only when missing, so every step stays idempotent and a no-op once everything is there.

# apt_install_missing STEP [APT_OPTION...] PACKAGE...
#   STEP names the calling step in messages; options (words starting with -) go to apt-get install.
apt_install_missing() {
  local step=$1 pkg
  shift
  local options=() missing=()
  while [[ ${1:-} == -* ]]; do
    options+=("$1")
    shift
  done
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  if [[ $(id -u) -ne 0 ]]; then
    echo "$step: need root to install Debian packages: ${missing[*]}" >&2
    return 1
  fi
  echo "$step: apt-get install ${missing[*]}"
  # Another apt run (a parallel install step) may hold the lock: wait for it rather than fail.
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${options[@]}" "${missing[@]}" >/dev/null
}
