#!/usr/bin/env bash
# Build a real kube-apiserver (v1.20.2) from Debian bookworm's `kubernetes` source package with Debian's
# Go 1.19, and install Debian's etcd, for the end-to-end tier (see ../shared/notes/real-apiserver.md).
# The binary is cached outside the work tree, keyed on the Debian source version: later runs skip the
# ~2 minute build. Prints the binary's path on stdout. Nothing built lands in the repository.
set -euo pipefail
CACHE=${AMW_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/airflow-migration-webhook}
log() { echo "build-kube-apiserver: [$(date -u +%H:%M:%S)] $*" >&2; }

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
}

apt_install etcd-server openssl curl ca-certificates

SRC_LIST=/etc/apt/sources.list.d/amw-k8s-debsrc.sources
if [ ! -f "$SRC_LIST" ]; then
  # the same archives as the machine's own entries, as deb-src
  sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > "$SRC_LIST"
  apt-get update -qq >&2
fi
VERSION=$(apt-cache showsrc kubernetes | awk '/^Version:/ {print $2}' | grep 'really1.20.2' | sort -V | tail -n 1)
[ -n "$VERSION" ] || { log "no kubernetes 1.20.2 source package found"; exit 1; }
OUT=$CACHE/kube-apiserver/$VERSION
if [ -x "$OUT/kube-apiserver" ]; then
  echo "$OUT/kube-apiserver"
  exit 0
fi

apt_install golang-1.19-go dpkg-dev
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kube-apiserver-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export PATH=/usr/lib/go-1.19/bin:$PATH
export GOPATH=$WORK/gopath GOCACHE=$CACHE/gocache GO111MODULE=off CGO_ENABLED=0 GOFLAGS=
KROOT=$GOPATH/src/k8s.io/kubernetes
mkdir -p "$WORK/debsrc" "$WORK/logs" "$GOPATH/src/k8s.io"
log "downloading kubernetes $VERSION source"
# root downloads into a folder _apt cannot read: apt says so ("unsandboxed"), harmlessly; keep the rest
(cd "$WORK/debsrc" && { apt-get source -qq --download-only "kubernetes=$VERSION" \
  && apt-get download -qq golang-github-modern-go-reflect2-dev; } 2>&1 | { grep -v "unsandboxed" || true; } >&2)
# --no-check: the .dsc signature needs the uploader's key, which no package here ships; apt has already
# checked every downloaded file against the hashes of the signed archive index
dpkg-source --no-check --no-copy -x "$WORK"/debsrc/kubernetes_*.dsc "$KROOT" 2>&1 | { grep -v "^dpkg-source: info:" || true; } >&2

# reflect2 v1.0.1 crashes at run time under Go >= 1.18: use Debian's v1.0.2
dpkg-deb -x "$WORK"/debsrc/golang-github-modern-go-reflect2-dev_*_all.deb "$WORK/reflect2-deb"
R=$KROOT/vendor/github.com/modern-go/reflect2
rm -f "$R"/*.go "$R"/*.s
cp "$WORK"/reflect2-deb/usr/share/gocode/src/github.com/modern-go/reflect2/*.go \
   "$WORK"/reflect2-deb/usr/share/gocode/src/github.com/modern-go/reflect2/*.s "$R/"

log "generating OpenAPI definitions"
cd "$KROOT"
go install k8s.io/kubernetes/vendor/k8s.io/kube-openapi/cmd/openapi-gen
find . \( -path ./vendor -o -path './_*' -o -path './.*' \) -prune -o -type f -name '*.go' -print \
  | sed -e 's|^\./staging/src/|vendor/|' -e 's|^\./||' \
  | xargs grep -l '^// *+k8s:' | xargs grep -l '+k8s:openapi-gen=' \
  | grep -v -e '^vendor/k8s.io/code-generator/' -e '^vendor/k8s.io/sample-apiserver/' \
  | xargs -n1 dirname | LC_ALL=C sort -u | sed 's|^|k8s.io/kubernetes/|' \
  > "$WORK/openapi-input-dirs.txt" || true
test "$(wc -l < "$WORK/openapi-input-dirs.txt")" -eq 80
"$GOPATH/bin/openapi-gen" --logtostderr \
  -i "$(paste -sd, "$WORK/openapi-input-dirs.txt")" \
  -p k8s.io/kubernetes/pkg/generated/openapi -O zz_generated.openapi \
  -h vendor/k8s.io/code-generator/hack/boilerplate.go.txt \
  -r "$WORK/logs/KUBE_violations.report" --output-base "$GOPATH/src" 2>"$WORK/logs/openapi-gen.log"
diff "$WORK/logs/KUBE_violations.report" api/api-rules/violation_exceptions.list >&2

log "compiling cmd/kube-apiserver (about 2 minutes on 2 cores; 5-7 minutes in all on a fresh machine)"
V=k8s.io/kubernetes/vendor/k8s.io
LDFLAGS="-s -w"
for p in component-base/version client-go/pkg/version; do
  LDFLAGS="$LDFLAGS -X $V/$p.gitVersion=v1.20.2 -X $V/$p.gitMajor=1 -X $V/$p.gitMinor=20"
  LDFLAGS="$LDFLAGS -X $V/$p.gitCommit=faecb196815e248d3ecfb03c680a4507229c2a56 -X $V/$p.gitTreeState=dirty"
  LDFLAGS="$LDFLAGS -X $V/$p.buildDate=1970-01-01T00:00:00Z"
done
mkdir -p "$OUT"
go build -tags providerless -trimpath -ldflags "$LDFLAGS" -o "$OUT/kube-apiserver.tmp" ./cmd/kube-apiserver
mv "$OUT/kube-apiserver.tmp" "$OUT/kube-apiserver"
"$OUT/kube-apiserver" --version=raw >&2 || "$OUT/kube-apiserver" --version >&2
echo "$OUT/kube-apiserver"
