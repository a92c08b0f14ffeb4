#!/usr/bin/env bash
# Install the tools of the docs and release steps into .cache/tools (git-ignored), pinned:
#   .cache/tools/venv   mkdocs, mkdocs-material, cyclonedx-bom  (requirements/tools/tools.lock, by sha256)
#   .cache/tools/node   Bitnami's readme-generator-for-helm      (requirements/tools/package-lock.json, npm ci)
# They stay out of .venv (the project's environment) and out of the image. Needs PyPI and the npm registry
# the first time; cached after (a re-run is instant and needs no network), so scripts/test.sh runs it before
# pytest, which has no network. Prints nothing on success.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=.cache/tools
LOCKS=requirements/tools
PYTHON=${PYTHON:-python3}
mkdir -p "$TOOLS"

stamp=$TOOLS/venv/.installed-$(sha256sum "$LOCKS/tools.lock" | cut -c1-16)
if [ ! -f "$stamp" ]; then
  rm -rf "$TOOLS/venv"
  "$PYTHON" -m venv "$TOOLS/venv"
  if ! "$TOOLS/venv/bin/python" -m pip install -q --no-deps --require-hashes -r "$LOCKS/tools.lock" \
      > "$TOOLS/pip.log" 2>&1; then
    tail -n 40 "$TOOLS/pip.log" >&2
    exit 1
  fi
  touch "$stamp"
fi

stamp=$TOOLS/node/.installed-$(cat "$LOCKS/package.json" "$LOCKS/package-lock.json" | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  command -v npm >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends npm; }
  rm -rf "$TOOLS/node"
  mkdir -p "$TOOLS/node"
  cp "$LOCKS/package.json" "$LOCKS/package-lock.json" "$TOOLS/node/"
  if ! (cd "$TOOLS/node" && npm ci --silent --no-audit --no-fund) > "$TOOLS/npm.log" 2>&1; then
    tail -n 40 "$TOOLS/npm.log" >&2
    exit 1
  fi
  touch "$stamp"
fi
