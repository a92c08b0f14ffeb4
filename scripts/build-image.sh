#!/usr/bin/env bash
# Build the project's image from its Dockerfile without Docker and without a registry, for the image tier:
#   1. install Debian's buildah, podman, runc and mmdebstrap when missing;
#   2. make a base equivalent to python:3.11-slim-bookworm from Debian's own packages (mmdebstrap minbase
#      with python3, python3-venv, python-is-python3, ca-certificates; docs, man pages and locales left
#      out), cached in the cache folder, and `podman import` it as localhost/amw-python:3.11-bookworm;
#   3. `buildah bud --isolation chroot` the Dockerfile on that base. pip inside the build trusts the
#      machine's CA bundle through a build-only pip.conf mounted into the RUN steps (never into the image).
# Storage (vfs), run state and the podman/buildah configuration live in the folder given as $1, which the
# caller removes; prints the lines `export VAR=...` that let podman use that storage.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:?usage: build-image.sh SCRATCH_DIR}
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

mkdir -p "$WORK/storage" "$WORK/run" "$CACHE"
# podman's default ulimits ask for more than this machine grants: explicit ones the chart's pod would see
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

include=python3,python3-venv,python-is-python3,ca-certificates
key=$( { cat "$SOURCES"; echo "$include"; } | sha256sum | cut -c1-12)
tarball=$CACHE/base-bookworm-$key.tar
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
log "built in $((SECONDS - started)) s"
echo "export CONTAINERS_CONF=$CONTAINERS_CONF CONTAINERS_STORAGE_CONF=$CONTAINERS_STORAGE_CONF AMW_IMAGE=$IMAGE"
