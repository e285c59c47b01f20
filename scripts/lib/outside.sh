# Sourced by install steps that build an environment outside the repository (a chroot, a key,
# node modules, downloads). Such an environment outlives the clone: a machine that built it weeks
# ago keeps it while a fresh machine would build something else (Debian drifts). So each one carries
# a stamp, the hash of the scripts that built it, and:
#   - is rebuilt when its scripts changed (the stamp differs) or it is missing;
#   - is always rebuilt from scratch when CI=true, so CI sees what a fresh machine sees.

# af_stamp FILE... : the stamp of an environment built by these files (their contents' hash).
af_stamp() {
  cat "$@" | sha256sum | cut -c1-16
}

# af_reusable DIR STAMP : true when DIR was built by scripts with this stamp and CI is not asking
# for a rebuild.
af_reusable() {
  local dir=$1 stamp=$2
  [[ ${CI:-} != true ]] && [[ -f $dir/.af-stamp ]] && [[ $(cat "$dir/.af-stamp") == "$stamp" ]]
}

# af_why_build DIR STAMP : one line saying why DIR is (re)built.
af_why_build() {
  local dir=$1 stamp=$2
  if [[ ! -e $dir ]]; then echo "not built yet"
  elif [[ ${CI:-} == true ]]; then echo "CI=true rebuilds it from scratch"
  elif [[ ! -f $dir/.af-stamp ]]; then echo "built without a stamp (by an older script)"
  else echo "its install script changed (stamp $(cat "$dir/.af-stamp") -> $stamp)"
  fi
}
