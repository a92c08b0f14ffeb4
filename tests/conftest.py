"""Fixtures of the Airflow tiers: the Airflow installs and a private PostgreSQL per module."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster import SERVERS_USED, Cluster, start_cluster
from tests.podrunner import PodRun
from tests.postgres import Postgres
from tests.support import REPO


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A real kube-apiserver and etcd on loopback, one per test module (tests/cluster.py)."""
    handle = start_cluster(tmp_path_factory.mktemp("cluster"))
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def venvs() -> Path:
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "setup-airflow.sh")], capture_output=True, text=True, timeout=3600
    )
    if result.returncode != 0:
        raise RuntimeError(f"setup-airflow.sh failed:\n{result.stderr[-4000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def postgres(venvs: Path) -> Iterator[Postgres]:
    server = Postgres()
    server.start()
    yield server
    server.stop()


def schema_version(postgres: Postgres, database: str) -> list[str]:
    return postgres.psql(database, "select version_num from alembic_version").split()


def explain(run: PodRun) -> str:
    return "\n".join(
        f"--- {r.name} rc={r.returncode} ({r.seconds:.1f}s)\n{r.output[-3000:]}" for r in run.runs
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which kube-apiserver the end-to-end tier ran on."""
    for line in dict.fromkeys(SERVERS_USED):
        terminalreporter.write_line(line)
