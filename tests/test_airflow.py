"""The injected migrate step, executed against a real PostgreSQL and real apache-airflow installs.

Init containers that the engine produced run in order as local processes (tests/podrunner.py says what
that emulates). Airflow 3.0.2, 2.10.5 (>= 2.7: `db migrate`) and 2.6.3 (< 2.7: `db upgrade`) live in
virtual environments made by scripts/setup-airflow.sh; each image tag maps to the venv of its version. The
official chart's scheduler runs on each; the User-Community chart's (its 2.8.4 image) on 2.10.5, which is
close enough for the commands it runs (see its section below).
"""

from __future__ import annotations

import copy
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.engine import EngineConfig, mutate, release_of
from app.engine.config import MigrateStepConfig
from app.engine.versions import airflow_version
from tests.conftest import explain, schema_version
from tests.podrunner import PodRun, PodRunner
from tests.postgres import Postgres
from tests.support import CHART_RENDERS, GOLDEN, render_objects

pytestmark = pytest.mark.airflow
VERSIONS = ("3.0.2", "2.10.5", "2.6.3")
QUICK = EngineConfig(
    step=MigrateStepConfig(
        db_wait_attempts=30, db_wait_interval_seconds=1, migrate_attempts=5, migrate_retry_interval_seconds=2
    )
)


def render_secrets() -> dict[str, dict[str, str]]:
    docs = yaml.safe_load_all((CHART_RENDERS / "apache-airflow-1.18.0-defaults.yaml").read_text())
    return render_objects([d for d in docs if d])[1]


def official_scheduler(version: str, config: EngineConfig = QUICK) -> dict[str, Any]:
    """The official chart's scheduler on `version`, through the engine; its pod spec."""
    docs = yaml.safe_load_all((CHART_RENDERS / "apache-airflow-1.18.0-defaults.yaml").read_text())
    deployment = next(
        d for d in docs if d and d["kind"] == "Deployment" and d["metadata"]["name"] == "airflow-scheduler"
    )
    pod = deployment["spec"]["template"]["spec"]
    for container in pod["containers"] + pod["initContainers"]:
        container["image"] = f"apache/airflow:{version}"
    result = mutate(deployment, "CREATE", config)
    assert result.decision.reason.value == "injected"
    spec = result.object["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["initContainers"]] == [
        "airflow-db-migrate",
        "wait-for-airflow-migrations",
    ]
    return dict(spec)


def runner(venvs: Path, secrets: dict[str, dict[str, str]], home: Path) -> PodRunner:
    def image_bin(image: str) -> Path:
        version = airflow_version(image)
        assert version is not None, image
        return venvs / f"af-{'.'.join(map(str, version))}" / "bin"

    return PodRunner(
        secrets=secrets,
        config_maps={},
        image_bin=image_bin,
        overrides={"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"},
    )


def run_official(
    venvs: Path, postgres: Postgres, database: str, version: str, scratch: Path, config: EngineConfig = QUICK
) -> PodRun:
    secrets = render_secrets()
    secrets["airflow-metadata"] = {"connection": postgres.url(database)}
    return runner(venvs, secrets, scratch / "airflow-home").run(official_scheduler(version, config), scratch)


# --- the scenarios ------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_fresh_database_is_migrated_then_the_chart_wait_passes(
    venvs: Path, postgres: Postgres, tmp_path: Path, version: str
) -> None:
    database = f"fresh_{version.replace('.', '_')}"
    postgres.create_database(database)
    run = run_official(venvs, postgres, database, version, tmp_path)
    assert run.succeeded, explain(run)
    step = run.of("airflow-db-migrate").output
    subcommand = "upgrade" if version == "2.6.3" else "migrate"
    assert f"airflow-db-migrate: migrating with airflow db {subcommand}" in step
    assert "airflow-db-migrate: migrations applied" in step
    assert run.of("wait-for-airflow-migrations").returncode == 0
    assert len(schema_version(postgres, database)) == 1


def test_already_migrated_database_exits_quickly_without_migrating(
    venvs: Path, postgres: Postgres, tmp_path: Path
) -> None:
    postgres.create_database("again")
    first = run_official(venvs, postgres, "again", "3.0.2", tmp_path / "first")
    assert first.succeeded, explain(first)
    before = schema_version(postgres, "again")
    second = run_official(venvs, postgres, "again", "3.0.2", tmp_path / "second")
    assert second.succeeded, explain(second)
    step = second.of("airflow-db-migrate")
    assert "airflow-db-migrate: no migrations pending" in step.output
    assert "migrating with" not in step.output
    assert step.seconds < first.of("airflow-db-migrate").seconds
    assert schema_version(postgres, "again") == before


