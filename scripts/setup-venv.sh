#!/usr/bin/env bash
# Create .venv and install the project with its pinned dependencies (requirements/dev.lock).
# Idempotent: re-running only installs what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml requirements/dev.lock | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  if ! { .venv/bin/python -m pip install -q --upgrade pip \
      && .venv/bin/python -m pip install -q -c requirements/dev.lock -e '.[test]'; } > .venv/pip.log 2>&1; then
    tail -n 40 .venv/pip.log >&2
    exit 1
  fi
  rm -f .venv/.installed-* && touch "$stamp"
fi
