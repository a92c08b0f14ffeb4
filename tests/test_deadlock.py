"""The deadlock and its cure, watched on a running cluster (the node tier, tests/node.py).

The official chart 1.18.0 (Airflow 3.0.2 stand-in image, LocalExecutor, an external PostgreSQL) is synced
the way Argo CD syncs it (tests/argocd.py: PreSync, Sync, PostSync; a phase starts only once the previous
one is Healthy; server-side apply as `argocd-controller`), by a real kubelet, controllers and scheduler,
with the webhook installed by its own chart and image. Each scenario records its timeline, printed in the
test session's summary (tests/conftest.py) and quoted in docs/argocd.md, "On a running cluster".
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.argocd import ArgoSync, SyncResult, plan
from tests.node import (
    AIRFLOW_UPGRADE,
    NODE_IP,
    OPT_IN_LABEL,
    TIMELINES,
    WEBHOOK_NAMESPACE,
    NodeCluster,
    render_bitnami,
    render_official,
)
from tests.postgres import Postgres
from tests.support import REPO

pytestmark = [pytest.mark.node, pytest.mark.timeout(1500)]
STEP = "airflow-db-migrate"
WAIT = "wait-for-airflow-migrations"
MIGRATION_JOB = "batch/Job/airflow-run-airflow-migrations"
DEADLOCK_WAIT = 100  # seconds: past the wait container's own 60 s timeout, so it has restarted at least once
SYNC_TIMEOUT = 600
WEBHOOK_PODS = "app.kubernetes.io/name=airflow-migration-webhook"


def release(cluster: NodeCluster, postgres: Postgres, namespace: str, opted_in: bool, *values: str) -> str:
    cluster.kubectl("create", "namespace", namespace)
    if opted_in:
        cluster.kubectl("label", "namespace", namespace, OPT_IN_LABEL)
    postgres.create_database(namespace)
    return render_official(namespace, NODE_IP, postgres.port, *values, database=namespace)


def airflow_version(version: str) -> list[str]:
    """The values that move a release to another Airflow image (tests/fixtures/node-values says which)."""
    keys = ("airflowVersion", "defaultAirflowTag", "images.airflow.tag")
    return [f"--set-string={key}={version}" for key in keys]


def pods_table(cluster: NodeCluster, namespace: str) -> str:
    return cluster.kubectl("get", "pods", "-n", namespace).stdout


def record(title: str, result: SyncResult, cluster: NodeCluster, namespace: str, extra: str = "") -> None:
    counts = ", ".join(f"{p['metadata']['name']}: {restarts(p)}" for p in airflow_pods(cluster, namespace))
    TIMELINES.append(
        f"--- {title}\n{result}\n$ kubectl get pods -n {namespace}\n{pods_table(cluster, namespace)}"
        f"restarts: {counts}\n{extra}"
    )


def airflow_pods(cluster: NodeCluster, namespace: str) -> list[dict[str, Any]]:
    return [
        p
        for p in cluster.pods(namespace, "tier=airflow")
        if p["metadata"]["labels"].get("component") != "run-airflow-migrations"
    ]


def ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def restarts(pod: dict[str, Any]) -> int:
    statuses = pod["status"].get("initContainerStatuses", []) + pod["status"].get("containerStatuses", [])
    return sum(s.get("restartCount", 0) for s in statuses)


def step_log(cluster: NodeCluster, namespace: str, pod: dict[str, Any]) -> str:
    return cluster.kubectl("logs", "-n", namespace, pod["metadata"]["name"], "-c", STEP).stdout


def test_without_the_webhook_the_sync_deadlocks(node_cluster: NodeCluster, node_postgres: Postgres) -> None:
    """Control: the chart's defaults, a namespace that is not opted in: the workloads wait for a migration
    that only the PostSync hook would run, and Argo CD never starts PostSync."""
    namespace = "deadlock"
    manifest = release(node_cluster, node_postgres, namespace, opted_in=False)
    result = ArgoSync(node_cluster.kubectl, namespace, manifest).sync(timeout=DEADLOCK_WAIT)
    record(f"without the webhook (waited {DEADLOCK_WAIT} s)", result, node_cluster, namespace)

    assert result.phase == "Running", result
    assert result.message.startswith("waiting for healthy state of apps/Deployment/airflow-"), result
    assert MIGRATION_JOB not in result.hooks_created
    assert node_cluster.kubectl("get", "jobs", "-n", namespace, "-o", "name").stdout == ""
    for component in ("scheduler", "api-server"):
        [pod] = node_cluster.pods(namespace, f"component={component}")
        assert not ready(pod), pod["status"]
        waiting = [s for s in pod["status"]["initContainerStatuses"] if s["name"] == WAIT]
        assert waiting and not waiting[0]["ready"], pod["status"]
        assert all(c["name"] != STEP for c in pod["spec"]["initContainers"])
    assert (
        node_postgres.psql(namespace, "select count(*) from pg_tables where tablename = 'alembic_version'")
        == "0"
    )
    node_cluster.kubectl("delete", "namespace", namespace, "--wait=false")


def test_with_the_webhook_the_sync_completes(
    node_cluster: NodeCluster, webhook_release: str, node_postgres: Postgres
) -> None:
    """The cure, then no drift: every workload Healthy, the PostSync migration Job created afterwards with
    nothing left to migrate, one pod's step applied the migrations; `kubectl diff --server-side` of the same
    render shows nothing and a second sync rolls no pod."""
    namespace = "cure"
    manifest = release(node_cluster, node_postgres, namespace, opted_in=True)
    started = time.monotonic()
    result = ArgoSync(node_cluster.kubectl, namespace, manifest).sync(timeout=SYNC_TIMEOUT)
    seconds = time.monotonic() - started
    pods = airflow_pods(node_cluster, namespace)
    migrating = [p for p in pods if any(c["name"] == STEP for c in p["spec"]["initContainers"])]
    logs = {p["metadata"]["name"]: step_log(node_cluster, namespace, p) for p in migrating}
    record(
        f"with the webhook: {result.phase} in {seconds:.0f} s",
        result,
        node_cluster,
        namespace,
        "".join(f"$ kubectl logs -n {namespace} {name} -c {STEP}\n{log}" for name, log in logs.items()),
    )

    assert result.phase == "Succeeded", result
    assert MIGRATION_JOB in result.hooks_created
    events = [event for _, event in result.timeline]
    healthy_at = max(i for i, e in enumerate(events) if "Healthy" in e and "Deployment" in e)
    hook_at = events.index(f"hook created {MIGRATION_JOB} (PostSync)")
    assert hook_at > healthy_at, "PostSync starts only once every workload is Healthy"
    assert all(ready(p) for p in pods), pods_table(node_cluster, namespace)
    # the migrating components (scheduler and API server by default) carry the step; it ran on the kubelet,
    # and exactly one of them applied the migrations
    assert sorted(p["metadata"]["labels"]["component"] for p in migrating) == ["api-server", "scheduler"]
    said = [line for log in logs.values() for line in log.splitlines()]
    assert said.count("airflow-db-migrate: migrations applied") == 1, logs
    assert len(node_postgres.psql(namespace, "select version_num from alembic_version").split()) == 1

    # no drift: Argo CD's server-side diff of the same render, and a second sync that rolls nothing
    # (the objects as the sync applied them: Argo CD's tracking annotation included)
    applied = [task.obj for task in plan(manifest, namespace) if not task.hook]
    diff = node_cluster.kubectl(
        "diff", "--server-side", "--field-manager=argocd-controller", "--force-conflicts",
        "-n", namespace, "-f", "-",
        input="".join("---\n" + yaml.safe_dump(obj) for obj in applied),
        check=False,
    )  # fmt: skip
    assert diff.returncode == 0, diff.stdout[-3000:] + diff.stderr[-2000:]
    before = {p["metadata"]["uid"] for p in airflow_pods(node_cluster, namespace)}
    again = ArgoSync(node_cluster.kubectl, namespace, manifest).sync(timeout=SYNC_TIMEOUT)
    assert again.phase == "Succeeded", again
    assert {p["metadata"]["uid"] for p in airflow_pods(node_cluster, namespace)} == before, "a pod was rolled"
    node_cluster.kubectl("delete", "namespace", namespace, "--wait=false")


def test_upgrade_rolls_the_pods_and_the_step_migrates_once(
    node_cluster: NodeCluster, webhook_release: str, node_postgres: Postgres
) -> None:
    """A release of Airflow 2.6, synced; then the same chart with the Airflow 2.10 image (pending
    migrations: the schema moves from 2.6's head to 2.10's) synced again, with pruning as an automated
    Argo CD policy with `prune: true` syncs: the pods roll, one new pod's step applies the migrations, every
    workload is Healthy and the upgrade's PostSync migration Job succeeds (nothing left to migrate)."""
    namespace, (old, new) = "upgrade", AIRFLOW_UPGRADE
    first = release(node_cluster, node_postgres, namespace, True, *airflow_version(old))
    installed = ArgoSync(node_cluster.kubectl, namespace, first, prune=True).sync(timeout=SYNC_TIMEOUT)
    assert installed.phase == "Succeeded", installed
    [before] = node_postgres.psql(namespace, "select version_num from alembic_version").split()
    old_pods = {p["metadata"]["uid"] for p in airflow_pods(node_cluster, namespace)}

    port = node_postgres.port
    upgrade = render_official(namespace, NODE_IP, port, *airflow_version(new), database=namespace)
    started = time.monotonic()
    result = ArgoSync(node_cluster.kubectl, namespace, upgrade, prune=True).sync(timeout=SYNC_TIMEOUT)
    seconds = time.monotonic() - started
    pods = [p for p in airflow_pods(node_cluster, namespace) if not p["metadata"].get("deletionTimestamp")]
    migrating = [p for p in pods if any(c["name"] == STEP for c in p["spec"]["initContainers"])]
    logs = {p["metadata"]["name"]: step_log(node_cluster, namespace, p) for p in migrating}
    record(
        f"upgrade {old} -> {new}: {result.phase} in {seconds:.0f} s",
        result, node_cluster, namespace,
        "".join(f"$ kubectl logs -n {namespace} {name} -c {STEP}\n{log}" for name, log in logs.items()),
    )  # fmt: skip

    assert result.phase == "Succeeded", result
    assert f"hook completed {MIGRATION_JOB}: Succeeded" in " ".join(e for _, e in result.timeline), result
    assert not {p["metadata"]["uid"] for p in pods} & old_pods, "every pod rolled"
    assert all(ready(p) for p in pods), pods_table(node_cluster, namespace)
    images = {c["image"] for p in pods for c in p["spec"]["initContainers"] + p["spec"]["containers"]}
    assert images == {f"localhost/amw-airflow:{new}"}, images
    assert sorted(p["metadata"]["labels"]["component"] for p in migrating) == ["scheduler", "webserver"]
    said = [line for log in logs.values() for line in log.splitlines()]
    assert said.count("airflow-db-migrate: migrations applied") == 1, logs
    [after] = node_postgres.psql(namespace, "select version_num from alembic_version").split()
    assert after != before, "the schema moved to the new Airflow's head"
    node_cluster.kubectl("delete", "namespace", namespace, "--wait=false")


