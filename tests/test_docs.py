"""The documentation: generated pages current with the code, the chart README's table current with values.yaml
(Bitnami's real readme-generator-for-helm, installed by scripts/install-tools.sh before pytest), the values
schema in agreement with values.yaml, the changelog in Keep a Changelog form, and the README's doors.

`mkdocs build --strict` (broken links and anchors fail) is a step of scripts/test.sh, not a test here.
`REFRESH_DOCS=1` makes the generated-page test rewrite the pages (review the diff), like REFRESH_GOLDEN.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from scripts import gen_docs
from tests.support import REPO

CHART = REPO / "charts" / "airflow-migration-webhook"
GENERATOR = REPO / ".cache" / "tools" / "node" / "node_modules" / ".bin" / "readme-generator"
REFRESH_DOCS = os.environ.get("REFRESH_DOCS", "").lower() in ("1", "true", "yes")


def test_generated_pages_are_current() -> None:
    stale = gen_docs.stale(write=REFRESH_DOCS)
    names = ", ".join(str(path.relative_to(REPO)) for path in stale)
    assert not stale or REFRESH_DOCS, (
        f"stale: {names}; run .venv/bin/python -m scripts.gen_docs (or REFRESH_DOCS=1)"
    )


def test_every_reason_code_and_option_is_in_the_reference() -> None:
    """The generated pages hold what the code has: not a hard-coded list, the enumerations themselves."""
    from app.config import OPTIONS
    from app.engine.decision import Reason

    codes = (REPO / "docs" / "reference" / "reason-codes.md").read_text()
    for reason in Reason:
        assert f"| `{reason.value}` | {reason.outcome.value} | " in codes
    configuration = (REPO / "docs" / "reference" / "configuration.md").read_text()
    for key, option in OPTIONS.items():
        row = next(line for line in configuration.splitlines() if line.startswith(f"| `{key}` |"))
        assert f"`{option.flag}`" in row and f"`{option.env}`" in row


def test_the_generator_notices_a_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A page edited by hand is stale (the check can fail)."""
    page = tmp_path / "reason-codes.md"
    page.write_text(gen_docs.reason_codes_page().replace("`injected`", "`inserted`"))
    monkeypatch.setattr(gen_docs, "OUTPUTS", {page: gen_docs.reason_codes_page})
    assert gen_docs.stale(write=False) == [page]
    assert gen_docs.stale(write=True) == [page]
    assert gen_docs.stale(write=False) == []


def run_readme_generator(chart: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    if not GENERATOR.exists():
        pytest.fail(
            "readme-generator-for-helm not found: run scripts/install-tools.sh (scripts/test.sh does)"
        )
    return subprocess.run(
        [
            str(GENERATOR),
            "--values",
            str(chart / "values.yaml"),
            "--readme",
            str(chart / "README.md"),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_chart_readme_table_is_current(tmp_path: Path) -> None:
    copy = tmp_path / "chart"
    shutil.copytree(CHART, copy)
    result = run_readme_generator(copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (copy / "README.md").read_text() == (CHART / "README.md").read_text(), (
        "the chart README's parameters table is stale: run scripts/chart-readme.sh and review the diff"
    )


def test_chart_readme_generator_refuses_an_undocumented_value(tmp_path: Path) -> None:
    copy = tmp_path / "chart"
    shutil.copytree(CHART, copy)
    with (copy / "values.yaml").open("a") as values:
        values.write("undocumentedValue: 1\n")
    result = run_readme_generator(copy)
    assert result.returncode != 0
    assert "Missing metadata for key: undocumentedValue" in result.stdout + result.stderr


def _leaves(schema: dict[str, Any], path: str = "") -> dict[str, dict[str, Any]]:
    properties = schema.get("properties") or {}
    if schema.get("type") == "object" and properties:
        found: dict[str, dict[str, Any]] = {}
        for name, child in properties.items():
            found.update(_leaves(child, f"{path}.{name}" if path else name))
        return found
    return {path: schema}


def _types(schema: dict[str, Any]) -> set[str]:
    """The JSON types a (sub)schema accepts: its `type`, its enum values' types, its oneOf/anyOf members'."""
    names = {str: "string", bool: "boolean", int: "integer", float: "number", list: "array", dict: "object"}
    declared = schema.get("type", [])
    found = set(declared) if isinstance(declared, list) else {declared}
    found |= {names[type(value)] for value in schema.get("enum", [])}
    for member in schema.get("oneOf", []) + schema.get("anyOf", []):
        found |= _types(member)
    return found


def test_values_schema_agrees_with_the_documented_values(tmp_path: Path) -> None:
    """values.schema.json describes only documented values, with the type they have, and accepts the
    defaults; the documented values come from the generator's own schema of values.yaml (-s)."""
    copy = tmp_path / "chart"
    shutil.copytree(CHART, copy)
    result = run_readme_generator(copy, "--schema", str(tmp_path / "generated.json"))
    assert result.returncode == 0, result.stdout + result.stderr
    documented = _leaves(json.loads((tmp_path / "generated.json").read_text()))
    own_schema = json.loads((CHART / "values.schema.json").read_text())
    described = _leaves(own_schema)
    parents = {
        ".".join(path.split(".")[:depth]) for path in documented for depth in range(1, path.count(".") + 1)
    }
    compatible = {
        "number": {"integer", "number"},
        "string": {"string"},
        "boolean": {"boolean"},
        "array": {"array"},
        "object": {"object"},
    }
    for path, schema in described.items():
        assert path in documented or path in parents, (
            f"values.schema.json describes {path}, values.yaml lacks it"
        )
        if path not in documented:
            continue
        kind = documented[path]["type"]
        assert _types(schema) & compatible[kind], f"{path}: values.yaml has a {kind}, the schema {schema}"
        if "enum" in schema:
            assert documented[path]["default"] in schema["enum"], f"{path}: default not in the schema's enum"
    jsonschema.Draft7Validator(own_schema).validate(yaml.safe_load((CHART / "values.yaml").read_text()))


def test_changelog_keeps_a_changelog() -> None:
    text = (REPO / "CHANGELOG.md").read_text()
    assert text.startswith("# Changelog\n")
    headings = re.findall(r"^## (.*)$", text, flags=re.M)
    released = r"\[\d+\.\d+\.\d+\] - \d{4}-\d{2}-\d{2}"
    assert headings, "no release sections"
    assert headings[0] == "[Unreleased]" or re.fullmatch(released, headings[0]), headings[0]
    for heading in headings[1:]:
        assert re.fullmatch(released, heading), heading
    for kind in re.findall(r"^### (.*)$", text, flags=re.M):
        assert kind.lower() in gen_docs.CHANGE_KINDS, f"'### {kind}' is not a Keep a Changelog kind"


def test_the_readme_opens_install_values_and_troubleshooting_in_one_click() -> None:
    top = (REPO / "README.md").read_text().split("\n## ", 1)[0]
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", top)
    for wanted in (
        "docs/getting-started.md",
        "charts/airflow-migration-webhook/README.md",
        "docs/troubleshooting.md",
    ):
        assert wanted in targets, f"the README's introduction links no {wanted}"
    for target in targets:
        if not target.startswith("http"):
            assert (REPO / target).exists(), f"the README links {target}, which does not exist"
