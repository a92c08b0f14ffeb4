#!/usr/bin/env bash
# Find the binaries of the node tier (a real single-node Kubernetes cluster) and print their folder on stdout:
#   1. $AMW_KUBE_BIN_DIR: a folder holding kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
#      kube-proxy and coredns (any build of Kubernetes >= 1.30 and CoreDNS >= 1.11);
#   2. ../shared/tools/*-1.32.13.xz and coredns-1.11.3.xz beside the clone: unpacked once into the cache (never
#      into the repository), each checked against its published sha256.
# No registry this project reaches publishes these binaries, so a clone without either prints nothing on
# stdout, says why on stderr and exits 3: the node tier then skips with that reason.
# Also installs what Debian gives the node: containerd, runc, the CNI plugins, iptables, conntrack, etcd.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${AMW_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/airflow-migration-webhook}
TOOLS=${AMW_SHARED_DIR:-../shared}/tools
NAMES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy coredns)
# name -> "archive sha256 binary sha256", from ../shared/tools/README.md
declare -A SUMS=(
  [kube-apiserver]="73dd6812a19344a3fad408bed7fcfd3fa70fe906e74ed5147453c6d55462d845 9693c17cd3130bd094032ad1a3a695abb1bfbe9bc238e4d77e0d359805e00e56"
  [kube-controller-manager]="1a7fde15626d95a6f4729429ab324a873addc2e2774722690ecee39b0fc16cf8 e1bfacdc27da761c64172755a9272b4b53ba3b68df75172652e6e8ae5d1817e0"
  [kube-scheduler]="7e1e5b7d1d67472ea11abe0fc1c81ea1f2234c2efa0c827c10ce0360aa126f7a ffd9dbcabf48784b20c399c17936c2c02f585eb2a0bcbe9829b21e6cd25badf4"
  [kubelet]="d63bbfa5f1f35a59aca9799fa6fdbc13c80d2b5b32f4d35d3d6332e7c3ff283e 229864d76394cda4d5a20e38171f33912c017b2a84d155fff09a228c854a1e94"
  [kube-proxy]="5107510ddc210a064de6ac303af6d55f4dea11654d3c1c071d93449c083df4b1 1832385e4b8a15ac413e2b9b3edab76bf60ad86e8caf28fcde169c5687c43160"
  [coredns]="e88526cd56db3891da5b850dfa1cc92c51392d34981545ca403b1bb6b7218d76 1cc8e47e7ed14f28f56d6d8103f767d23056aedd80dadce4e97977895be62095"
)
declare -A ARCHIVES=(
  [kube-apiserver]=kube-apiserver-1.32.13.xz [kube-controller-manager]=kube-controller-manager-1.32.13.xz
  [kube-scheduler]=kube-scheduler-1.32.13.xz [kubelet]=kubelet-1.32.13.xz [kube-proxy]=kube-proxy-1.32.13.xz
  [coredns]=coredns-1.11.3.xz
)
log() { echo "kube-node: $*" >&2; }
sha() { sha256sum < "$1" | cut -d' ' -f1; }

missing=()
for pkg in containerd runc containernetworking-plugins iptables conntrack etcd-server; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian's ${missing[*]}"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
# Debian starts containerd as a service where an init system runs: the node tier runs its own, privately
systemctl disable --now containerd >/dev/null 2>&1 || true

if [ -n "${AMW_KUBE_BIN_DIR:-}" ]; then
  for name in "${NAMES[@]}"; do
    [ -x "$AMW_KUBE_BIN_DIR/$name" ] || { log "AMW_KUBE_BIN_DIR=$AMW_KUBE_BIN_DIR has no executable $name"; exit 1; }
  done
  log "using \$AMW_KUBE_BIN_DIR=$AMW_KUBE_BIN_DIR"
  echo "$AMW_KUBE_BIN_DIR"
  exit 0
fi

for name in "${NAMES[@]}"; do
  if [ ! -f "$TOOLS/${ARCHIVES[$name]}" ]; then
    log "no \$AMW_KUBE_BIN_DIR and no $TOOLS/${ARCHIVES[$name]}: the node tier needs kubelet, the control plane" \
      "and CoreDNS, which no registry reached here publishes (they come from ../shared/tools beside the clone)"
    exit 3
  fi
done
out=$CACHE/kube-node/v1.32.13
mkdir -p "$out"
for name in "${NAMES[@]}"; do
  read -r archive_sum binary_sum <<< "${SUMS[$name]}"
  if [ -x "$out/$name" ] && [ "$(sha "$out/$name")" = "$binary_sum" ]; then
    continue
  fi
  archive=$TOOLS/${ARCHIVES[$name]}
  [ "$(sha "$archive")" = "$archive_sum" ] || { log "$archive: sha256 mismatch, refusing it"; exit 1; }
  xz -dc "$archive" > "$out/$name.tmp"
  [ "$(sha "$out/$name.tmp")" = "$binary_sum" ] || { rm -f "$out/$name.tmp"; log "$name: unpacked sha256 mismatch"; exit 1; }
  chmod 755 "$out/$name.tmp" && mv "$out/$name.tmp" "$out/$name"
  log "unpacked $name from $archive (sha256 checked)"
done
log "using v1.32.13 and CoreDNS 1.11.3 from $TOOLS, unpacked in $out"
echo "$out"
