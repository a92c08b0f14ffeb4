#!/usr/bin/env bash
# Make a release's files in dist/ (or --out DIR), from this tree:
#   airflow-migration-webhook-VERSION.tgz          the chart (`helm package`)
#   airflow-migration-webhook-VERSION.oci.tar      the image as an OCI archive (scripts/build-image.sh's cached
#                                                  archive, named REPOSITORY:VERSION after values.yaml)
#   airflow-migration-webhook-VERSION.cdx.json     SBOM (CycloneDX JSON) of the image's Python environment
#   THIRD-PARTY-LICENSES.txt                       the licences of that environment, and the project's
#   SHA256SUMS                                     `sha256sum -c SHA256SUMS` checks the others
#
#   scripts/release.sh [--dry-run] [--skip-image] [--out DIR]
#     (no flag)     a release: refuses a tree with changes, a HEAD without the tag vVERSION, a CHANGELOG.md
#                   without a dated `## [VERSION] - YYYY-MM-DD` section, or stale generated docs
#     --dry-run     the same files and checks, but those refusals are only printed (CI runs this)
#     --skip-image  no image archive (FAST=1 in scripts/test.sh: the image is built in the full flow only)
#
# The version is app/__init__.py's; the chart's version and appVersion must equal it (tests/test_release.py
# checks that too). The SBOM describes the environment the image installs: a virtual environment made the
# way the Dockerfile makes /opt/venv (requirements/runtime.lock and build.lock by sha256, the project
# without an index, then pip and setuptools removed). With the image, the distributions in the archive's
# /opt/venv must be exactly the SBOM's components, or the release stops.
# Caches: ${AMW_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/airflow-migration-webhook}/release holds that
# environment's dependencies (keyed on the lock files; PyPI the first time, no network after), and the image
# comes from scripts/build-image.sh with the same AMW_CACHE_DIR. Needs scripts/install-tools.sh (cyclonedx)
# and scripts/install-helm.sh (helm) first; scripts/test.sh runs all three.
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: scripts/release.sh [--dry-run] [--skip-image] [--out DIR]"
dry_run=0 skip_image=0 out=dist
while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) dry_run=1 ;;
    --skip-image) skip_image=1 ;;
    --out) [ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }; out=$2; shift ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
  shift
done
CACHE=${AMW_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/airflow-migration-webhook}/release
CHART=charts/airflow-migration-webhook
PYTHON=${PYTHON:-python3}
HELM=.cache/bin/helm
CYCLONEDX=.cache/tools/venv/bin/cyclonedx-py
START=$SECONDS
log() { echo "release: [+$((SECONDS - START)) s] $*" >&2; }
die() { echo "release: $*" >&2; exit 1; }
[ -x "$HELM" ] || die "no $HELM: run scripts/install-helm.sh first"
[ -x "$CYCLONEDX" ] || die "no $CYCLONEDX: run scripts/install-tools.sh first"
[ -x .venv/bin/python ] || die "no .venv: run scripts/setup-venv.sh first"

# --- the version, and what a release refuses ------------------------------------------------------------
version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' app/__init__.py)
chart_version=$(sed -n 's/^version: *//p' "$CHART/Chart.yaml")
app_version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$CHART/Chart.yaml")
[ -n "$version" ] || die "no __version__ in app/__init__.py"
[ "$chart_version" = "$version" ] && [ "$app_version" = "$version" ] \
  || die "versions disagree: app/__init__.py $version, Chart.yaml version $chart_version, appVersion $app_version"
refusals=()
[ -z "$(git status --porcelain)" ] || refusals+=("the work tree has changes (git status)")
git tag --points-at HEAD | grep -qx "v$version" || refusals+=("HEAD is not tagged v$version")
grep -Eq "^## \[$version\] - [0-9]{4}-[0-9]{2}-[0-9]{2}$" CHANGELOG.md \
  || refusals+=("CHANGELOG.md has no '## [$version] - YYYY-MM-DD' section")
.venv/bin/python -m scripts.gen_docs --check 2>/dev/null \
  || refusals+=("generated docs are stale: .venv/bin/python -m scripts.gen_docs")
for refusal in "${refusals[@]}"; do
  if [ "$dry_run" = 1 ]; then log "dry run: a release would refuse: $refusal"; else die "refused: $refusal"; fi
done
log "airflow-migration-webhook $version$([ "$dry_run" = 1 ] && echo ' (dry run)')"

if [ -e "$out" ] && [ -n "$(ls -A "$out")" ] && [ ! -f "$out/SHA256SUMS" ]; then
  die "$out is not empty and holds no SHA256SUMS: not a release folder, left alone"
