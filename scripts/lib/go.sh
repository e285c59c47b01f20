# Sourced by the install steps that build test infrastructure from Go modules (toxiproxy,
# Kubernetes). The product stays Python; Go only builds these tools, outside the repository.

# find_go MIN_MINOR : the path of a Go toolchain >= 1.MIN_MINOR (GOTOOLCHAIN, Go 1.21+, fetches the
# Go a module's go.mod asks for, if newer), or fail.
find_go() {
  local min_minor=$1 go minor
  for go in "$(command -v go || true)" /usr/local/go/bin/go /usr/lib/go/bin/go; do
    [[ -n $go && -x $go ]] || continue
    minor=$("$go" env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')
    if [[ $minor =~ ^[0-9]+$ ]] && ((minor >= min_minor)); then echo "$go"; return 0; fi
  done
  return 1
}