def test_an_image_whose_airflow_is_not_a_python_script_still_gets_the_cli_answer(
    venvs: Path, postgres: Postgres, tmp_path: Path
) -> None:
    """The step checks in the interpreter named by the `airflow` command's `#!` line. An image whose `airflow`
    is a shell wrapper, with no Airflow in the first python3 on PATH, gets the CLI's answer instead."""
    postgres.create_database("wrapped")
    first = run_official(venvs, postgres, "wrapped", "3.0.2", tmp_path / "first")
    assert first.succeeded, explain(first)
    wrapper = tmp_path / "image-bin"
    wrapper.mkdir()
    (wrapper / "airflow").write_text(f'#!/bin/sh\nexec {venvs / "af-3.0.2" / "bin" / "airflow"} "$@"\n')
    (wrapper / "airflow").chmod(0o755)
    (wrapper / "python3").write_text('#!/bin/sh\necho "no Airflow here" >&2\nexit 1\n')
    (wrapper / "python3").chmod(0o755)
    secrets = render_secrets()
    secrets["airflow-metadata"] = {"connection": postgres.url("wrapped")}
    pod = runner(venvs, secrets, tmp_path / "home")
    pod.image_bin = lambda image: wrapper
    run = pod.run(official_scheduler("3.0.2"), tmp_path / "second")
    assert run.succeeded, explain(run)
    assert run.of("airflow-db-migrate").output.splitlines() == ["airflow-db-migrate: no migrations pending"]


