#!/usr/bin/env bash
# Regenerate the parameters table of the chart's README from the `## @param` comments of its values.yaml,
# with Bitnami's readme-generator-for-helm (installed by scripts/install-tools.sh), then the docs page that
# copies it (python -m scripts.gen_docs). The generator refuses a values.yaml where a value has no
# `## @param` line or a `## @param` line names no value.
#   scripts/chart-readme.sh [CHART_DIR]      rewrites CHART_DIR/README.md (default: the project's chart)
# tests/test_docs.py runs the same generator on a copy and fails when the committed table is stale.
set -euo pipefail
cd "$(dirname "$0")/.."
chart=${1:-charts/airflow-migration-webhook}
generator=.cache/tools/node/node_modules/.bin/readme-generator
[ -x "$generator" ] || bash scripts/install-tools.sh
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! "$generator" --values "$chart/values.yaml" --readme "$chart/README.md" > "$log" 2>&1; then
  grep -E '^(ERROR|WARN)' "$log" >&2 || cat "$log" >&2
  exit 1
fi
if [ $# -eq 0 ]; then
  .venv/bin/python -m scripts.gen_docs
fi
