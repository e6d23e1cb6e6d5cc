#!/usr/bin/env bash
# Build a container image as an OCI image archive without Docker, cached by the hash of its inputs.
#
#   hack/build-image.sh [cxbackup]   the operator/worker image, the same image the Dockerfile describes:
#                                    Debian bookworm (debootstrap), a venv at /opt/cxbackup made by the
#                                    image's own python3 (chroot), requirements.lock installed with
#                                    --require-hashes, then the project's wheel, and the native media
#                                    transfer cxbackup-fetch (hack/build-fetch.sh) in the venv's bin;
#                                    user 10001:10001.
#   hack/build-image.sh pause        the pod sandbox image for a node with no registry: hack/pause.c,
#                                    compiled statically, alone in the image.
#
# stdout is one line: "<archive-path> <image-ref>", for example
#   /root/.cache/cxbackup/images/cxbackup-0123456789ab.oci.tar localhost/cxbackup:0123456789ab
# Logs go to stderr. The archive is an OCI image layout in a tar; its index names the image, so
# `ctr -n k8s.io images import <archive-path>` stores it as <image-ref> with no other option.
#
# The tag is the first 12 hex characters of a sha256 over everything that goes into the image (for
# cxbackup: the base rootfs tarball, requirements.lock, pyproject.toml, README.md, every file under
# operator/ and native/fetch/, `go version`, this script and hack/build-fetch.sh; for pause: hack/pause.c,
# the compiler's version and this script). When the archive for that tag exists, the script prints it
# and does nothing else.
#
# Cache, under ${CXBACKUP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cxbackup}/images/:
#   base/<suite>-<key>.tar(.sha256)  the debootstrap rootfs; <key> hashes the base section below, so it
#                                    is rebuilt only when the suite, the packages or that section change
#                                    (delete it to pick up Debian's updates: the image tag changes too)
#   wheels/<key>/                    the lock's wheels, fetched once by the image's pip, hash-checked
#   <kind>-<tag>.oci.tar             the image archives
#
# Needs root (debootstrap, chroot), debootstrap, umoci, python3, Go (cxbackup-fetch) and, for pause, gcc with
# a static libc.
# The first build needs deb.debian.org and PyPI (the wheels); every build of a new tag needs PyPI for
# the project wheel's build backend (setuptools, as in the Dockerfile's build stage). Layers
# and configs carry SOURCE_DATE_EPOCH (default 1980-01-01) as their time, so rebuilding from the same
# base tarball gives the same image digest. The pip that runs inside the rootfs trusts the host's CA
# bundle: PIP_CERT, SSL_CERT_FILE, REQUESTS_CA_BUNDLE or else /etc/ssl/certs/ca-certificates.crt.
# Only the newest CXBACKUP_IMAGE_KEEP (3) archives of each image are kept.
set -euo pipefail
shopt -s inherit_errexit

KIND="${1:-cxbackup}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPT="$REPO_ROOT/hack/build-image.sh"
CACHE_ROOT="${CXBACKUP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cxbackup}"
IMAGES="$CACHE_ROOT/images"
EPOCH="${SOURCE_DATE_EPOCH:-315532800}"
KEEP="${CXBACKUP_IMAGE_KEEP:-3}"
CREATED="$(date -u -d "@$EPOCH" +%Y-%m-%dT%H:%M:%SZ)"

# What the image is; tests/unit/test_dockerfile.py checks these against the Dockerfile.
LOCK=requirements.lock
VENV=/opt/cxbackup
APP_UID=10001
APP_GID=10001
APP_USER=cxbackup
ENTRYPOINT=cxbackup
CMD=operator
IMAGE_PATH="$VENV/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

exec 3>&1 1>&2 # stdout is for the result line only
log() { echo "[build-image] $*" >&2; }
die() { log "$*"; exit 1; }

case "$KIND" in
  cxbackup | pause) ;;
  *) die "unknown image '$KIND': use cxbackup (the default) or pause" ;;
esac

# ---- base rootfs: begin (this section is the base tarball's cache key) -----------------------------
SUITE=bookworm
PACKAGES=python3,python3-venv,ca-certificates
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