def test_two_pods_at_once_both_succeed_and_migrate_once(
    venvs: Path, postgres: Postgres, tmp_path: Path
) -> None:
    postgres.create_database("race")
    runs: dict[str, PodRun] = {}

    def pod(name: str) -> None:
        runs[name] = run_official(venvs, postgres, "race", "3.0.2", tmp_path / name)

    threads = [threading.Thread(target=pod, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(900)
    for name in ("a", "b"):
        assert runs[name].succeeded, explain(runs[name])
    # only the pod that migrated says so; the other found the work done
    said = [runs[name].of("airflow-db-migrate").output.splitlines() for name in ("a", "b")]
    assert sum(lines.count("airflow-db-migrate: migrations applied") for lines in said) == 1, said
    assert (
        sum(
            any(line.startswith("airflow-db-migrate: no migrations pending") for line in lines)
            for lines in said
        )
        == 1
    )
    assert len(schema_version(postgres, "race")) == 1
    tables = int(
        postgres.psql("race", "select count(*) from information_schema.tables where table_name = 'dag_run'")
    )
    assert tables == 1


def first_database_check_over(url: str, timeout: float) -> bool:
    """True once the step's `airflow db check` (a process running `... db check` whose environment holds
    `url`) has run and ended."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = set()
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                command = (proc / "cmdline").read_bytes()
                if command.endswith(b"\0db\0check\0") and url.encode() in (proc / "environ").read_bytes():
                    running.add(int(proc.name))
            except OSError:  # gone, or not ours to read
                continue
        if seen - running:
            return True
        seen |= running
        time.sleep(0.2)
    return False


def test_database_started_late_is_waited_for(venvs: Path, tmp_path: Path) -> None:
    late = Postgres()
    result: dict[str, PodRun] = {}
    secrets = render_secrets()
    secrets["airflow-metadata"] = {"connection": late.url("postgres")}
    worker = threading.Thread(
        target=lambda: result.setdefault(
            "run", runner(venvs, secrets, tmp_path / "home").run(official_scheduler("3.0.2"), tmp_path)
        )
    )
    worker.start()
    # the database comes up only once the step has tried it and found it down (on a busy machine the
    # step's first check can start later than any fixed delay)
    checked = first_database_check_over(late.url("postgres"), timeout=600)
    late.start()
    assert checked, "the step never checked the database"
    try:
        worker.join(900)
    finally:
        late.stop()
    run = result["run"]
    assert run.succeeded, explain(run)
    step = run.of("airflow-db-migrate").output
    assert "airflow-db-migrate: waiting for the database (attempt 1/30)" in step
    assert "airflow-db-migrate: database reachable" in step


def test_database_never_reachable_fails_within_the_bound(venvs: Path, tmp_path: Path) -> None:
    bounded = EngineConfig(step=MigrateStepConfig(db_wait_attempts=3, db_wait_interval_seconds=1))
    secrets = render_secrets()
    from tests.servers import free_port

    secrets["airflow-metadata"] = {
        "connection": f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/none"
    }
    started = time.monotonic()
    run = runner(venvs, secrets, tmp_path / "home").run(official_scheduler("3.0.2", bounded), tmp_path)
    elapsed = time.monotonic() - started
    assert not run.succeeded
    assert [r.name for r in run.runs] == ["airflow-db-migrate"], "a kubelet stops at the first failure"
    step = run.of("airflow-db-migrate")
    assert step.returncode == 1
    assert (
        "airflow-db-migrate: database not reachable after 3 attempts, giving up; last error:" in step.output
    )
    assert "Connection refused" in step.output or "could not connect" in step.output.lower()
    assert elapsed < 3 * (1 + 20)  # attempts x (interval + one `airflow db check`)


def test_upgrade_from_older_airflow(venvs: Path, postgres: Postgres, tmp_path: Path) -> None:
    postgres.create_database("upgrade")
    chain = ("2.6.3", "2.10.5", "3.0.2")
    seen = []
    for version in chain:
        run = run_official(venvs, postgres, "upgrade", version, tmp_path / version)
        assert run.succeeded, explain(run)
        assert "airflow-db-migrate: migrations applied" in run.of("airflow-db-migrate").output, version
        seen.append(schema_version(postgres, "upgrade")[0])
    assert len(set(seen)) == len(chain), "each newer image moved the schema forward"


def test_plain_flavour_runs_too(venvs: Path, postgres: Postgres, tmp_path: Path) -> None:
    postgres.create_database("plain")
    [deployment] = [
        d for d in yaml.safe_load_all((GOLDEN / "cases" / "plain-mirror-scheduler.yaml").read_text()) if d
    ]
    pod = deployment["spec"]["template"]["spec"]
    for container in pod["containers"] + pod["initContainers"]:
        container["image"] = container["image"].replace("2.9.3", "2.10.5")
    mutated = mutate(deployment, "CREATE", QUICK).object["spec"]["template"]["spec"]
    mutated = copy.deepcopy(mutated)
    mutated["initContainers"] = [c for c in mutated["initContainers"] if c["name"] != "fix-permissions"]
    run = runner(
        venvs,
        {"airflow-db": {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres.url("plain")}},
        tmp_path / "home",
    ).run(mutated, tmp_path)
    assert run.succeeded, explain(run)
    assert [r.name for r in run.runs] == ["airflow-db-migrate", "wait-migrations"]
    assert "migrations applied" in run.of("airflow-db-migrate").output


# --- the User-Community chart (airflow-helm/charts 8.9.0) -----------------------------------------------
# Its render runs `apache/airflow:2.8.4-python3.9`. No Airflow 2.8 is installed here: its pods run on the
# 2.10.5 install, which is close enough for what runs (the step picks `db migrate` for both, and `db check`,
# `db check-migrations -t`, `airflow.utils.db.upgradedb()` and `check_migrations()`, which the chart's wait
# and migration script call, are the same in 2.8 and 2.10).

COMMUNITY_RUNASJOB = CHART_RENDERS / "community-airflow-8.9.0-runasjob.yaml"
OFFICIAL_IMAGE_ENTRYPOINT = ["/usr/bin/dumb-init", "--", "/entrypoint"]
# The chart's paths inside the image (logs on an emptyDir, DAGs), which are not this machine's.
IMAGE_PATHS = (
    "AIRFLOW__CORE__DAGS_FOLDER",
    "AIRFLOW__LOGGING__BASE_LOG_FOLDER",
    "AIRFLOW__LOGGING__DAG_PROCESSOR_MANAGER_LOG_LOCATION",
    "AIRFLOW__SCHEDULER__CHILD_PROCESS_LOG_DIRECTORY",
)


def community_docs() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(COMMUNITY_RUNASJOB.read_text()) if d]


def as_podrunner_runs(containers: list[dict[str, Any]], scripts: Path) -> list[dict[str, Any]]:
    """The chart's containers as tests/podrunner.py runs them: the chart names the image's own entrypoint as
    `command`, which podrunner does not emulate (with CONNECTION_CHECK_MAX_COUNT=0 it only execs its
    arguments), so only the arguments run; the migration script the chart mounts from a Secret is read from
    `scripts`, standing in for that volume."""
    runs = []
    for container in copy.deepcopy(containers):
        if container.get("command") == OFFICIAL_IMAGE_ENTRYPOINT:
            del container["command"]
        container["args"] = [
            str(scripts / Path(arg).name) if arg.startswith("/mnt/scripts/") else arg
            for arg in container["args"]
        ]
        runs.append(container)
    return runs


def community_runner(venvs: Path, postgres: Postgres, database: str, scratch: Path) -> tuple[PodRunner, Path]:
    """The render's Secrets pointed at the test database (the chart builds the URL from DATABASE_* with
    `AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD`), the password Secret the user provides, the script volume."""
    _, secrets = render_objects(community_docs())
    secrets["airflow-config-envs"].update(
        DATABASE_HOST="127.0.0.1",
        DATABASE_PORT=str(postgres.port),
        DATABASE_DB=database,
        DATABASE_USER="postgres",
    )
    secrets["airflow-db"] = {"postgresql-password": ""}  # externalDatabase.passwordSecret; trust auth here
    scripts = scratch / "scripts"
    scripts.mkdir(parents=True, exist_ok=True)
    for key, text in secrets["airflow-db-migrations"].items():
        (scripts / key).write_text(text)

    def image_bin(image: str) -> Path:
        assert image == "apache/airflow:2.8.4-python3.9", image
        return venvs / "af-2.10.5" / "bin"

    home = scratch / "airflow-home"
    overrides = {"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    overrides |= {name: str(scratch / "image-paths" / name.lower()) for name in IMAGE_PATHS}
    return PodRunner(secrets=secrets, config_maps={}, image_bin=image_bin, overrides=overrides), scripts


def community_pods() -> tuple[dict[str, Any], dict[str, Any]]:
    """The runAsJob render's scheduler as the engine changes it (judged in its release, as `mutate` does, and
    alone, as the webhook does: the same step), and the chart's migration hook Job."""
    docs = community_docs()
    scheduler = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "airflow-scheduler"
    )
    in_release = mutate(scheduler, "CREATE", QUICK, release_of(docs))
    alone = mutate(scheduler, "CREATE", QUICK)
    assert in_release.decision.reason.value == alone.decision.reason.value == "injected"
    assert in_release.object == alone.object
    job = next(d for d in docs if d["kind"] == "Job")
    assert mutate(job, "CREATE", QUICK).decision.reason.value == "hook_job_marked"
    return in_release.object["spec"]["template"]["spec"], job["spec"]["template"]["spec"]


