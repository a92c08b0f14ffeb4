"""Paths and small helpers shared by the test tiers."""

from __future__ import annotations

import base64
import io
import os
import re
import subprocess
from pathlib import Path
from typing import Any

from app.cli import build_parser, run_mutate

REPO = Path(__file__).resolve().parent.parent
# Real input copied into the repository with its provenance (tests/fixtures/README.md): a plain clone
# runs every tier without ../shared.
FIXTURES = REPO / "tests" / "fixtures"
CHART_RENDERS = FIXTURES / "charts"
ADMISSION_FIXTURES = FIXTURES / "admission"
BITNAMI_SCRIPTS = FIXTURES / "bitnami"
GOLDEN = REPO / "tests" / "golden"
REFRESH = os.environ.get("REFRESH_GOLDEN", "").lower() in ("1", "true", "yes")
_OPERATION = re.compile(r"^# operation: (CREATE|UPDATE)$", re.MULTILINE)


def setup_script_path(script: str, timeout: float) -> Path:
    """Run a setup script of scripts/ that prints a path on its last stdout line (cached after the first
    run, so tests may call it freely) and return that path."""
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / script)], capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError(f"{script} failed:\n{result.stderr[-4000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


def operation_of(text: str) -> str:
    found = _OPERATION.search(text)
    return found.group(1) if found else "CREATE"


def cli_mutate(text: str, *extra: str) -> tuple[int, str, str]:
    """Run the offline `mutate` command in-process on `text`."""
    args = build_parser().parse_args(["mutate", *extra])
    stdout, stderr = io.StringIO(), io.StringIO()
    code = run_mutate(args, io.StringIO(text), stdout, stderr)
    return code, stdout.getvalue(), stderr.getvalue()


def golden_inputs() -> list[Path]:
    """Chart renders from tests/fixtures/charts and the hand-written cases; new files are picked up."""
    return sorted(CHART_RENDERS.glob("*.yaml")) + sorted((GOLDEN / "cases").glob("*.yaml"))


def expected_paths(source: Path) -> tuple[Path, Path]:
    stem = source.stem
    return GOLDEN / "expected" / f"{stem}.injected.yaml", GOLDEN / "expected" / f"{stem}.report.txt"


def render_objects(docs: list[dict[str, Any]]) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
    """ConfigMaps and Secrets of a chart render, as name -> key -> text (Secret data decoded)."""
    config_maps, secrets = {}, {}
    for doc in docs:
        if doc.get("kind") == "ConfigMap":
            config_maps[doc["metadata"]["name"]] = dict(doc.get("data") or {})
        elif doc.get("kind") == "Secret":
            values = {k: base64.b64decode(v).decode() for k, v in (doc.get("data") or {}).items()}
            values.update(doc.get("stringData") or {})
            secrets[doc["metadata"]["name"]] = values
    return config_maps, secrets
