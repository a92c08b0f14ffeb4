"""Smoke tests of the node tier: a real single-node cluster (tests/node.py) running the webhook as users do.

The webhook is installed by its own chart with its own image (built from the Dockerfile), in its default TLS
mode (selfManaged: it writes its own caBundle), with its default two replicas and PodDisruptionBudget; the
kube-apiserver calls it through its Service's ClusterIP, inside the cluster's network namespace. Airflow pods
run the Airflow stand-in image (tests/images.py) against an external PostgreSQL (a server process in the
cluster's namespace).
"""

from __future__ import annotations

import base64
import ssl
import subprocess
from pathlib import Path

import pytest
import yaml

from tests import images
from tests.node import (
    NODE_IP,
    WEBHOOK_NAMESPACE,
    NodeCluster,
    NodeUnavailable,
    cgroup_hierarchies,
    node_binaries,
    processes_in_namespace,
    read_sysctls,
    render_official,
    start_node_cluster,
)
from tests.postgres import Postgres

pytestmark = [pytest.mark.node, pytest.mark.timeout(900)]
STEP = "airflow-db-migrate"
STATUS = "airflow-migration-webhook/status"


def run_pod(cluster: NodeCluster, namespace: str, name: str, image: str, *command: str) -> str:
    """Run a one-shot pod to completion and return its log."""
    cluster.kubectl(
        "run", name, "-n", namespace, f"--image={image}", "--image-pull-policy=Never", "--restart=Never",
        "--command", "--", *command,
    )  # fmt: skip
    cluster.wait_for(
        f"pod {name} to finish",
        lambda: (
            cluster.get_json("pod", name, "-n", namespace)["status"].get("phase") in ("Succeeded", "Failed")
        ),  # type: ignore[union-attr]
        timeout=120,
    )
    log = cluster.kubectl("logs", name, "-n", namespace).stdout
    cluster.kubectl("delete", "pod", name, "-n", namespace, "--wait=false")
    return log


def test_teardown_leaves_nothing_behind(tmp_path: Path) -> None:
    """A cluster of its own that runs a pod, then stops: no process, mount, cgroup, network namespace,
    sysctl or folder of it is left on the machine."""
    try:
        node_binaries()
    except NodeUnavailable as reason:
        pytest.skip(f"node tier: {reason}")
    sysctls_before = read_sysctls()
    cluster = start_node_cluster(tmp_path, [images.pause_image().path, images.busybox_image().path])
    try:
        assert "ok" in run_pod(cluster, "default", "hello", images.busybox_image().ref, "echo", "ok")
        # while it runs, the checks below would see it: processes in its namespaces, its cgroup root
        assert processes_in_namespace("net", cluster.net_namespace)
        assert any((h / cluster.cgroup_root.lstrip("/")).exists() for h in cgroup_hierarchies())
    finally:
        cluster.stop()
    assert cluster.leftovers() == []
    assert read_sysctls() == sysctls_before
    listed = subprocess.run(["lsns", "-t", "net", "-n", "-o", "NS"], capture_output=True, text=True).stdout
    assert cluster.net_namespace.removeprefix("net:[").removesuffix("]") not in listed.split()


def test_the_webhook_installed_by_its_chart_becomes_ready(
    node_cluster: NodeCluster, webhook_release: str
) -> None:
    deployment = node_cluster.get_json(
        "deployment", "-n", WEBHOOK_NAMESPACE, f"{webhook_release}-airflow-migration-webhook"
    )
    assert deployment["status"]["availableReplicas"] == deployment["spec"]["replicas"] == 2  # type: ignore[index]
    pdb = node_cluster.get_json(
        "pdb", "-n", WEBHOOK_NAMESPACE, f"{webhook_release}-airflow-migration-webhook"
    )
    assert pdb["status"]["currentHealthy"] == 2 and pdb["status"]["disruptionsAllowed"] >= 1  # type: ignore[index]

    # selfManaged TLS: the leader wrote the caBundle into its own registration, and it verifies what the
    # Service serves (read from the Secret the pods mount)
    def ca_bundle() -> str:
        registration = node_cluster.get_json(
            "mutatingwebhookconfiguration", f"{webhook_release}-airflow-migration-webhook"
        )
        return str(registration["webhooks"][0]["clientConfig"].get("caBundle", ""))  # type: ignore[index]

    node_cluster.wait_for("the caBundle", lambda: bool(ca_bundle()), timeout=60)
    secret = node_cluster.get_json(
        "secret", "-n", WEBHOOK_NAMESPACE, f"{webhook_release}-airflow-migration-webhook-tls"
    )
    served = base64.b64decode(secret["data"]["tls.crt"]).decode()  # type: ignore[index]
    context = ssl.create_default_context(cadata=base64.b64decode(ca_bundle()).decode())
    assert context.load_verify_locations(cadata=served) is None  # parses
    registration = node_cluster.get_json(
        "mutatingwebhookconfiguration", f"{webhook_release}-airflow-migration-webhook"
    )
    assert "service" in registration["webhooks"][0]["clientConfig"]  # type: ignore[index]