def test_community_chart_step_migrates_then_its_wait_passes_and_its_hook_job_finds_nothing(
    venvs: Path, postgres: Postgres, tmp_path: Path
) -> None:
    """A fresh database: `check-db`, the step and the chart's `wait-for-db-migrations` (`airflow db
    check-migrations -t 60`) in order; then, as Argo CD's PostSync would, the chart's migration Job (its
    `db_migrations.py`, `upgradedb()` when `check_migrations` times out), which finds nothing to do."""
    postgres.create_database("community")
    scheduler, job = community_pods()
    runner, scripts = community_runner(venvs, postgres, "community", tmp_path)
    pod = {"initContainers": as_podrunner_runs(scheduler["initContainers"], scripts)}
    assert [c["name"] for c in pod["initContainers"]] == [
        "check-db",
        "airflow-db-migrate",
        "wait-for-db-migrations",
    ]
    run = runner.run(pod, tmp_path / "scheduler")
    assert run.succeeded, explain(run)
    step = run.of("airflow-db-migrate").output
    assert "airflow-db-migrate: migrating with airflow db migrate" in step
    assert "airflow-db-migrate: migrations applied" in step
    migrated = schema_version(postgres, "community")
    assert len(migrated) == 1
    # the hook Job, later: its init container and its one container, each run to its end
    hook = runner.run(
        {"initContainers": as_podrunner_runs(job["initContainers"] + job["containers"], scripts)},
        tmp_path / "job",
    )
    assert hook.succeeded, explain(hook)
    assert "there are no unapplied db migrations" in hook.of("db-migrations").output
    assert schema_version(postgres, "community") == migrated


def test_community_chart_own_migrator_and_a_step_racing_both_end_well(
    venvs: Path, postgres: Postgres, tmp_path: Path
) -> None:
    """What the webhook does at admission to a release at the chart's defaults (it cannot see that the
    release migrates in its own Deployment): the step races the chart's migrator on a fresh database. The
    migrator's first pass is the same script as the hook Job's (`sync_forever=False` instead of a loop).
    The pod ends well; Airflow's migration lock waits only briefly on PostgreSQL, so the chart's migrator
    may lose once with a lock timeout, and its restart (`restartPolicy: Always`) finds nothing to do."""
    postgres.create_database("raced")
    scheduler, job = community_pods()
    runner, scripts = community_runner(venvs, postgres, "raced", tmp_path)
    runs: dict[str, PodRun] = {}
    pods = {
        "scheduler": {"initContainers": as_podrunner_runs(scheduler["initContainers"], scripts)},
        "migrator": {"initContainers": as_podrunner_runs(job["containers"], scripts)},
    }

    def start(name: str) -> None:
        runs[name] = runner.run(pods[name], tmp_path / name)

    threads = [threading.Thread(target=start, args=(name,)) for name in pods]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(900)
    assert runs["scheduler"].succeeded, explain(runs["scheduler"])
    if not runs["migrator"].succeeded:
        assert "lock" in runs["migrator"].runs[-1].output.lower(), explain(runs["migrator"])
        again = runner.run(pods["migrator"], tmp_path / "migrator-restart")
        assert again.succeeded, explain(again)
        assert "there are no unapplied db migrations" in again.of("db-migrations").output
    assert len(schema_version(postgres, "raced")) == 1
