#!/usr/bin/env bash
# A real Kubernetes control plane for the tests (tests/kube_control_plane.py): kube-apiserver,
# kube-controller-manager, kube-scheduler and the kubelet built from the module k8s.io/kubernetes
# at a pinned release, and Debian's etcd; for the kubelet (tests/kube_kubelet.py), Debian's
# containerd and runc, the CNI plugins, and umoci and busybox to build the tests' images. Built into $AF_KUBERNETES_DIR (outside the repository;
# default /var/lib/analysis-facility/kubernetes-<version>), stamped by this script's hash
# (scripts/lib/outside.sh): rebuilt when missing, when this script changed, and always when CI=true.
# A fresh machine takes about 5 min on 2 cores (900 MB of modules, 2.7 GB of Go build cache, 270 MB
# of binaries); a rebuild with Go's build cache still there, well under a minute.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/../lib/outside.sh"
source "$HERE/../lib/go.sh"
source "$HERE/../lib/apt.sh"
VERSION=v1.36.3
DIR=${AF_KUBERNETES_DIR:-/var/lib/analysis-facility/kubernetes-$VERSION}
COMMANDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet)
# dask-gateway's controller makes Traefik routes for each cluster; its chart installs Traefik's
# CRDs, which the tests take from Traefik's own module (docs/.../dynamic-configuration).
TRAEFIK_VERSION=v3.7.13
TRAEFIK_CRDS=(traefik.io_ingressroutes.yaml traefik.io_ingressroutetcps.yaml)
MIN_GO_MINOR=26  # k8s.io/kubernetes v1.36's go.mod says go 1.26.0

# Debian's etcd 3.4: kube-apiserver accepts it (tests/test_kube_control_plane.py starts both).
apt_install_missing 60-kubernetes --no-install-recommends etcd-server \
  containerd runc containernetworking-plugins umoci busybox-static

STAMP=$(af_stamp "${BASH_SOURCE[0]}" "$HERE/../lib/go.sh")
ready() {
  local cmd
  for cmd in "${COMMANDS[@]}"; do [[ -x $DIR/bin/$cmd ]] || return 1; done
  for crd in "${TRAEFIK_CRDS[@]}"; do [[ -s $DIR/crds/$crd ]] || return 1; done
}
if af_reusable "$DIR" "$STAMP" && ready; then
  echo "kubernetes: $VERSION ready ($DIR)"
  exit 0
fi
echo "kubernetes: building $VERSION: $(af_why_build "$DIR" "$STAMP")"
if ! GO=$(find_go "$MIN_GO_MINOR"); then
  echo "kubernetes: needs Go >= 1.$MIN_GO_MINOR on PATH (Debian's golang-go is older)" >&2
  exit 1
fi
rm -rf "$DIR"
mkdir -p "$DIR/bin"
BUILD=$(mktemp -d)
trap 'rm -rf "$BUILD"' EXIT
export GOTOOLCHAIN=${GOTOOLCHAIN:-local} GOFLAGS="-modcacherw -buildvcs=false"
# k8s.io/kubernetes refers to its k8s.io/* staging modules as ./staging/src/... in its go.mod,
# folders its module zip leaves out: a module of our own requires it and points each staging module
# at its published release of the same minor (v0.36.3 for v1.36.3).
"$GO" mod download -json "k8s.io/kubernetes@$VERSION" >"$BUILD/download.json"
GOMOD=$(sed -nE 's/^\s*"GoMod": "(.*)",?$/\1/p' "$BUILD/download.json")
STAGING=v0.${VERSION#v1.}
{
  printf 'module af.local/kubernetes-build\n\ngo 1.26.0\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$VERSION"
  awk -v staging="$STAGING" '$2 == "=>" && $3 ~ /^\.\/staging\/src\// {print "\t" $1 " => " $1 " " staging}' "$GOMOD"
  printf ')\n'
} >"$BUILD/go.mod"
PACKAGES=()
printf '//go:build tools\n\npackage tools\n\nimport (\n' >"$BUILD/tools.go"
for cmd in "${COMMANDS[@]}"; do
  printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$cmd" >>"$BUILD/tools.go"
  PACKAGES+=("k8s.io/kubernetes/cmd/$cmd")
done
printf ')\n' >>"$BUILD/tools.go"
MINOR=${VERSION#v1.}; MINOR=${MINOR%%.*}
# The version the binaries report, as Kubernetes' own release build stamps it.
LDFLAGS="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  LDFLAGS+=" -X $pkg.gitVersion=$VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$MINOR -X $pkg.gitTreeState=clean"
done
(cd "$BUILD" && "$GO" mod tidy && "$GO" build -trimpath -ldflags="$LDFLAGS" -o "$DIR/bin/" "${PACKAGES[@]}")
# Smoke test: each binary reports the pinned version.
for cmd in "${COMMANDS[@]}"; do
  [[ $("$DIR/bin/$cmd" --version 2>&1) == "Kubernetes $VERSION" ]] || {
    echo "kubernetes: $DIR/bin/$cmd does not report $VERSION" >&2; exit 1; }
done
"$GO" mod download -json "github.com/traefik/traefik/v3@$TRAEFIK_VERSION" >"$BUILD/traefik.json"
TRAEFIK_SRC=$(sed -nE 's/^\s*"Dir": "(.*)",?$/\1/p' "$BUILD/traefik.json")
mkdir -p "$DIR/crds"
for crd in "${TRAEFIK_CRDS[@]}"; do
  install -m 0644 "$TRAEFIK_SRC/docs/content/reference/dynamic-configuration/$crd" "$DIR/crds/$crd"
done
echo "$STAMP" >"$DIR/.af-stamp"
echo "kubernetes: $VERSION ready ($DIR)"
