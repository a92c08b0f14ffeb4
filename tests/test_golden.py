"""Golden files: each input -> tests/golden/expected/<name>.injected.yaml and .report.txt.

The expected files are the specification, reviewed by eye. `REFRESH_GOLDEN=1 pytest tests/test_golden.py`
rewrites them; without it a stale or missing golden fails.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import (
    CHART_RENDERS,
    GOLDEN,
    REFRESH,
    cli_mutate,
    expected_paths,
    golden_inputs,
    operation_of,
)


@pytest.mark.parametrize("source", golden_inputs(), ids=lambda p: p.stem)
def test_golden(source: Path) -> None:
    text = source.read_text()
    code, out, report = cli_mutate(text, "--operation", operation_of(text))
    assert code == 0, report
    injected, report_path = expected_paths(source)
    if REFRESH:
        injected.parent.mkdir(parents=True, exist_ok=True)
        injected.write_text(out)
        report_path.write_text(report)
    assert injected.exists(), f"no golden for {source.name}: run with REFRESH_GOLDEN=1 and review it"
    assert out == injected.read_text(), f"{injected.name} is stale: REFRESH_GOLDEN=1 and review the diff"
    assert report == report_path.read_text(), f"{report_path.name} is stale"


def test_every_chart_render_is_a_golden_input() -> None:
    names = {source.name for source in golden_inputs()}
    assert {path.name for path in CHART_RENDERS.glob("*.yaml")} <= names
    assert len(names) >= 16


def test_no_orphan_goldens() -> None:
    """A golden whose input disappeared is dead weight that nobody reviews."""
    stems = {source.stem for source in golden_inputs()}
    for path in (GOLDEN / "expected").glob("*"):
        stem = path.name.removesuffix(".injected.yaml").removesuffix(".report.txt")
        assert stem in stems, f"{path.name} has no input"