def test_bitnami_airflow_3_with_the_webhook_the_sync_completes(
    node_cluster: NodeCluster, webhook_release: str, node_postgres: Postgres
) -> None:
    """The cure on Bitnami's chart 24.1.0 (the Airflow 3 image line): the Bitnami-style stand-in image with
    Bitnami's real shell libraries (tests/images.py), the chart's prepare-config and wait-for-db-migrations
    init containers as rendered (it waits for the migration and for the admin user). With the webhook, the
    step in scheduler and web migrates and creates the admin user; every workload becomes Healthy, then
    Argo CD's PostSync runs the chart's setup-db Job, which succeeds."""
    namespace = "bitnami"
    node_cluster.kubectl("create", "namespace", namespace)
    node_cluster.kubectl("label", "namespace", namespace, OPT_IN_LABEL)
    node_postgres.create_database(namespace)
    manifest = render_bitnami(namespace, NODE_IP, node_postgres.port, database=namespace)
    started = time.monotonic()
    result = ArgoSync(node_cluster.kubectl, namespace, manifest).sync(timeout=SYNC_TIMEOUT)
    seconds = time.monotonic() - started
    pods = [
        p for p in node_cluster.pods(namespace, "app.kubernetes.io/name=airflow")
        if p["metadata"].get("ownerReferences", [{}])[0].get("kind") != "Job"
    ]  # fmt: skip
    migrating = [p for p in pods if any(c["name"] == STEP for c in p["spec"]["initContainers"])]
    logs = {p["metadata"]["name"]: step_log(node_cluster, namespace, p) for p in migrating}
    counts = ", ".join(f"{p['metadata']['name']}: {restarts(p)}" for p in pods)
    TIMELINES.append(
        f"--- Bitnami 24.1.0 (Airflow 3) with the webhook: {result.phase} in {seconds:.0f} s\n{result}\n"
        f"$ kubectl get pods -n {namespace}\n{pods_table(node_cluster, namespace)}restarts: {counts}\n"
        + "".join(f"$ kubectl logs -n {namespace} {name} -c {STEP}\n{log}" for name, log in logs.items())
    )

    assert result.phase == "Succeeded", result
    setup = "batch/Job/airflow-setup-db"
    events = [event for _, event in result.timeline]
    assert f"hook completed {setup}: Succeeded" in " ".join(events), result
    healthy_at = max(i for i, e in enumerate(events) if "Healthy" in e and "apps/" in e)
    assert events.index(f"hook created {setup} (PostSync)") > healthy_at, result
    assert pods and all(ready(p) for p in pods), pods_table(node_cluster, namespace)
    components = sorted(p["metadata"]["labels"]["app.kubernetes.io/component"] for p in migrating)
    assert components == ["scheduler", "web"], components
    said = [line for log in logs.values() for line in log.splitlines()]
    assert said.count("airflow-db-migrate: migrations applied") == 1, logs
    assert node_postgres.psql(namespace, "select count(*) from ab_user where username = 'user'") == "1"
    node_cluster.kubectl("delete", "namespace", namespace, "--wait=false")


