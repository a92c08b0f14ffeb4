#!/usr/bin/env bash
# Choose the kube-apiserver of the end-to-end tier and print its path on stdout (and which one on stderr):
#   1. $AMW_KUBE_APISERVER: any kube-apiserver binary (e.g. an envtest binary from `setup-envtest`);
#   2. ../shared/tools/kube-apiserver-1.32.13.xz when the shared folder beside the clone has it: unpacked into
#      the cache (never into the repository) and checked against its published sha256;
#   3. otherwise Kubernetes 1.20.2 built from Debian's source package (scripts/build-kube-apiserver.sh).
# Debian's etcd serves all of them and is installed when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${AMW_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/airflow-migration-webhook}
ARCHIVE=${AMW_SHARED_DIR:-../shared}/tools/kube-apiserver-1.32.13.xz
ARCHIVE_SHA256=73dd6812a19344a3fad408bed7fcfd3fa70fe906e74ed5147453c6d55462d845
BINARY_SHA256=9693c17cd3130bd094032ad1a3a695abb1bfbe9bc238e4d77e0d359805e00e56
log() { echo "kube-apiserver: $*" >&2; }

if ! dpkg -s etcd-server >/dev/null 2>&1; then
  log "installing Debian's etcd-server"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends etcd-server >&2
fi

if [ -n "${AMW_KUBE_APISERVER:-}" ]; then
  [ -x "$AMW_KUBE_APISERVER" ] || { log "AMW_KUBE_APISERVER=$AMW_KUBE_APISERVER is not an executable"; exit 1; }
  log "using \$AMW_KUBE_APISERVER ($("$AMW_KUBE_APISERVER" --version))"
  echo "$AMW_KUBE_APISERVER"
  exit 0
fi

if [ -f "$ARCHIVE" ]; then
  out=$CACHE/kube-apiserver/v1.32.13/kube-apiserver
  if [ ! -x "$out" ] || [ "$(sha256sum < "$out" | cut -d' ' -f1)" != "$BINARY_SHA256" ]; then
    [ "$(sha256sum < "$ARCHIVE" | cut -d' ' -f1)" = "$ARCHIVE_SHA256" ] \
      || { log "$ARCHIVE: sha256 mismatch, refusing it"; exit 1; }
    mkdir -p "$(dirname "$out")"
    xz -dc "$ARCHIVE" > "$out.tmp"
    [ "$(sha256sum < "$out.tmp" | cut -d' ' -f1)" = "$BINARY_SHA256" ] \
      || { rm -f "$out.tmp"; log "unpacked binary: sha256 mismatch"; exit 1; }
    chmod 755 "$out.tmp" && mv "$out.tmp" "$out"
  fi
  log "using v1.32.13 from $ARCHIVE (sha256 checked), unpacked in $out"
  echo "$out"
  exit 0
fi

log "no \$AMW_KUBE_APISERVER and no $ARCHIVE: building Kubernetes 1.20.2 from Debian's source package"
bash scripts/build-kube-apiserver.sh
