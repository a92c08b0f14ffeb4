#!/usr/bin/env bash
# Set everything up on a fresh machine and run every check and test tier.
#   FAST=1 scripts/test.sh   skips the slow tiers (real kube-apiserver, real Airflow), loudly.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh
bash scripts/install-helm.sh
export PATH="$PWD/.cache/bin:$PATH"
echo "== lint: ruff, mypy, import contracts, hadolint, shellcheck"
.venv/bin/ruff check app tests
.venv/bin/ruff format --check app tests
.venv/bin/mypy
.venv/bin/lint-imports
.venv/bin/hadolint Dockerfile
.venv/bin/shellcheck scripts/*.sh .ci/run
echo "== tests"
exec .venv/bin/pytest "$@"