fi
mkdir -p "$CACHE"
stage=$(mktemp -d "$CACHE/stage.XXXXXX")  # beside the cached environment: hard links need one file system
trap 'rm -rf "$stage"' EXIT
mkdir "$stage/files"
files=$stage/files name=airflow-migration-webhook-$version

# --- the chart ------------------------------------------------------------------------------------------
"$HELM" package "$CHART" --destination "$files" >/dev/null
[ -f "$files/$name.tgz" ] || die "helm package wrote no $name.tgz"
log "chart: $name.tgz"

# --- the image's Python environment, as the Dockerfile makes it ----------------------------------------
key=$( { "$PYTHON" --version; cat requirements/runtime.lock requirements/build.lock; } | sha256sum | cut -c1-16)
deps=$CACHE/venv-$key
if [ ! -f "$deps/.complete" ]; then
  log "installing requirements/runtime.lock into $deps (once per lock change; PyPI)"
  rm -rf "$deps"
  "$PYTHON" -m venv "$deps"
  if ! "$deps/bin/python" -m pip install -q --no-deps --require-hashes \
      -r requirements/runtime.lock -r requirements/build.lock > "$stage/pip.log" 2>&1; then
    tail -n 40 "$stage/pip.log" >&2
    exit 1
  fi
  touch "$deps/.complete"
  find "$CACHE" -maxdepth 1 -name 'venv-*' ! -name "venv-$key" -exec rm -rf {} +
fi
venv=$stage/venv
cp -al "$deps" "$venv"  # hard links: pip adds and removes files, it never rewrites one in place
rm -f "$venv/.complete"
build=$stage/build  # pip builds the project in a copy; the tree stays clean
mkdir "$build"
cp -a pyproject.toml README.md app "$build/"
if ! { "$venv/bin/python" -m pip install -q --no-deps --no-build-isolation --no-index "$build" \
       && "$venv/bin/python" -m pip uninstall -y -q setuptools pip; } > "$stage/pip.log" 2>&1; then
  tail -n 40 "$stage/pip.log" >&2
  exit 1
fi
rm -rf "$venv"/lib/python3*/site-packages/wheel*
site=$(echo "$venv"/lib/python3*/site-packages)

# --- SBOM and licences ----------------------------------------------------------------------------------
# the root component's version: pyproject.toml reads it from app/__init__.py, which cyclonedx does not
sed "s/^dynamic = \[\"version\"\]$/version = \"$version\"/" pyproject.toml > "$stage/pyproject.toml"
if ! SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) "$CYCLONEDX" environment "$venv" \
    --pyproject "$stage/pyproject.toml" --mc-type application --output-reproducible --of JSON \
    -o "$files/$name.cdx.json" > "$stage/cyclonedx.log" 2>&1; then
  cat "$stage/cyclonedx.log" >&2
  die "cyclonedx-py failed"
fi
.venv/bin/python -m scripts.release_files sbom-packages "$files/$name.cdx.json" > "$stage/sbom-packages"
log "SBOM: $name.cdx.json ($(wc -l < "$stage/sbom-packages") components, validated by cyclonedx-py)"
.venv/bin/python -m scripts.release_files licences "$site" "$files/THIRD-PARTY-LICENSES.txt" LICENSE
log "licences: THIRD-PARTY-LICENSES.txt"

# --- the image ------------------------------------------------------------------------------------------
if [ "$skip_image" = 1 ]; then
  [ "$dry_run" = 1 ] || die "--skip-image is for dry runs only: a release ships its image"
  log "--skip-image: NO image archive in this dry run"
else
  archive=$(bash scripts/build-image.sh | tail -n 1)
  repository=$(.venv/bin/python -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["image"]["repository"])' \
    "$CHART/values.yaml")
  .venv/bin/python -m scripts.release_files retag "$archive" "$files/$name.oci.tar" "$repository:$version"
  .venv/bin/python -m scripts.release_files image-packages "$files/$name.oci.tar" > "$stage/image-packages"
  if ! diff -u "$stage/sbom-packages" "$stage/image-packages" >&2; then
    die "the image's /opt/venv differs from the SBOM (above: - SBOM, + image)"
  fi
  log "image: $name.oci.tar ($repository:$version; its $(wc -l < "$stage/image-packages") Python distributions are the SBOM's)"
fi

# --- checksums, then dist/ ------------------------------------------------------------------------------
(cd "$files" && sha256sum -- * > SHA256SUMS)
rm -rf "$out"
mkdir -p "$(dirname "$out")"
mv "$files" "$out"
log "wrote $out/: $(cd "$out" && echo *)"
