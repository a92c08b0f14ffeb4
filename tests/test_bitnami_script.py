"""The Bitnami flavour's migrate step calls the Bitnami image's shell library, which cannot run here.

These tests check the generated script with shellcheck, then run it with bash against a stand-in library
that records the calls it receives and keeps a tiny state (database up or down, migrations pending, admin
user present). They check the script's CONTROL FLOW and ordering (wait for DB, check, migrate with retries,
admin user only when missing, sync permissions), not Bitnami's code. The library path in the script is
pointed at the stand-in; nothing else in the script is changed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.engine import EngineConfig, mutate
from app.engine.config import MigrateStepConfig
from tests.support import CHART_RENDERS, REPO

LIBRARY = "/opt/bitnami/scripts/"
STAND_IN = r"""
# stand-in for the Bitnami image's airflow-env.sh + libairflow.sh: records calls, keeps state in $STATE
record() { echo "$*" >> "$STATE/calls"; }
info() { echo "INFO $*"; }
warn() { echo "WARN $*"; }
error() { echo "ERROR $*"; }
countdown() {  # decrement the counter file $1; succeed once it is exhausted
  local n; n=$(cat "$STATE/$1" 2>/dev/null || echo 0)
  if [ "$n" -gt 0 ]; then echo $((n - 1)) > "$STATE/$1"; return 1; fi
  return 0
}
airflow_execute() {
  record "airflow_execute $*"
  case "$*" in
    "db check") countdown db_down ;;
    "db check-migrations --migration-wait-timeout=0") [ ! -f "$STATE/pending" ] ;;
    "db migrate"|"db upgrade")
      if countdown migrate_failures; then rm -f "$STATE/pending"; return 0; fi
      [ -f "$STATE/other_pod_migrates" ] && rm -f "$STATE/pending"
      return 1 ;;
    "sync-perm --include-dags") return 0 ;;
    *) echo "unexpected: $*"; return 99 ;;
  esac
}
is_airflow_admin_created() { record "is_airflow_admin_created"; [ -f "$STATE/admin" ]; }
airflow_create_admin_user() {
  record "airflow_create_admin_user $AIRFLOW_USERNAME $AIRFLOW_PASSWORD_FILE"; touch "$STATE/admin";
}
"""


def bitnami_step(version: str = "3.0.1-debian-12-r1") -> dict[str, Any]:
    docs = yaml.safe_load_all((CHART_RENDERS / "bitnami-airflow-24.1.0-defaults.yaml").read_text())
    deployment = next(
        d for d in docs if d and d["kind"] == "Deployment" and d["metadata"]["name"] == "airflow-scheduler"
    )
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        container["image"] = f"docker.io/bitnami/airflow:{version}"
    config = EngineConfig(
        step=MigrateStepConfig(
            db_wait_attempts=4,
            db_wait_interval_seconds=1,
            migrate_attempts=3,
            migrate_retry_interval_seconds=1,
        )
    )
    result = mutate(deployment, "CREATE", config)
    return dict(
        next(
            c
            for c in result.object["spec"]["template"]["spec"]["initContainers"]
            if c["name"] == "airflow-db-migrate"
        )
    )


def run_step(
    tmp_path: Path,
    *,
    db_down: int = 0,
    pending: bool = True,
    admin: bool = False,
    migrate_failures: int = 0,
    other_pod_migrates: bool = False,
) -> tuple[int, list[str], str]:
    library, state = tmp_path / "library", tmp_path / "state"
    library.mkdir()
    state.mkdir()
    (library / "airflow-env.sh").write_text(": # nothing to set up in the stand-in\n")
    (library / "libairflow.sh").write_text(STAND_IN)
    (state / "db_down").write_text(str(db_down))
    (state / "migrate_failures").write_text(str(migrate_failures))
    for flag, present in (("pending", pending), ("admin", admin), ("other_pod_migrates", other_pod_migrates)):
        if present:
            (state / flag).touch()
    step = bitnami_step()
    command = [part.replace(LIBRARY, f"{library}/") for part in step["command"]]
    assert command[:2] == ["/bin/bash", "-ec"]
    env = {
        "PATH": "/usr/bin:/bin",
        "STATE": str(state),
        **{e["name"]: e["value"] for e in step["env"] if "value" in e},
    }
    process = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    calls = (state / "calls").read_text().splitlines() if (state / "calls").exists() else []
    return process.returncode, calls, process.stdout + process.stderr


def test_generated_scripts_pass_shellcheck(tmp_path: Path) -> None:
    shellcheck = shutil.which("shellcheck") or str(REPO / ".venv" / "bin" / "shellcheck")
    for version in ("3.0.1-debian-12-r1", "2.6.3-debian-11-r0"):
        script = tmp_path / f"step-{version}.sh"
        script.write_text("#!/bin/bash\n" + bitnami_step(version)["command"][2])
        # SC1091: the sourced library exists only in the image
        result = subprocess.run([shellcheck, "-e", "SC1091", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout


def test_fresh_database_full_order(tmp_path: Path) -> None:
    code, calls, output = run_step(tmp_path, db_down=2)
    assert code == 0, output
    assert calls == [
        "airflow_execute db check",
        "airflow_execute db check",
        "airflow_execute db check",
        "airflow_execute db check-migrations --migration-wait-timeout=0",
        "airflow_execute db migrate",
        "is_airflow_admin_created",
        "airflow_create_admin_user user /opt/bitnami/airflow/secrets/airflow-password",
        "airflow_execute sync-perm --include-dags",
    ]
    assert "airflow-db-migrate: waiting for the database (attempt 2/4)" in output


def test_nothing_pending_and_admin_present_only_syncs(tmp_path: Path) -> None:
    code, calls, output = run_step(tmp_path, pending=False, admin=True)
    assert code == 0, output
    assert calls == [
        "airflow_execute db check",
        "airflow_execute db check-migrations --migration-wait-timeout=0",
        "is_airflow_admin_created",
        "airflow_execute sync-perm --include-dags",
    ]
    assert "airflow-db-migrate: no migrations pending" in output


def test_a_failed_migrate_is_retried(tmp_path: Path) -> None:
    code, calls, output = run_step(tmp_path, migrate_failures=1, admin=True)
    assert code == 0, output
    assert calls.count("airflow_execute db migrate") == 2
    assert "(attempt 2/3)" in output


def test_another_pod_that_migrated_first_counts_as_success(tmp_path: Path) -> None:
    code, calls, output = run_step(tmp_path, migrate_failures=5, other_pod_migrates=True, admin=True)
    assert code == 0, output
    assert calls.count("airflow_execute db migrate") == 1
    assert "airflow-db-migrate: migrations applied by another pod" in output


def test_migrate_gives_up_after_its_attempts(tmp_path: Path) -> None:
    code, calls, output = run_step(tmp_path, migrate_failures=10)
    assert code == 1
    assert calls.count("airflow_execute db migrate") == 3
    assert "airflow-db-migrate: migration failed after 3 attempts" in output
    assert "airflow_create_admin_user" not in " ".join(calls)


def test_database_never_up_gives_up(tmp_path: Path) -> None:
    code, calls, output = run_step(tmp_path, db_down=100)
    assert code == 1
    assert calls == ["airflow_execute db check"] * 4
    assert "database not reachable after 4 attempts" in output


@pytest.mark.parametrize("version", ["2.6.3-debian-11-r0"])
def test_old_bitnami_images_upgrade(version: str) -> None:
    assert "airflow_execute db upgrade" in bitnami_step(version)["command"][2]
