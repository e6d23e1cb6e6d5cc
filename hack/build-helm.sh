#!/usr/bin/env bash
# Build helm (v3) from the Go module proxy and cache it under ~/.cache/cxbackup/tools/helm-<version>/.
#
# helm.sh/helm/v3's go.mod has no local replace directives, so `go install module@version` works
# directly. The build takes a few minutes on 2 cores the first time (module downloads + compile);
# a second run does nothing but print the path.
#
# Prints the path of the helm binary on stdout (the last line); logs go to stderr.
set -euo pipefail
# shellcheck source=hack/lib/go-tool.sh
source "$(dirname "$0")/lib/go-tool.sh"

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
# Helm reads its version from these variables; without them `helm version` says v3.x-dirty/unknown.
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
ldflags="$ldflags -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
go_tool helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm "$ldflags" "helm $HELM_VERSION (a few minutes on 2 cores)"