def test_cluster_dns_resolves_services(node_cluster: NodeCluster, webhook_release: str) -> None:
    service = node_cluster.get_json(
        "service", "-n", WEBHOOK_NAMESPACE, f"{webhook_release}-airflow-migration-webhook"
    )
    name = f"{webhook_release}-airflow-migration-webhook.{WEBHOOK_NAMESPACE}.svc.cluster.local"
    log = run_pod(node_cluster, "default", "dns", images.busybox_image().ref, "nslookup", name)
    assert service["spec"]["clusterIP"] in log, log  # type: ignore[index]
    log = run_pod(
        node_cluster, "default", "dns-api", images.busybox_image().ref, "nslookup", "kubernetes.default"
    )
    assert "10.96.0.1" in log, log


def test_an_airflow_deployment_is_stored_with_the_step_and_the_kubelet_runs_it(
    node_cluster: NodeCluster, webhook_release: str, node_postgres: Postgres
) -> None:
    namespace = "smoke"
    node_cluster.kubectl("create", "namespace", namespace)
    node_cluster.kubectl("label", "namespace", namespace, "airflow-migration-webhook/inject=enabled")
    node_postgres.create_database(namespace)
    docs = [
        doc
        for doc in yaml.safe_load_all(
            render_official(namespace, NODE_IP, node_postgres.port, database=namespace)
        )
        if doc
        and (
            doc["kind"] in ("Secret", "ConfigMap", "ServiceAccount")
            or (doc["metadata"]["name"].endswith("-scheduler") and doc["kind"] == "Deployment")
        )
    ]
    applied = node_cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(docs))
    assert "deployment.apps/airflow-scheduler" in applied.stdout

    stored = node_cluster.get_json("deployment", "-n", namespace, "airflow-scheduler")
    init = [c["name"] for c in stored["spec"]["template"]["spec"]["initContainers"]]  # type: ignore[index]
    assert init.index(STEP) == init.index("wait-for-airflow-migrations") - 1, init
    assert STATUS in stored["metadata"]["annotations"]  # type: ignore[index]

    def step_finished() -> bool:
        for pod in node_cluster.pods(namespace, "component=scheduler"):
            for status in pod["status"].get("initContainerStatuses", []):
                if status["name"] == STEP and "terminated" in status["state"]:
                    return True
        return False

    node_cluster.wait_for("the step to run on the kubelet", step_finished, timeout=300)
    [pod] = node_cluster.pods(namespace, "component=scheduler")
    [status] = [s for s in pod["status"]["initContainerStatuses"] if s["name"] == STEP]
    log = node_cluster.kubectl("logs", "-n", namespace, pod["metadata"]["name"], "-c", STEP).stdout
    assert status["state"]["terminated"]["exitCode"] == 0, log
    assert "airflow-db-migrate: migrations applied" in log, log
    assert node_postgres.psql(namespace, "select count(*) from alembic_version") == "1"
    node_cluster.wait_for(
        "the wait container to pass",
        lambda: any(
            s["name"] == "wait-for-airflow-migrations"
            and s["state"].get("terminated", {}).get("exitCode") == 0
            for p in node_cluster.pods(namespace, "component=scheduler")
            for s in p["status"].get("initContainerStatuses", [])
        ),
        timeout=180,
    )
    node_cluster.kubectl("delete", "namespace", namespace, "--wait=false")
