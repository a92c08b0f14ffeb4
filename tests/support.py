"""Paths and small helpers shared by the test tiers."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pytest

from app.cli import build_parser, run_mutate

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("AMW_SHARED_DIR", REPO.parent / "shared"))
CHART_RENDERS = SHARED / "fixtures" / "charts"
ADMISSION_FIXTURES = SHARED / "fixtures" / "admission"
GOLDEN = REPO / "tests" / "golden"
REFRESH = os.environ.get("REFRESH_GOLDEN", "").lower() in ("1", "true", "yes")
_OPERATION = re.compile(r"^# operation: (CREATE|UPDATE)$", re.MULTILINE)


def require_shared() -> None:
    """The shared fixtures are part of the contract: their absence is a failure, not a skip."""
    if not CHART_RENDERS.is_dir():
        pytest.fail(f"shared fixtures not found at {CHART_RENDERS}; set AMW_SHARED_DIR")


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
    """Chart renders from shared/ and the hand-written cases; new files are picked up automatically."""
    cases = sorted((GOLDEN / "cases").glob("*.yaml"))
    renders = sorted(CHART_RENDERS.glob("*.yaml")) if CHART_RENDERS.is_dir() else []
    return renders + cases


def expected_paths(source: Path) -> tuple[Path, Path]:
    stem = source.stem
    return GOLDEN / "expected" / f"{stem}.injected.yaml", GOLDEN / "expected" / f"{stem}.report.txt"
