"""The webhook's own availability on a running cluster (the node tier): its two replicas, its graceful
shutdown and its PodDisruptionBudget, as the chart installs them. With `failurePolicy: Ignore` an admission
that cannot reach the webhook stores the object without the step, silently: this is what must not happen
while a webhook pod goes away."""

from __future__ import annotations

import copy
import json
import threading
import time
from typing import Any

import pytest
import yaml

from tests.node import NODE_IP, OPT_IN_LABEL, WEBHOOK_NAMESPACE, NodeCluster, render_official
from tests.postgres import Postgres

pytestmark = [pytest.mark.node, pytest.mark.timeout(900)]
STEP = "airflow-db-migrate"
STATUS = "airflow-migration-webhook/status"


def webhook_pods(cluster: NodeCluster, release: str) -> list[dict[str, Any]]:
    return [
        pod
        for pod in cluster.pods(WEBHOOK_NAMESPACE, f"app.kubernetes.io/instance={release}")
        if not pod["metadata"].get("deletionTimestamp")
    ]


def webhook_ready(cluster: NodeCluster, release: str) -> bool:
    deployment = cluster.get_json(
        "deployment", "-n", WEBHOOK_NAMESPACE, f"{release}-airflow-migration-webhook"
    )
    status: dict[str, Any] = deployment.get("status", {})  # type: ignore[assignment]
    return status.get("availableReplicas") == 2 and status.get("updatedReplicas") == 2


def evict(cluster: NodeCluster, pod: str) -> tuple[int, str]:
    eviction = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": pod, "namespace": WEBHOOK_NAMESPACE},
    }
    result = cluster.kubectl(
        "create", "--raw", f"/api/v1/namespaces/{WEBHOOK_NAMESPACE}/pods/{pod}/eviction", "-f", "-",
        input=json.dumps(eviction), check=False,
    )  # fmt: skip
    return result.returncode, result.stdout + result.stderr


def test_no_admission_misses_the_webhook_while_a_replica_goes_away(
    node_cluster: NodeCluster, webhook_release: str, node_postgres: Postgres
) -> None:
    namespace = "availability"
    node_cluster.kubectl("create", "namespace", namespace)
    node_cluster.kubectl("label", "namespace", namespace, OPT_IN_LABEL)
    [scheduler] = [
        doc
        for doc in yaml.safe_load_all(render_official(namespace, NODE_IP, node_postgres.port))
        if doc and doc["kind"] == "Deployment" and doc["metadata"]["name"] == "airflow-scheduler"
    ]
    scheduler["spec"]["replicas"] = 0  # admission is what is under test: no pods needed
    node_cluster.wait_for("both webhook replicas", lambda: webhook_ready(node_cluster, webhook_release), 300)

    created: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def admit_in_a_loop() -> None:
        while not stop.is_set():
            obj = copy.deepcopy(scheduler)
            obj["metadata"]["name"] = f"airflow-scheduler-{len(created)}"
            result = node_cluster.kubectl(
                "create", "-n", namespace, "-f", "-", input=json.dumps(obj), check=False
            )
            if result.returncode != 0:
                failures.append(result.stderr.strip())
            created.append(obj["metadata"]["name"])

    loop = threading.Thread(target=admit_in_a_loop)
    loop.start()
    try:
        time.sleep(5)
        victim = webhook_pods(node_cluster, webhook_release)[0]["metadata"]["name"]
        node_cluster.kubectl("delete", "pod", "-n", WEBHOOK_NAMESPACE, victim, "--wait=true")
        node_cluster.wait_for(
            "the replacement replica", lambda: webhook_ready(node_cluster, webhook_release), 300
        )
        time.sleep(5)
    finally:
        stop.set()
        loop.join(60)
    assert not failures, failures
    assert len(created) >= 20, f"only {len(created)} admissions during the test"
    stored = node_cluster.get_json("deployments", "-n", namespace)["items"]
    without = [d["metadata"]["name"] for d in stored if STATUS not in d["metadata"].get("annotations", {})]  # type: ignore[union-attr, index]
    assert without == [], f"{len(without)} of {len(stored)} stored without the webhook: {without}"  # type: ignore[arg-type]
    for deployment in stored:  # type: ignore[union-attr]
        assert STEP in [c["name"] for c in deployment["spec"]["template"]["spec"]["initContainers"]]  # type: ignore[index]

    # a drain evicts through the Eviction API: the PodDisruptionBudget lets one replica go, never both
    first, second = (p["metadata"]["name"] for p in webhook_pods(node_cluster, webhook_release))
    code, said = evict(node_cluster, first)
    assert code == 0, said
    code, said = evict(node_cluster, second)
    assert code != 0 and "disruption budget" in said, said
    node_cluster.wait_for("the webhook to recover", lambda: webhook_ready(node_cluster, webhook_release), 300)
    node_cluster.kubectl("delete", "namespace", namespace, "--wait=false")
