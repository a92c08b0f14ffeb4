"""Fixtures of the Airflow tiers: the Airflow installs and a private PostgreSQL per module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import images
from tests.cluster import SERVERS_USED, Cluster, start_cluster
from tests.node import (
    AIRFLOW_NODE_VERSION,
    AIRFLOW_UPGRADE,
    NODE_IP,
    TIMELINES,
    NodeCluster,
    NodeUnavailable,
    install_webhook,
    node_binaries,
    start_node_cluster,
)
from tests.podrunner import PodRun
from tests.postgres import Postgres
from tests.support import setup_script_path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A real kube-apiserver and etcd on loopback, one per test module (tests/cluster.py)."""
    handle = start_cluster(tmp_path_factory.mktemp("cluster"))
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def venvs() -> Path:
    return setup_script_path("setup-airflow.sh", timeout=3600)


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
    for timeline in TIMELINES:
        terminalreporter.write_line(timeline)


# --- the node tier: a real single-node cluster (tests/node.py) ----------------------------------------


@pytest.fixture(scope="session")
def node_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeCluster]:
    """One real cluster for the whole node tier, with every image the tier runs already imported."""
    try:
        node_binaries()
    except NodeUnavailable as reason:
        pytest.skip(f"node tier: {reason}")
    archives = [
        images.pause_image().path,
        images.busybox_image().path,
        images.airflow_image(AIRFLOW_NODE_VERSION).path,
        *(images.airflow_image(version).path for version in AIRFLOW_UPGRADE),
        images.bitnami_image().path,
        setup_script_path("build-image.sh", timeout=1800),  # the webhook's image, from the Dockerfile
    ]
    cluster = start_node_cluster(tmp_path_factory.mktemp("node"), archives)
    SERVERS_USED.append("node tier: Kubernetes v1.32.13 (kubelet, controllers, kube-proxy, CoreDNS 1.11.3)")
    yield cluster
    cluster.stop()
    problems = cluster.leftovers()
    assert not problems, f"the node tier left things behind: {problems}"


@pytest.fixture(scope="session")
def node_postgres(node_cluster: NodeCluster) -> Iterator[Postgres]:
    """An external PostgreSQL for the Airflow releases: a server process inside the cluster's network
    namespace, on the node IP, where pods reach it as users reach a managed database."""
    server = Postgres(host=NODE_IP, port=5432, enter=node_cluster.enter_network)
    server.start()
    server.wait_ready()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def webhook_release(node_cluster: NodeCluster) -> str:
    """The webhook installed by its own chart with its own image, as users install it: default TLS mode
    (selfManaged), default replicas and PodDisruptionBudget; the API server calls it through its Service."""
    return install_webhook(node_cluster)
