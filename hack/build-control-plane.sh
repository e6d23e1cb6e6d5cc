#!/usr/bin/env bash
# Build the test control plane (etcd, kube-apiserver, kube-controller-manager, kubectl) and the test node
# (kubelet, kube-scheduler) of one pinned
# Kubernetes release from the Go module proxy, and cache the binaries under ~/.cache/cxbackup.
#
# k8s.io/kubernetes cannot be `go install`ed (its go.mod replaces ~30 staging modules with local paths),
# so we generate a wrapper module that requires k8s.io/kubernetes at the pinned tag and replaces every
# staging module with its published v0.X.Y. etcd is built inside the same wrapper module, at the version
# Kubernetes itself requires, so the whole control plane shares one dependency graph.
#
# Prints the bin directory on stdout. A second run with the binaries present does nothing.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
CACHE_ROOT="${CXBACKUP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cxbackup}"
OUT="$CACHE_ROOT/k8s/$K8S_VERSION"
BIN="$OUT/bin"
TOOLS=(etcd kube-apiserver kube-controller-manager kubectl kube-scheduler kubelet)

have_all() { for t in "${TOOLS[@]}"; do [ -x "$BIN/$t" ] || return 1; done; }
if have_all; then echo "$BIN"; exit 0; fi

log() { echo "[build-control-plane] $*" >&2; }
command -v go >/dev/null || { log "go is not installed; install Go >= 1.25 first"; exit 1; }

WORK="$OUT/wrapper"
mkdir -p "$WORK" "$BIN"
cd "$WORK"
export GOFLAGS="${GOFLAGS:--buildvcs=false} -mod=mod"
export CGO_ENABLED=0

log "fetching k8s.io/kubernetes@$K8S_VERSION go.mod"
kmod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
staging_version="v0.${K8S_VERSION#v1.}"
etcd_version=$(awk '$1=="go.etcd.io/etcd/server/v3"{print $2}' "$kmod")

{
  echo "module cxbackup.io/testcontrolplane"
  echo
  echo "go 1.25"
  echo
  echo "require k8s.io/kubernetes $K8S_VERSION"
  echo
  echo "replace ("
  sed -n '/^replace (/,/^)/p' "$kmod" | awk '$2=="=>"{print "\t" $1 " => " $1 " '"$staging_version"'"}'
  echo ")"
} > go.mod
cat > tools.go <<GO
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
log "resolving modules (etcd $etcd_version, staging $staging_version)"
go get "go.etcd.io/etcd/server/v3@$etcd_version" >&2
go mod tidy -e >&2 || true

ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${K8S_VERSION#v1.}"
ldflags="$ldflags -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
for cmd in kube-apiserver kube-controller-manager kubectl kube-scheduler kubelet; do
  [ -x "$BIN/$cmd" ] && continue
  log "building $cmd (several minutes on 2 cores)"
  go build -trimpath -ldflags "$ldflags" -o "$BIN/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd" >&2
  mv "$BIN/$cmd.tmp" "$BIN/$cmd"
done
if [ ! -x "$BIN/etcd" ]; then
  log "building etcd $etcd_version"
  go build -trimpath -ldflags "-s -w" -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3 >&2
  mv "$BIN/etcd.tmp" "$BIN/etcd"
fi
have_all
echo "$BIN"
