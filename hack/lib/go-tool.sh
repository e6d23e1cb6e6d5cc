# Build one command of a Go module with `go install module/cmd@version` and cache the binary by version under
# ~/.cache/cxbackup/tools/<name>-<version>/ (sourced by build-helm.sh and build-promtool.sh).
#
#   go_tool NAME VERSION PACKAGE LDFLAGS WHAT
#
# A cached binary is printed at once. Otherwise the build runs at low CPU priority (it may run beside tests),
# into a temporary folder that is removed on exit, and the binary is moved into place only when complete.
# Prints the binary's path on stdout (the last line); logs go to stderr. GOMODCACHE and GOCACHE are Go's own.

go_tool() {
  local name="$1" version="$2" package="$3" ldflags="$4" what="$5"
  local cache_root="${CXBACKUP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cxbackup}"
  local out="$cache_root/tools/$name-$version"
  local bin="$out/$name"
  if [ -x "$bin" ]; then echo "$bin"; return 0; fi
  command -v go >/dev/null || { echo "[build-$name] go is not installed; install Go >= 1.26 first" >&2; return 1; }
  mkdir -p "$out"
  GO_TOOL_TMP="$(mktemp -d "$out/.build.XXXXXX")"
  trap 'rm -rf "$GO_TOOL_TMP"' EXIT
  echo "[build-$name] building $what from the Go module proxy" >&2
  local start
  start=$(date +%s)
  GOBIN="$GO_TOOL_TMP" CGO_ENABLED=0 GOFLAGS="${GOFLAGS:--buildvcs=false} -mod=mod" \
    nice -n 10 go install -trimpath -ldflags "$ldflags" "$package@$version" >&2
  mv "$GO_TOOL_TMP/$name" "$bin"
  echo "[build-$name] built in $(( $(date +%s) - start ))s" >&2
  echo "$bin"
}
