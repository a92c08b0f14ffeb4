"""The Bitnami flavour's migrate step with Bitnami's real shell library, as the image runs it.

Pods of the Bitnami renders (after the webhook) run their init containers in order, `prepare-config`, the
step, the chart's `wait-for-db-migrations`, with their exact commands, env and mounts, as uid 1001 on a
read-only root with the image's `/opt/bitnami` layout (tests/bitnami_pod.py says how, and what is emulated),
against a real PostgreSQL and a real Airflow with the providers the image ships:

- the Airflow 3 image line (chart 24.1.0, image 3.0.1; Airflow 3.0.2 with the FAB and Celery providers);
- the Airflow 2 image line (chart 22.7.3, image 2.10.5; Airflow 2.10.5 with the Celery provider).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.engine import EngineConfig, mutate
from app.engine.config import MigrateStepConfig
from tests.bitnami_pod import BitnamiImage, BitnamiPod
from tests.conftest import explain, schema_version
from tests.podrunner import PodRun
from tests.postgres import Postgres
from tests.servers import free_port
from tests.support import CHART_RENDERS, render_objects

pytestmark = pytest.mark.airflow
QUICK = EngineConfig(
    step=MigrateStepConfig(
        db_wait_attempts=3, db_wait_interval_seconds=1, migrate_attempts=5, migrate_retry_interval_seconds=2
    )
)
RACE_REPETITIONS = 3


class Line:
    """One Bitnami image line: the chart render that ships it and the Airflow standing for its image."""

    def __init__(self, name: str, render: str, library: str, venv: str) -> None:
        self.name, self.render, self.library, self.venv = name, render, library, venv

    def __repr__(self) -> str:
        return self.name


AIRFLOW3 = Line("airflow3", "bitnami-airflow-24.1.0-defaults.yaml", "airflow3", "af-3.0.2")
AIRFLOW2 = Line("airflow2", "bitnami-airflow-22.7.3-defaults.yaml", "airflow2", "af-2.10.5")
LINES = [AIRFLOW3, AIRFLOW2]


def _docs(render: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((CHART_RENDERS / render).read_text()) if d]


def _point_at(spec: dict[str, Any], port: int, database: str) -> None:
    """The chart's external-database values, as a user pointing it at their own PostgreSQL would set them."""
    values = {
        "AIRFLOW_DATABASE_HOST": "127.0.0.1",
        "AIRFLOW_DATABASE_PORT_NUMBER": str(port),
        "AIRFLOW_DATABASE_NAME": database,
        "AIRFLOW_DATABASE_USERNAME": "postgres",
    }
    for container in spec.get("initContainers", []) + spec["containers"]:
        for entry in container.get("env", []):
            if entry["name"] in values:
                entry["value"] = values[entry["name"]]


def make_pod(
    line: Line,
    component: str,
    venvs: Path,
    port: int,
    database: str,
    scratch: Path,
    *,
    image_tag: str | None = None,
    venv: str | None = None,
    config: EngineConfig = QUICK,
) -> BitnamiPod:
    docs = _docs(line.render)
    config_maps, secrets = render_objects(docs)
    workload = copy.deepcopy(
        next(
            d
            for d in docs
            if d["kind"] in ("Deployment", "StatefulSet") and d["metadata"]["name"] == f"airflow-{component}"
        )
    )
    spec = workload["spec"]["template"]["spec"]
    _point_at(spec, port, database)
    if image_tag:
        for container in spec["initContainers"] + spec["containers"]:
            container["image"] = container["image"].rsplit(":", 1)[0] + ":" + image_tag
    result = mutate(workload, "CREATE", config)
    assert result.decision.reason.value == "injected", result.decision
    mutated = result.object["spec"]["template"]["spec"]
    names = [c["name"] for c in mutated["initContainers"]]  # web also has `prepare-web-config`
    assert names[0] == "prepare-config" and names[-2:] == ["airflow-db-migrate", "wait-for-db-migrations"]
    airflow = venvs / (venv or line.venv)
    (airflow / "tmp").mkdir(exist_ok=True)  # the image's venv has it: the chart mounts its pyc cache there
    return BitnamiPod(
        spec=mutated,
        image=BitnamiImage(line.library, airflow),
        config_maps=config_maps,
        secrets=secrets,
        scratch=scratch,
    )


def step_output(run: PodRun) -> str:
    return run.of("airflow-db-migrate").output


def admin_users(postgres: Postgres, database: str) -> list[str]:
    return postgres.psql(database, "select username from ab_user").split()


def assert_clean(output: str) -> None:
    assert "command not found" not in output, output
    assert "Traceback" not in output, output


