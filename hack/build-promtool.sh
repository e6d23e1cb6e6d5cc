#!/usr/bin/env bash
# Build promtool (Prometheus' rule checker and rule unit-test runner) from the Go module proxy and cache it
# under ~/.cache/cxbackup/tools/promtool-<version>/.
#
# Prometheus publishes its releases as Go-module versions v0.<major><minor>.<patch> (v0.316.0 is Prometheus
# 3.16.0). The module's go.mod has no replace directives and promtool needs no build tags (builtinassets
# only concerns the web UI of the prometheus binary), so `go install module/cmd/promtool@version` works
# directly. The first build downloads many modules (cloud service-discovery SDKs) and compiles them: about
# 8 minutes on 2 cores; a second run does nothing but print the path.
#
# Prints the path of the promtool binary on stdout (the last line); logs go to stderr.
set -euo pipefail
# shellcheck source=hack/lib/go-tool.sh
source "$(dirname "$0")/lib/go-tool.sh"

PROMTOOL_VERSION="${PROMTOOL_VERSION:-v0.316.0}"
# v0.316.0 -> 3.16.0: the release number `promtool --version` reports.
if [[ "$PROMTOOL_VERSION" =~ ^v0\.([0-9])([0-9]{2})\.([0-9]+)(-.*)?$ ]]; then
  release="${BASH_REMATCH[1]}.$((10#${BASH_REMATCH[2]})).${BASH_REMATCH[3]}${BASH_REMATCH[4]}"
else
  release="${PROMTOOL_VERSION#v}"
fi
# promtool reads its version from prometheus/common's version package; without it `promtool --version` is empty.
ldflags="-s -w -X github.com/prometheus/common/version.Version=$release"
ldflags="$ldflags -X github.com/prometheus/common/version.Branch=HEAD"
go_tool promtool "$PROMTOOL_VERSION" github.com/prometheus/prometheus/cmd/promtool "$ldflags" \
  "promtool $PROMTOOL_VERSION (Prometheus $release; about 8 minutes on 2 cores)"
