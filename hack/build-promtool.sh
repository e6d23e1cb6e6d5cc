#!/usr/bin/env bash
# Build promtool (Prometheus' rule checker and rule unit-test runner) from the Go module proxy and cache it
# under ~/.cache/cxbackup/tools/promtool-<version>/.
#
# Prometheus publishes its releases as Go-module versions v0.<major><minor>.<patch> (v0.316.0 is Prometheus
# 3.16.0). The module's go.mod has no replace directives and promtool needs no build tags (builtinassets
# only concerns the web UI of the prometheus binary), so `go install module/cmd/promtool@version` works
# directly. The first build downloads many modules (cloud service-discovery SDKs) and compiles them: about
# 8 minutes on 2 cores, run at low priority; the binary is cached by version, so a second run does nothing
# but print the path.
#
# Prints the path of the promtool binary on stdout (the last line); logs go to stderr.
set -euo pipefail

PROMTOOL_VERSION="${PROMTOOL_VERSION:-v0.316.0}"
CACHE_ROOT="${CXBACKUP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cxbackup}"
OUT="$CACHE_ROOT/tools/promtool-$PROMTOOL_VERSION"
PROMTOOL="$OUT/promtool"

if [ -x "$PROMTOOL" ]; then echo "$PROMTOOL"; exit 0; fi

log() { echo "[build-promtool] $*" >&2; }
command -v go >/dev/null || { log "go is not installed; install Go >= 1.26 first"; exit 1; }

# v0.316.0 -> 3.16.0: the release number `promtool --version` reports.
if [[ "$PROMTOOL_VERSION" =~ ^v0\.([0-9])([0-9]{2})\.([0-9]+)(-.*)?$ ]]; then
  release="${BASH_REMATCH[1]}.$((10#${BASH_REMATCH[2]})).${BASH_REMATCH[3]}${BASH_REMATCH[4]}"
else
  release="${PROMTOOL_VERSION#v}"
fi

mkdir -p "$OUT"
TMP_BIN="$(mktemp -d "$OUT/.build.XXXXXX")"
trap 'rm -rf "$TMP_BIN"' EXIT

log "building promtool $PROMTOOL_VERSION (Prometheus $release) from the Go module proxy (about 8 minutes on 2 cores)"
start=$(date +%s)
# promtool reads its version from prometheus/common's version package; without it `promtool --version` is empty.
ldflags="-s -w -X github.com/prometheus/common/version.Version=$release"
ldflags="$ldflags -X github.com/prometheus/common/version.Branch=HEAD"
# Low CPU priority: the build runs beside other work (tests, other builds).
GOBIN="$TMP_BIN" CGO_ENABLED=0 GOFLAGS="${GOFLAGS:--buildvcs=false} -mod=mod" \
  nice -n 10 go install -trimpath -ldflags "$ldflags" "github.com/prometheus/prometheus/cmd/promtool@$PROMTOOL_VERSION" >&2
mv "$TMP_BIN/promtool" "$PROMTOOL"
log "built $("$PROMTOOL" --version 2>&1 | head -n1) in $(( $(date +%s) - start ))s"
echo "$PROMTOOL"