def run_as_printed(command: str, cluster: NodeCluster) -> subprocess.CompletedProcess[str]:
    """A command doctor printed, run as a user would paste it: a shell, the cluster's kubeconfig, the
    project's CLI, kubectl and helm on PATH."""
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "PATH": f"{REPO / '.venv' / 'bin'}:{REPO / '.cache' / 'bin'}:{os.environ['PATH']}",
    }
    return subprocess.run(command, shell=True, env=env, capture_output=True, text=True, timeout=300)


def test_webhook_down_then_doctor_and_its_fixes_unstick_the_release(
    node_cluster: NodeCluster, webhook_release: str, node_postgres: Postgres
) -> None:
    """The webhook scaled to zero (failurePolicy Ignore): a fresh sync stores the workloads without the step
    and sticks. doctor names the cause, with the pods' real logs; its suggested fixes, run exactly as
    printed, unstick the sync; then doctor exits 0."""
    with webhook_scaled_to_zero(node_cluster, webhook_release):
        manifest = release(node_cluster, node_postgres, "stuck", opted_in=True)
        unstick_with_doctor(node_cluster, "stuck", manifest, "apps/Deployment/airflow-scheduler")


def test_webhook_down_a_statefulset_scheduler_alone_is_unstuck_by_doctors_fixes(
    node_cluster: NodeCluster, webhook_release: str, node_postgres: Postgres
) -> None:
    """The same, where the only migrating workload is a StatefulSet: the chart's LocalExecutor scheduler
    with worker persistence on (its logs volumeClaimTemplate bound to a static hostPath volume: the node has
    no provisioner), and the API server kept out of migrating by the per-object annotation
    `airflow-migration-webhook/migrate: "false"` on its pod template. Kubernetes does not roll a StatefulSet
    pod that is not Ready (OrderedReady), so once `reconcile` gives the template the step, the stuck pod
    stays as it is: doctor's fixes must replace it."""
    volume = node_cluster.state / "scheduler-logs-volume"
    volume.mkdir(mode=0o777)
    volume.chmod(0o777)  # the scheduler writes its logs there as uid 50000; hostPath gets no fsGroup
    node_cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "scheduler-logs"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": str(volume)}},
    }))  # fmt: skip
    namespace = "stuck-statefulset"
    try:
        with webhook_scaled_to_zero(node_cluster, webhook_release):
            manifest = release(
                node_cluster, node_postgres, namespace, True,
                "--set", "workers.persistence.enabled=true", "--set", "workers.persistence.size=1Gi",
                "--set-string", "apiServer.podAnnotations.airflow-migration-webhook/migrate=false",
            )  # fmt: skip
            scheduler = "apps/StatefulSet/airflow-scheduler"
            fixes = unstick_with_doctor(node_cluster, namespace, manifest, scheduler)
        replace = f"kubectl delete pod -n {namespace} airflow-scheduler-0"
        assert any(fix.endswith(f"&& {replace}") or fix == replace for fix in fixes), fixes
        api_server = node_cluster.get_json("deployment", "-n", namespace, "airflow-api-server")
        assert STEP not in [c["name"] for c in api_server["spec"]["template"]["spec"]["initContainers"]]  # type: ignore[index]
    finally:
        node_cluster.kubectl("delete", "namespace", namespace, "--wait=true", "--timeout=120s", check=False)
        node_cluster.kubectl("delete", "persistentvolume", "scheduler-logs", "--wait=false", check=False)