def run_together(pods: list[BitnamiPod]) -> list[PodRun]:
    runs: list[PodRun | None] = [None] * len(pods)

    def start(index: int) -> Callable[[], None]:
        def go() -> None:
            runs[index] = pods[index].run()

        return go

    threads = [threading.Thread(target=start(i)) for i in range(len(pods))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(1200)
    assert all(run is not None for run in runs)
    return [run for run in runs if run is not None]


# --- scenarios, per image line ------------------------------------------------------------------------


@pytest.mark.parametrize("line", LINES, ids=repr)
def test_fresh_database(venvs: Path, postgres: Postgres, tmp_path: Path, line: Line) -> None:
    database = f"fresh_{line.name}"
    postgres.create_database(database)
    run = make_pod(line, "scheduler", venvs, postgres.port, database, tmp_path).run()
    assert run.succeeded, explain(run)
    output = step_output(run)
    assert_clean(output)
    subcommand = "init" if line is AIRFLOW2 else "migrate"
    assert f"airflow-db-migrate: migrating with airflow db {subcommand} (attempt 1/5)" in output
    assert "airflow-db-migrate: migrations applied" in output
    # the setup Job creates the admin user when it populates a fresh database, on both lines
    assert "airflow-db-migrate: admin user created" in output
    assert admin_users(postgres, database) == ["user"]
    # `sync-perm` only where the line's Job runs it (Airflow 3 images)
    assert ("airflow-db-migrate: synchronizing permissions" in output) is (line is AIRFLOW3)
    assert len(schema_version(postgres, database)) == 1


@pytest.mark.parametrize("line", LINES, ids=repr)
def test_up_to_date_database_does_nothing(
    venvs: Path, postgres: Postgres, tmp_path: Path, line: Line
) -> None:
    database = f"again_{line.name}"
    postgres.create_database(database)
    first = make_pod(line, "scheduler", venvs, postgres.port, database, tmp_path / "first").run()
    assert first.succeeded, explain(first)
    before = schema_version(postgres, database)
    second = make_pod(line, "scheduler", venvs, postgres.port, database, tmp_path / "second").run()
    assert second.succeeded, explain(second)
    output = step_output(second)
    assert_clean(output)
    assert output.strip().splitlines() == ["airflow-db-migrate: no migrations pending"], output
    assert schema_version(postgres, database) == before


@pytest.mark.parametrize("line", LINES, ids=repr)
def test_airflow3_wait_needs_the_admin_user_and_gets_it(
    venvs: Path, postgres: Postgres, tmp_path: Path, line: Line
) -> None:
    """A migrated database without the admin user (another tool migrated it, or a pod died in between):
    the Airflow 3 chart's wait container waits for the user, so the step creates it; on the Airflow 2
    line nothing waits for it and the step, like the Job, leaves an up-to-date database alone."""
    database = f"nouser_{line.name}"
    postgres.create_database(database)
    first = make_pod(line, "scheduler", venvs, postgres.port, database, tmp_path / "first").run()
    assert first.succeeded, explain(first)
    postgres.psql(database, "delete from ab_user_role; delete from ab_user")
    second = make_pod(line, "scheduler", venvs, postgres.port, database, tmp_path / "second").run()
    assert second.succeeded, explain(second)
    output = step_output(second)
    assert "airflow-db-migrate: no migrations pending" in output
    if line is AIRFLOW3:
        assert "airflow-db-migrate: admin user created" in output
        assert "airflow-db-migrate: synchronizing permissions" in output
        assert admin_users(postgres, database) == ["user"]
    else:
        assert "admin user" not in output
        assert admin_users(postgres, database) == []


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("line", LINES, ids=repr)
def test_pods_racing_on_a_fresh_database_all_succeed(
    venvs: Path, postgres: Postgres, tmp_path: Path, line: Line
) -> None:
    """Every install starts scheduler and web at once: no interleaving may crash-loop a pod."""
    for repetition in range(RACE_REPETITIONS):
        database = f"race_{line.name}_{repetition}"
        postgres.create_database(database)
        pods = [
            make_pod(line, component, venvs, postgres.port, database, tmp_path / f"{repetition}-{component}")
            for component in ("scheduler", "web")
        ]
        runs = run_together(pods)
        for run in runs:
            assert run.succeeded, f"repetition {repetition}:\n{explain(run)}"
            assert_clean(step_output(run))
        outputs = "\n".join(step_output(run) for run in runs)
        # only the pod that migrated says so; the other found the work done
        assert outputs.splitlines().count("airflow-db-migrate: migrations applied") == 1, outputs
        assert admin_users(postgres, database) == ["user"]
        assert len(schema_version(postgres, database)) == 1


@pytest.mark.parametrize("line", LINES, ids=repr)
def test_database_unreachable_fails_within_the_bound_and_says_why(
    venvs: Path, tmp_path: Path, line: Line
) -> None:
    run = make_pod(line, "scheduler", venvs, free_port(), "none", tmp_path).run()
    assert not run.succeeded
    assert [r.name for r in run.runs] == ["prepare-config", "airflow-db-migrate"], "a kubelet stops here"
    step = run.of("airflow-db-migrate")
    assert step.returncode == 1
    lines = step.output.strip().splitlines()
    assert "airflow-db-migrate: waiting for the database (attempt 2/3)" in lines
    at = lines.index("airflow-db-migrate: database not reachable after 3 attempts, giving up; last error:")
    cause = lines[at + 1 :]
    assert cause and all(text.startswith("airflow-db-migrate: | ") for text in cause), step.output
    assert "connection refused" in step.output.lower(), step.output


def test_airflow2_upgrade_from_an_older_minor(venvs: Path, postgres: Postgres, tmp_path: Path) -> None:
    """A database that an Airflow 2.6 image set up, then the 22.7.3 chart (2.10.5)."""
    database = "upgrade_airflow2"
    postgres.create_database(database)
    old = make_pod(
        AIRFLOW2,
        "scheduler",
        venvs,
        postgres.port,
        database,
        tmp_path / "old",
        image_tag="2.6.3",
        venv="af-2.6.3",
    )
    assert "airflow db init" in old.spec["initContainers"][1]["command"][-1]
    # 2.6 has Celery in core: the Airflow of that image runs without the provider, as `db init` here shows
    old_run = old.run()
    assert old_run.succeeded, explain(old_run)
    before = schema_version(postgres, database)
    run = make_pod(AIRFLOW2, "scheduler", venvs, postgres.port, database, tmp_path / "new").run()
    assert run.succeeded, explain(run)
    output = step_output(run)
    assert_clean(output)
    assert "airflow-db-migrate: migrating with airflow db init (attempt 1/5)" in output
    assert "airflow-db-migrate: migrations applied" in output
    assert schema_version(postgres, database) != before
    assert admin_users(postgres, database) == ["user"]


def test_chart_upgrade_from_the_airflow2_line_to_airflow3_fails_upstream_and_says_why(
    venvs: Path, postgres: Postgres, tmp_path: Path
) -> None:
    """Chart 22.7.3 (Airflow 2.10.5) installed, then upgraded to 24.1.0 (Airflow 3). With the FAB provider
    2.x that Airflow 3.0 images ship, `airflow db migrate` itself fails on the tables Airflow 2 created
    (apache/airflow#55856: `relation "ab_view_menu" already exists`; fixed in the provider's 3.x line), and
    the chart's own setup Job fails the same way. What the step owes the user here is the cause, in its log:
    it retries, gives up within its bound, and prints the error; the wait container never starts."""
    database = "upgrade_airflow3"
    postgres.create_database(database)
    old = make_pod(AIRFLOW2, "scheduler", venvs, postgres.port, database, tmp_path / "old").run()
    assert old.succeeded, explain(old)
    quick = EngineConfig(step=MigrateStepConfig(migrate_attempts=2, migrate_retry_interval_seconds=1))
    run = make_pod(
        AIRFLOW3, "scheduler", venvs, postgres.port, database, tmp_path / "new", config=quick
    ).run()
    assert [r.name for r in run.runs] == ["prepare-config", "airflow-db-migrate"], explain(run)
    step = run.of("airflow-db-migrate")
    assert step.returncode == 1
    lines = step.output.strip().splitlines()
    assert "airflow-db-migrate: migrating with airflow db migrate (attempt 2/2)" in lines
    at = lines.index("airflow-db-migrate: migration failed after 2 attempts (exit 1); last output:")
    cause = "\n".join(lines[at + 1 :])
    assert all(line.startswith("airflow-db-migrate: | ") for line in lines[at + 1 :])
    assert 'DuplicateTable) relation "ab_view_menu" already exists' in cause, step.output
    # the first attempt's failure is shown where it happened too, before the retry
    first = lines.index("airflow-db-migrate: attempt 1 failed (exit 1), retrying; last output:")
    retry = lines.index("airflow-db-migrate: migrating with airflow db migrate (attempt 2/2)")
    shown = lines[first + 1 : retry]
    assert shown and all(line.startswith("airflow-db-migrate: | ") for line in shown), step.output
    assert "ab_view_menu" in "\n".join(shown), step.output