# debootstrap a minimal Debian with PACKAGES into $1 and trim what a container does not need.
make_base_rootfs() {
  local root="$1"
  if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$DEBIAN_MIRROR" >&2; then
    tail -n 40 "$root/debootstrap/debootstrap.log" >&2 2>/dev/null || true
    die "debootstrap $SUITE failed"
  fi
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/*
  rm -f "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old
  find "$root/var/log" -type f -delete
  find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/lintian
  find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
  # The container runtime provides /dev, /etc/resolv.conf and /etc/hostname; the host's must not leak in.
  find "$root/dev" -mindepth 1 -delete
  rm -f "$root/etc/resolv.conf" "$root/etc/hostname"
}
# ---- base rootfs: end ------------------------------------------------------------------------------

# A tar of the directory $1's entries (names relative to it, sorted, numeric owners, no atime/ctime),
# limited to the paths listed in $3 when given, written to $2.
tar_dir() {
  local dir="$1" out="$2" list="${3:-}"
  if [ -z "$list" ]; then
    list="$WORK/all-paths"
    (cd "$dir" && find . -mindepth 1 -printf '%P\n') | LC_ALL=C sort >"$list"
  fi
  tar -C "$dir" --create --file "$out" --no-recursion --verbatim-files-from --files-from "$list" \
    --format=posix --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime --numeric-owner
}

sha() { sha256sum | cut -c1-64; }

# shellcheck disable=SC2329 # run by the EXIT trap
cleanup() {
  [ -n "${WORK:-}" ] && [ -d "$WORK" ] || return 0
  # Nothing is mounted by this script, but never delete through a mount point left under the work dir.
  rm -rf --one-file-system "$WORK"
}

WORK=""
trap cleanup EXIT
trap 'exit 130' INT TERM

finish() { # finish ARCHIVE REF: the one line on stdout (and the archive's mtime says when it was last used)
  touch -c "$1"
  echo "$1 $2" >&3
  exit 0
}

LOCKED=""
lock_cache() { # one build at a time per cache (a second one then finds the first one's result)
  if [ -z "$LOCKED" ]; then
    exec 9>"$IMAGES/.lock"
    flock 9
    LOCKED=1
  fi
}

# ---- base ------------------------------------------------------------------------------------------
BASE_KEY="$(
  {
    echo "$SUITE $PACKAGES"
    sed -n '/^# ---- base rootfs: begin/,/^# ---- base rootfs: end/p' "$SCRIPT"
  } | sha | cut -c1-16
)"
BASE_TAR="$IMAGES/base/$SUITE-$BASE_KEY.tar"

ensure_base() {
  [ -f "$BASE_TAR" ] && [ -f "$BASE_TAR.sha256" ] && return 0
  command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
  mkdir -p "$IMAGES/base"
  log "debootstrap $SUITE with $PACKAGES from $DEBIAN_MIRROR (a few minutes, once)"
  local start root="$WORK/base-rootfs"
  start=$(date +%s)
  mkdir -p "$root"
  make_base_rootfs "$root"
  tar_dir "$root" "$WORK/base.tar"
  sha <"$WORK/base.tar" >"$WORK/base.tar.sha256"
  mv -f "$WORK/base.tar" "$BASE_TAR"
  mv -f "$WORK/base.tar.sha256" "$BASE_TAR.sha256"
  rm -rf --one-file-system "$root"
  log "base rootfs $BASE_TAR ($(du -h "$BASE_TAR" | cut -f1)) in $(($(date +%s) - start))s"
}

# ---- packing ---------------------------------------------------------------------------------------
# pack NAME TAG OUT LAYER... -- CONFIG-FLAG...: an OCI layout with the layers (uncompressed tars,
# gzipped by umoci) and the umoci config flags, tarred to OUT; its index names the image
# localhost/NAME:TAG both ways ctr reads a name (io.containerd.image.name and the OCI ref name).
pack() {
  local name="$1" tag="$2" out="$3"
  shift 3
  local layers=() layout="$WORK/oci"
  while [ $# -gt 0 ] && [ "$1" != -- ]; do
    layers+=("$1")
    shift
  done
  shift
  rm -rf "$layout"
  umoci init --layout "$layout"
  umoci new --image "$layout:$tag"
  local layer
  for layer in "${layers[@]}"; do
    umoci raw add-layer --image "$layout:$tag" --history.created="$CREATED" \
      --history.created_by="hack/build-image.sh $name: $(basename "$layer")" "$layer"
  done
  umoci config --image "$layout:$tag" --created="$CREATED" --history.created="$CREATED" \
    --history.created_by="hack/build-image.sh $name: config" "$@"
  umoci gc --layout "$layout"
  python3 - "$layout/index.json" "localhost/$name:$tag" <<'EOF'
import json
import sys

path, ref = sys.argv[1], sys.argv[2]
with open(path) as f:
    index = json.load(f)
assert len(index["manifests"]) == 1, index
annotations = index["manifests"][0].setdefault("annotations", {})
annotations["io.containerd.image.name"] = ref
annotations["org.opencontainers.image.ref.name"] = ref
with open(path, "w") as f:
    json.dump(index, f, separators=(",", ":"), sort_keys=True)
EOF
  chmod -R u+rwX,go+rX "$layout"
  find "$layout" -exec touch -h -d "@$EPOCH" {} +
  tar_dir "$layout" "$WORK/archive.tar"
  mv -f "$WORK/archive.tar" "$out"
  # Keep the newest few archives of this image; older tags are rebuilt if asked for again.
  find "$IMAGES" -maxdepth 1 -name "$name-*.oci.tar" -printf '%T@ %p\n' | sort -rn | tail -n +"$((KEEP + 1))" |
    cut -d' ' -f2- | xargs -r -d '\n' rm -f --
}

# ---- the pause image -------------------------------------------------------------------------------
build_pause() {
  command -v gcc >/dev/null || die "gcc is not installed (apt-get install gcc)"
  local src="$REPO_ROOT/hack/pause.c"
  local tag
  tag="$({ sha256sum "$src" "$SCRIPT" | sed "s|$REPO_ROOT/||"; gcc --version | head -n1; echo "epoch $EPOCH"; } |
    sha | cut -c1-12)"
  local out="$IMAGES/pause-$tag.oci.tar" ref="localhost/pause:$tag"
  [ -f "$out" ] && finish "$out" "$ref"
  WORK="$(mktemp -d "$IMAGES/.work.XXXXXX")"
  mkdir "$WORK/root"
  gcc -static -O2 -Wall -Wextra -Werror -s -o "$WORK/root/pause" "$src"
  chmod 0755 "$WORK/root/pause"
  touch -d "@$EPOCH" "$WORK/root/pause"
  tar_dir "$WORK/root" "$WORK/pause.tar"
  pack pause "$tag" "$out" "$WORK/pause.tar" -- \
    --config.user=65535:65535 --config.entrypoint=/pause --config.workingdir=/
  log "built $ref ($(du -h "$out" | cut -f1))"
  finish "$out" "$ref"
}

# ---- the cxbackup image ----------------------------------------------------------------------------
# The project's files that go into its wheel (the same the Dockerfile copies), relative to the repo.
project_files() {
  (
    cd "$REPO_ROOT"
    printf '%s\n' pyproject.toml README.md
    find operator -type f ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info/*'
  ) | LC_ALL=C sort
}

# Run a command inside the rootfs with a clean environment (the host's venv, pip and Python variables
# must not reach the image's python).
in_root() {
  local env=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
    SOURCE_DATE_EPOCH="$EPOCH" PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_DEFAULT_TIMEOUT=120)
  if [ -n "$ROOT_CA" ]; then env+=(PIP_CERT="$ROOT_CA"); fi
  local var
  for var in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
    if [ -n "${!var:-}" ]; then env+=("$var=${!var}"); fi
  done
  env -i "${env[@]}" chroot "$ROOTFS" "$@"
}

build_cxbackup() {
  mkdir -p "$IMAGES"
  # The base may have to be built before the tag is known; everything else waits for the tag.
  if [ ! -f "$BASE_TAR" ] || [ ! -f "$BASE_TAR.sha256" ]; then
    lock_cache
    WORK="$(mktemp -d "$IMAGES/.work.XXXXXX")"
    ensure_base
  fi
  local base_sha tag
  base_sha="$(cat "$BASE_TAR.sha256")"
  tag="$(
    {
      echo "base $base_sha"
      echo "epoch $EPOCH"
      cd "$REPO_ROOT"
      sha256sum "$LOCK" hack/build-image.sh hack/build-fetch.sh
      project_files | tr '\n' '\0' | xargs -0 sha256sum
      find native/fetch -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
      go version
    } | sha | cut -c1-12
  )"
  local out="$IMAGES/cxbackup-$tag.oci.tar" ref="localhost/cxbackup:$tag"
  [ -f "$out" ] && finish "$out" "$ref"
  lock_cache
  [ -f "$out" ] && finish "$out" "$ref"
  [ -n "$WORK" ] || WORK="$(mktemp -d "$IMAGES/.work.XXXXXX")"
  [ "$(id -u)" = 0 ] || die "building the image needs root (chroot into the image's rootfs)"
  command -v umoci >/dev/null || die "umoci is not installed (apt-get install umoci)"
  local start
  start=$(date +%s)

  ROOTFS="$WORK/rootfs"
  ROOT_CA=""
  local b=/tmp/cxbackup-build
  mkdir -p "$ROOTFS"
  tar -C "$ROOTFS" --extract --file "$BASE_TAR" --numeric-owner --same-permissions
  (cd "$ROOTFS" && find . -mindepth 1 -printf '%P\n') | LC_ALL=C sort >"$WORK/base-paths"
  # Everything changed from here on (mtime or ctime newer than the stamp) is the project layer.
  touch "$WORK/stamp"
  sleep 1

  mkdir -p "$ROOTFS$b/src" "$ROOTFS$b/dist"
  project_files >"$WORK/project-files"
  tar -C "$REPO_ROOT" --create --files-from "$WORK/project-files" | tar -C "$ROOTFS$b/src" --extract
  cp "$REPO_ROOT/$LOCK" "$ROOTFS$b/$LOCK"
  cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
  mknod -m 666 "$ROOTFS/dev/null" c 1 3
  local ca="${PIP_CERT:-${SSL_CERT_FILE:-${REQUESTS_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}}}"
  if [ -n "$ca" ] && [ -f "$ca" ]; then
    cp "$ca" "$ROOTFS$b/ca.pem"
    ROOT_CA="$b/ca.pem"
  fi

  log "venv $VENV with the image's python3"
  in_root python3 -m venv "$VENV"
  local wheels
  wheels="$IMAGES/wheels/$(cat "$REPO_ROOT/$LOCK" "$BASE_TAR.sha256" | sha | cut -c1-16)"
  if [ ! -d "$wheels" ]; then
    log "fetching the wheels of $LOCK (hash-checked, once)"
    in_root "$VENV/bin/pip" download --quiet --no-deps --only-binary=:all: --require-hashes \
      --dest "$b/wheels" -r "$b/$LOCK"
    mkdir -p "$IMAGES/wheels"
    cp -r "$ROOTFS$b/wheels" "$WORK/wheels"
    mv "$WORK/wheels" "$wheels"
  else
    cp -r "$wheels" "$ROOTFS$b/wheels"
  fi
  log "pip install --no-deps --require-hashes -r $LOCK"
  in_root "$VENV/bin/pip" install --quiet --no-index --find-links "$b/wheels" --only-binary=:all: --no-deps \
    --require-hashes -r "$b/$LOCK"
  log "building and installing the project's wheel"
  in_root "$VENV/bin/pip" wheel --quiet --no-deps --wheel-dir "$b/dist" "$b/src"
  in_root "$VENV/bin/pip" install --quiet --no-index --no-deps --find-links "$b/dist" cxbackup
  ln -s "$VENV/bin/cxbackup" "$ROOTFS/usr/local/bin/cxbackup"
  log "the native media transfer: cxbackup-fetch into $VENV/bin"
  "$REPO_ROOT/hack/build-fetch.sh" "$ROOTFS$VENV/bin" >/dev/null
  in_root groupadd --system --gid "$APP_GID" "$APP_USER"
  in_root useradd --system --no-log-init --uid "$APP_UID" --gid "$APP_GID" --no-create-home \
    --shell /usr/sbin/nologin "$APP_USER"
  rm -rf "${ROOTFS:?}$b" "$ROOTFS/etc/resolv.conf" "$ROOTFS/dev/null"
  rm -rf "$ROOTFS/root/.cache"

  # The project layer: what changed since the stamp, with its times set to EPOCH. Nothing of the base
  # may have gone (a layer of changes has no deletions).
  (cd "$ROOTFS" && find . -mindepth 1 \( -newer "$WORK/stamp" -o -cnewer "$WORK/stamp" \) -printf '%P\n') |
    LC_ALL=C sort >"$WORK/project-paths"
  (cd "$ROOTFS" && find . -mindepth 1 -printf '%P\n') | LC_ALL=C sort >"$WORK/final-paths"
  local gone
  gone="$(LC_ALL=C comm -23 "$WORK/base-paths" "$WORK/final-paths")"
  [ -z "$gone" ] || die "the build removed files of the base rootfs: $gone"
  (cd "$ROOTFS" && tr '\n' '\0' <"$WORK/project-paths" | xargs -0 -r touch -h -d "@$EPOCH")
  tar_dir "$ROOTFS" "$WORK/project.tar" "$WORK/project-paths"

  log "smoke test: cxbackup --help as $APP_UID:$APP_GID"
  env -i PATH="$IMAGE_PATH" HOME=/ LANG=C.UTF-8 \
    chroot --userspec="$APP_UID:$APP_GID" "$ROOTFS" "$ENTRYPOINT" --help >/dev/null

  pack cxbackup "$tag" "$out" "$BASE_TAR" "$WORK/project.tar" -- \
    --config.user="$APP_UID:$APP_GID" --config.entrypoint="$ENTRYPOINT" --config.cmd="$CMD" \
    --config.env="PATH=$IMAGE_PATH" --config.workingdir=/
  log "built $ref ($(du -h "$out" | cut -f1)) in $(($(date +%s) - start))s"
  finish "$out" "$ref"
}

mkdir -p "$IMAGES"
if [ "$KIND" = pause ]; then
  build_pause
else
  build_cxbackup
fi
