#!/usr/bin/env bash
# Build the project's image from its Dockerfile without Docker and without a registry, once, and keep it as
# an OCI archive in the cache folder; prints the archive's path on its last stdout line (logs go to stderr).
#   scripts/build-image.sh        -> .../image/airflow-migration-webhook-<key>.oci.tar
# The archive holds one image named localhost/airflow-migration-webhook:test (the index's
# org.opencontainers.image.ref.name): `podman load -i ARCHIVE` and containerd's
# `ctr -n k8s.io images import ARCHIVE` both store it under that name.
# <key> hashes everything that goes into the image: the Dockerfile, .dockerignore, requirements/*.lock,
# pyproject.toml, README.md, app/** (without __pycache__), this script and the base tarball's key. When the
# archive exists the script is a cheap no-op (about a second, no network), so any test may call it and read
# the last line; scripts/test.sh calls it before pytest, since pytest runs without a network
# (scripts/isolated.sh). When it does not, the build:
#   1. installs Debian's buildah, podman, runc and mmdebstrap when missing;
#   2. makes a base equivalent to python:3.11-slim-bookworm from Debian's own packages (mmdebstrap minbase
#      with python3, python3-venv, python-is-python3, ca-certificates; docs, man pages and locales left
#      out), cached in the cache folder, and `podman import`s it as localhost/amw-python:3.11-bookworm;
#   3. `buildah bud --isolation chroot` the Dockerfile on that base. pip inside the build installs only
#      hash-pinned files (requirements/*.lock) and trusts the machine's CA bundle through a build-only
#      pip.conf mounted into the RUN steps (never into the image);
#   4. `buildah push`es the image to the archive (written aside, then renamed) and removes older archives.
# Build storage (vfs) lives in a scratch folder removed at exit. Concurrent callers wait on a lock.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 0 ] || { echo "usage: scripts/build-image.sh (prints the cached image archive's path)" >&2; exit 2; }
CACHE=${AMW_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/airflow-migration-webhook}/image
IMAGE=localhost/airflow-migration-webhook:test
BASE=localhost/amw-python:3.11-bookworm
SOURCES=/etc/apt/sources.list.d/debian.sources
log() { echo "build-image: [$(date -u +%H:%M:%S)] $*" >&2; }

missing=()
for pkg in buildah podman runc mmdebstrap uidmap; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

include=python3,python3-venv,python-is-python3,ca-certificates
base_key=$( { cat "$SOURCES"; echo "$include"; } | sha256sum | cut -c1-12)
tarball=$CACHE/base-bookworm-$base_key.tar
inputs=(Dockerfile .dockerignore requirements/*.lock pyproject.toml README.md scripts/build-image.sh)
mapfile -t sources < <(find app -type f ! -path '*/__pycache__/*' | LC_ALL=C sort)
key=$( { echo "base $base_key"; sha256sum "${inputs[@]}" "${sources[@]}"; } | sha256sum | cut -c1-16)
archive=$CACHE/airflow-migration-webhook-$key.oci.tar

mkdir -p "$CACHE"
exec 9> "$CACHE/.lock"
flock 9  # another build of the same tree: wait for it, then find its archive
if [ -f "$archive" ]; then
  log "cached: $archive"
  echo "$archive"
  exit 0
fi

# the build fetches Debian packages and PyPI files: say so at once where there is no network at all
# (a route through any link but lo: /proc/net/route after its header, first column; ipv6_route, last column)
tables=(/proc/net/route)
[ ! -f /proc/net/ipv6_route ] || tables+=(/proc/net/ipv6_route)  # no such file: IPv6 disabled
if ! awk 'FILENAME ~ /ipv6/ { if ($NF != "lo") out = 1; next } FNR > 1 && $1 != "lo" { out = 1 }
          END { exit !out }' "${tables[@]}"; then
  log "no image archive for this tree ($archive) and no route out of this network namespace (inside"
  log "scripts/isolated.sh?): run scripts/build-image.sh outside it first (scripts/test.sh does)"
  exit 1
fi

WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/amw-image-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/storage" "$WORK/run"
# podman's default ulimits ask for more than this machine grants (as in tests/test_image.py)
cat > "$WORK/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=8192:8192", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
cat > "$WORK/storage.conf" <<CONF
[storage]
driver = "vfs"
graphroot = "$WORK/storage"
runroot = "$WORK/run"
CONF
printf '[global]\ncert = /etc/amw-build/ca.crt\n' > "$WORK/pip.conf"
export CONTAINERS_CONF=$WORK/containers.conf CONTAINERS_STORAGE_CONF=$WORK/storage.conf

if [ ! -f "$tarball" ]; then
  log "making the base from Debian's packages (about 45 s, once)"
  mmdebstrap --quiet --variant=minbase --include="$include" \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    bookworm "${tarball%.tar}.partial.tar" "$SOURCES" >&2  # the .tar suffix makes it a tarball
  mv "${tarball%.tar}.partial.tar" "$tarball"
fi
podman import --quiet "$tarball" "$BASE" >/dev/null
log "building $IMAGE from the Dockerfile (about a minute)"
started=$SECONDS
if ! buildah bud --quiet --isolation chroot --network host --build-arg "PYTHON_IMAGE=$BASE" \
    -v /etc/ssl/certs/ca-certificates.crt:/etc/amw-build/ca.crt:ro -v "$WORK/pip.conf:/etc/pip.conf:ro" \
    -t "$IMAGE" . > "$WORK/build.log" 2>&1; then
  tail -n 40 "$WORK/build.log" >&2
  exit 1
fi
log "built in $((SECONDS - started)) s; writing $archive"
buildah push --quiet "$IMAGE" "oci-archive:$archive.partial:$IMAGE" >&2
mv "$archive.partial" "$archive"
find "$CACHE" -maxdepth 1 -name 'airflow-migration-webhook-*.oci.tar*' ! -name "${archive##*/}" -delete
log "image archive ready in $((SECONDS - started)) s"
echo "$archive"
