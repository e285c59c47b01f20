#!/usr/bin/env bash
# Toxiproxy (Shopify's latency/bandwidth-shaping TCP proxy) for the shaped-link benchmark and
# tests/test_shaped_link.py: this kernel has no netem/tbf qdiscs, so links are shaped in user space.
# Built from its Go module at a pinned version into $AF_TOXIPROXY_DIR (outside the repository;
# default /var/lib/analysis-facility/toxiproxy-<version>), stamped by this script's hash
# (scripts/lib/outside.sh): rebuilt when missing, when this script changed, and always when CI=true.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/../lib/outside.sh"
source "$HERE/../lib/go.sh"
VERSION=2.12.0
DIR=${AF_TOXIPROXY_DIR:-/var/lib/analysis-facility/toxiproxy-$VERSION}
MIN_GO_MINOR=21  # GOTOOLCHAIN (Go 1.21+) fetches the Go that toxiproxy's go.mod asks for, if newer

STAMP=$(af_stamp "${BASH_SOURCE[0]}" "$HERE/../lib/go.sh")
if af_reusable "$DIR" "$STAMP" && [[ -x $DIR/bin/toxiproxy-server ]]; then
  echo "toxiproxy: $VERSION ready ($DIR)"
  exit 0
fi
echo "toxiproxy: building $VERSION: $(af_why_build "$DIR" "$STAMP")"
if ! GO=$(find_go "$MIN_GO_MINOR"); then
  echo "toxiproxy: needs Go >= 1.$MIN_GO_MINOR (Debian bookworm's golang-go is 1.19); install one on PATH" >&2
  exit 1
fi
rm -rf "$DIR"
mkdir -p "$DIR/bin"
BUILD=$(mktemp -d)
trap 'rm -rf "$BUILD"' EXIT
# From the Go module proxy, the module's own commands, nothing else: `go install module/cmd@version`.
export GOTOOLCHAIN=${GOTOOLCHAIN:-auto} GOFLAGS="-modcacherw -buildvcs=false" GOBIN="$BUILD"
# The version is stamped into the binaries the way toxiproxy's release build does (-X ...Version).
"$GO" install -ldflags="-s -w -X github.com/Shopify/toxiproxy/v2.Version=$VERSION" \
  "github.com/Shopify/toxiproxy/v2/cmd/server@v$VERSION" "github.com/Shopify/toxiproxy/v2/cmd/cli@v$VERSION"
install -m 0755 "$BUILD/server" "$DIR/bin/toxiproxy-server"
install -m 0755 "$BUILD/cli" "$DIR/bin/toxiproxy-cli"
# Smoke test: the server reports the pinned version.
# (captured, not piped into grep -q, which can fail the pipe under pipefail)
[[ $("$DIR/bin/toxiproxy-server" -version 2>&1) == *"$VERSION"* ]] || {
  echo "toxiproxy: $DIR/bin/toxiproxy-server does not report version $VERSION" >&2; exit 1; }
echo "$STAMP" >"$DIR/.af-stamp"
echo "toxiproxy: $VERSION ready ($DIR)"
