"""Benchmark: what the step costs a pod restart on a real node, with and without the webhook.

    bash scripts/isolated.sh .venv/bin/pytest -p tests.conftest -s bench/test_node_restart.py

(not part of the suite: `tests/` is the suite's only test path). Needs the node tier's binaries and images
(tests/node.py; `bash scripts/build-image.sh` and `.venv/bin/python -m tests.images` first) and a quiet
machine: the node tier's cluster, one at a time.

An up-to-date release of the official chart (the node tier's values: Airflow 3.0.2 stand-in, LocalExecutor,
external PostgreSQL) is synced with the webhook in an opted-in namespace. Then, in turn, with the step and
without it (the namespace's opt-in label removed and the same render synced again: Argo CD's server-side
apply drops the init container the webhook had added, and the pods roll), the scheduler's and the API
server's pod are deleted `BENCH_RESTARTS` times (default 3) each and the replacement is watched:

- time to Ready: from the delete to the new pod's Ready condition, polled every 0.5 s (the chart's startup
  probes run every 10 s, so this moves in steps of up to 10 s);
- time to started: from the new pod's creation to its main container's start (the kubelet's
  second-resolution timestamps): every init container, the step included, and nothing else;
- the step's own run (its container's start and finish).

Writes bench/results/node-restart-<UTC time>.md (git-ignored) and fails when the median time to Ready with
the step exceeds 1.10x the median without it, for either component.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import time
from typing import Any

import pytest

from tests.argocd import ArgoSync
from tests.node import NODE_IP, OPT_IN_LABEL, NodeCluster, render_official
from tests.postgres import Postgres
from tests.support import REPO

pytestmark = [pytest.mark.node, pytest.mark.timeout(3600)]
NAMESPACE = "restart"
STEP = "airflow-db-migrate"
COMPONENTS = {"scheduler": "scheduler", "api-server": "api-server"}  # component label -> main container
RESTARTS = int(os.environ.get("BENCH_RESTARTS", "3"))
TARGET = 1.10


def when(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def is_ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def restart(cluster: NodeCluster, component: str) -> dict[str, float]:
    """Delete the component's pod; time its replacement."""
    [old] = cluster.pods(NAMESPACE, f"component={component}")
    begin = time.monotonic()
    cluster.kubectl("delete", "pod", "-n", NAMESPACE, old["metadata"]["name"], "--wait=false")
    deadline = begin + 600
    while time.monotonic() < deadline:
        pods = [
            p
            for p in cluster.pods(NAMESPACE, f"component={component}")
            if p["metadata"]["uid"] != old["metadata"]["uid"] and not p["metadata"].get("deletionTimestamp")
        ]
        if pods and is_ready(pods[0]):
            to_ready = time.monotonic() - begin
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"no Ready {component} pod 600 s after deleting {old['metadata']['name']}")
    pod = pods[0]
    [main] = [s for s in pod["status"]["containerStatuses"] if s["name"] == COMPONENTS[component]]
    created = when(pod["metadata"]["creationTimestamp"])
    row = {"to_ready": to_ready, "to_started": when(main["state"]["running"]["startedAt"]) - created}
    for status in pod["status"].get("initContainerStatuses", []):
        if status["name"] == STEP:
            done = status["state"]["terminated"]
            row["step"] = when(done["finishedAt"]) - when(done["startedAt"])
    return row


def sync(cluster: NodeCluster, manifest: str) -> None:
    result = ArgoSync(cluster.kubectl, NAMESPACE, manifest).sync(timeout=900)
    assert result.phase == "Succeeded", result


def has_step(cluster: NodeCluster) -> set[bool]:
    return {
        any(c["name"] == STEP for c in p["spec"]["initContainers"])
        for component in COMPONENTS
        for p in cluster.pods(NAMESPACE, f"component={component}")
    }


def test_restart_time_with_and_without_the_step(
    node_cluster: NodeCluster, webhook_release: str, node_postgres: Postgres
) -> None:
    cluster = node_cluster
    cluster.kubectl("create", "namespace", NAMESPACE)
    cluster.kubectl("label", "namespace", NAMESPACE, OPT_IN_LABEL)
    node_postgres.create_database(NAMESPACE)
    manifest = render_official(NAMESPACE, NODE_IP, node_postgres.port, database=NAMESPACE)
    sync(cluster, manifest)
    assert has_step(cluster) == {True}

    rows: dict[tuple[str, str], list[dict[str, float]]] = {}
    for mode in ("with the step", "without the step"):
        if mode == "without the step":
            cluster.kubectl("label", "namespace", NAMESPACE, OPT_IN_LABEL.split("=")[0] + "-")
            sync(cluster, manifest)
            cluster.kubectl("rollout", "status", "-n", NAMESPACE, "deployment", "--timeout=600s")
            assert has_step(cluster) == {False}, "the re-sync did not drop the step"
        for _ in range(RESTARTS):
            for component in COMPONENTS:  # in turn, so that noise spreads over both alike
                rows.setdefault((component, mode), []).append(restart(cluster, component))

    def median(component: str, mode: str, key: str) -> float:
        values = [row[key] for row in rows[(component, mode)] if key in row]
        return statistics.median(values) if values else float("nan")

    lines = [
        f"# Pod restart on the node tier, {dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%M:%SZ}",
        "",
        f"official chart 1.18.0, Airflow 3.0.2 stand-in, {RESTARTS} restarts per component and mode, medians;"
        f" load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}",
        "",
        "| component | mode | time to Ready s | time to main container started s | the step s |",
        "|---|---|---|---|---|",
    ]
    ratios = {}
    for component in COMPONENTS:
        for mode in ("with the step", "without the step"):
            lines.append(
                f"| {component} | {mode} | {median(component, mode, 'to_ready'):.1f} "
                f"| {median(component, mode, 'to_started'):.1f} | {median(component, mode, 'step'):.1f} |"
            )
        ratios[component] = median(component, "with the step", "to_ready") / median(
            component, "without the step", "to_ready"
        )
    lines += ["", "time to Ready, with / without the step: "]
    lines[-1] += ", ".join(f"{component} {ratio:.2f}x" for component, ratio in ratios.items())
    lines.append(f"(target <= {TARGET:.2f}x); every run: {rows}")
    report = "\n".join(lines) + "\n"
    print("\n" + report)
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"node-restart-{dt.datetime.now(dt.UTC):%Y-%m-%dT%H%M%SZ}.md").write_text(report)
    cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false")
    assert all(ratio <= TARGET for ratio in ratios.values()), report
