#!/usr/bin/env bash
# tests/test_shaped_link.py needs toxiproxy (the shaped link of the data-path benchmark): the same
# build as `make bench`'s, about 1-3 min from the Go module proxy on a fresh machine, seconds after.
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/../bench-install.d/10-toxiproxy.sh"