@contextlib.contextmanager
def webhook_scaled_to_zero(node_cluster: NodeCluster, webhook_release: str) -> Iterator[None]:
    """The webhook's Deployment at zero replicas for the block; whatever happens, the next tests get their
    webhook back."""
    webhook = f"{webhook_release}-airflow-migration-webhook"
    node_cluster.kubectl("scale", "deployment", "-n", WEBHOOK_NAMESPACE, webhook, "--replicas=0")
    try:
        node_cluster.wait_for(
            "the webhook's pods to go",
            lambda: not node_cluster.pods(WEBHOOK_NAMESPACE, WEBHOOK_PODS),
            120,
        )
        yield
    finally:
        node_cluster.kubectl("scale", "deployment", "-n", WEBHOOK_NAMESPACE, webhook, "--replicas=2")
        node_cluster.kubectl(
            "rollout", "status", "deployment", "-n", WEBHOOK_NAMESPACE, webhook, "--timeout=110s"
        )


def unstick_with_doctor(
    node_cluster: NodeCluster, namespace: str, manifest: str, scheduler: str
) -> list[str]:
    """Syncs `manifest` while the webhook is down (stuck), then runs doctor and its fixes as printed until
    doctor exits 0, and the sync on to Succeeded. Returns every fix doctor printed."""
    sync = ArgoSync(node_cluster.kubectl, namespace, manifest)
    stuck = sync.sync(timeout=DEADLOCK_WAIT)
    assert stuck.phase == "Running" and "waiting for healthy state" in stuck.message, stuck
    _, kind, name = scheduler.split("/")
    stored = node_cluster.get_json(kind.lower(), "-n", namespace, name)
    assert STEP not in [c["name"] for c in stored["spec"]["template"]["spec"]["initContainers"]]  # type: ignore[index]

    said, fixes = [], []
    for _ in range(3):  # doctor, its fixes as printed, until doctor finds nothing
        doctor = run_as_printed(
            f"airflow-migration-webhook doctor --namespace {namespace} -o json", node_cluster
        )
        report = json.loads(doctor.stdout)
        said.append(
            run_as_printed(f"airflow-migration-webhook doctor --namespace {namespace}", node_cluster).stdout
        )
        if doctor.returncode == 0:
            break
        assert doctor.returncode == 1, doctor.stderr
        if len(said) == 1:  # the cause first, and the waiting pods' real logs from the kubelet
            assert report["summary"]["likely_cause"]["code"] == "endpoints_not_ready", said[0]
            waiting = [f for f in report["findings"] if f["code"] == "waiting_without_step"]
            assert waiting and all("logs unavailable" not in " ".join(f["evidence"]) for f in waiting), said[
                0
            ]
        for fix in report["summary"]["fixes"]:
            fixes.append(fix)
            ran = run_as_printed(fix, node_cluster)
            assert ran.returncode == 0, f"{fix}\n{ran.stdout}{ran.stderr}"
        unstuck = sync.sync(timeout=SYNC_TIMEOUT)
    else:
        raise AssertionError("doctor still finds problems after three rounds of its fixes:\n" + said[-1])
    record(
        f"webhook down ({scheduler}), then doctor and its fixes", unstuck, node_cluster, namespace,
        "".join(f"$ airflow-migration-webhook doctor --namespace {namespace}\n{text}" for text in said),
    )  # fmt: skip
    assert unstuck.phase == "Succeeded", unstuck
    assert len(said) >= 2, "the first doctor run found problems"
    node_cluster.kubectl("delete", "namespace", namespace, "--wait=false")
    return fixes
