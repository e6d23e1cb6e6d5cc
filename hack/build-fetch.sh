#!/usr/bin/env bash
# Build cxbackup-fetch, the worker's native media transfer (native/fetch, Go with the AWS SDK for Go), once
# per source: cached under ~/.cache/cxbackup/tools/cxbackup-fetch-<key>/, where <key> hashes native/fetch's
# files and `go version`. A static binary (CGO_ENABLED=0); modules come from the Go module proxy and are
# checked against native/fetch/go.sum.
#
#   hack/build-fetch.sh            print the cached binary's path
#   hack/build-fetch.sh DIR        also install it as DIR/cxbackup-fetch (make: the venv's bin folder, where
#                                  `cxbackup download` looks for it first) and print that path
#
# Logs go to stderr; stdout is the path only.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$REPO_ROOT/native/fetch"
CACHE_ROOT="${CXBACKUP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cxbackup}"
NAME=cxbackup-fetch

log() { echo "[build-fetch] $*" >&2; }

command -v go >/dev/null || { log "go is not installed; install Go >= 1.24 first"; exit 1; }
key="$(
  {
    cd "$SRC"
    find . -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    go version
  } | sha256sum | cut -c1-12
)"
out="$CACHE_ROOT/tools/$NAME-$key"
bin="$out/$NAME"
if [ ! -x "$bin" ]; then
  mkdir -p "$out"
  tmp="$(mktemp -d "$out/.build.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  log "building $NAME (Go module proxy for the AWS SDK the first time)"
  start=$(date +%s)
  (cd "$SRC" && CGO_ENABLED=0 GOFLAGS="-buildvcs=false -mod=readonly" \
    go build -trimpath -ldflags "-s -w" -o "$tmp/$NAME" .) >&2
  mv "$tmp/$NAME" "$bin"
  log "built in $(($(date +%s) - start))s"
fi
if [ $# -ge 1 ]; then
  install -m 0755 "$bin" "$1/$NAME"
  echo "$1/$NAME"
else
  echo "$bin"
fi
