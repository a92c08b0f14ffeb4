"""The migrate step's shell script, for every profile and image line: shellcheck-clean in the shell it runs
in, and built from the profile's data (what it does is proven on real Airflow in test_airflow.py and, with
Bitnami's real library, in test_bitnami.py)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.engine import EngineConfig, mutate
from tests.support import CHART_RENDERS, REPO

SHELLCHECK = shutil.which("shellcheck") or str(REPO / ".venv" / "bin" / "shellcheck")


def steps() -> list[tuple[str, dict[str, Any]]]:
    """The step of every workload the engine injects in every chart render and golden case."""
    found = []
    sources = sorted(CHART_RENDERS.glob("*.yaml")) + sorted(
        (REPO / "tests" / "golden" / "cases").glob("*.yaml")
    )
    for source in sources:
        for doc in yaml.safe_load_all(source.read_text()):
            if not doc or doc.get("kind") not in ("Deployment", "StatefulSet", "Pod"):
                continue
            result = mutate(doc, "CREATE", EngineConfig())
            pod = result.object["spec"] if doc["kind"] == "Pod" else result.object["spec"]["template"]["spec"]
            for container in pod.get("initContainers", []):
                if container["name"] == "airflow-db-migrate":
                    found.append((f"{source.stem}/{doc['metadata']['name']}", container))
    return found


STEPS = steps()


def test_every_flavour_has_steps_to_check() -> None:
    shells = {tuple((c.get("command") or c["args"])[:-1]) for _, c in STEPS}
    assert shells == {("bash", "-c"), ("/bin/bash", "-ec"), ("/bin/sh", "-c")}


@pytest.mark.parametrize(("name", "step"), STEPS, ids=[name for name, _ in STEPS])
def test_generated_script_passes_shellcheck(name: str, step: dict[str, Any], tmp_path: Path) -> None:
    argv = step.get("command") or step["args"]
    shell = "sh" if argv[0] == "/bin/sh" else "bash"
    script = tmp_path / "step.sh"
    script.write_text(argv[-1])
    # SC1091: the sourced Bitnami library exists only in the image
    result = subprocess.run(
        [SHELLCHECK, "-s", shell, "-e", "SC1091", str(script)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout


def test_bitnami_lines_differ_only_where_their_setup_jobs_differ() -> None:
    by_render = {name.split("/")[0]: step["command"][-1] for name, step in STEPS if "bitnami" in name}
    airflow2, airflow3 = (
        by_render["bitnami-airflow-22.7.3-defaults"],
        by_render["bitnami-airflow-24.1.0-defaults"],
    )
    assert "airflow db init" in airflow2 and "airflow db migrate" in airflow3
    assert "sync-perm" not in airflow2 and "airflow sync-perm --include-dags" in airflow3
    # only the library's environment is used: every function the script calls is its own
    for script in (airflow2, airflow3):
        assert "is_airflow_admin_created" not in script and "airflow_execute" not in script
