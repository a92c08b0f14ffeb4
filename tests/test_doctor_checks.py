"""The pure half of doctor: label selectors, the order of findings and the summary, on hand-made snapshots
(the scenarios on a real API server are in tests/test_doctor.py)."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import pytest
import yaml

from app.config import NamespaceLabel
from app.doctor.checks import check_workloads, diagnose, selects
from app.doctor.context import Context
from app.doctor.findings import Code, Severity, render_table
from app.doctor.gather import ServedCertificate, Snapshot
from app.engine import EngineConfig, Reason
from app.engine.names import STEP_CONTAINER_NAME, WEBHOOK_NAME
from tests.support import CHART_RENDERS

NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)
SELECTOR = {
    "matchExpressions": [
        {"key": "airflow-migration-webhook/inject", "operator": "In", "values": ["enabled"]},
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["amw"]},
    ]
}


@pytest.mark.parametrize(
    ("labels", "selected"),
    [
        ({"airflow-migration-webhook/inject": "enabled", "kubernetes.io/metadata.name": "a"}, True),
        ({"airflow-migration-webhook/inject": "yes", "kubernetes.io/metadata.name": "a"}, False),
        ({"kubernetes.io/metadata.name": "a"}, False),
        ({"airflow-migration-webhook/inject": "enabled", "kubernetes.io/metadata.name": "amw"}, False),
    ],
)
def test_namespace_selector(labels: dict[str, str], selected: bool) -> None:
    assert selects(SELECTOR, labels) is selected
    assert selects({"matchLabels": {"a": "b"}}, {"a": "b", "c": "d"})
    assert not selects({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": "x"})


def scheduler(init: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "s-1", "namespace": "af", "labels": {"app": "s"}},
        "spec": {
            "initContainers": init,
            "containers": [
                {"name": "scheduler", "image": "apache/airflow:3.0.2", "args": ["airflow", "scheduler"]}
            ],
        },
    }


def snapshot(pod: dict[str, Any], statuses: list[dict[str, Any]]) -> Snapshot:
    pod["status"] = {"initContainerStatuses": statuses, "startTime": "2026-12-04T11:00:00Z"}
    configuration = {
        "metadata": {"name": "amw"},
        "webhooks": [
            {
                "name": WEBHOOK_NAME,
                "clientConfig": {"url": "https://x/mutate", "caBundle": "Cg=="},
                "namespaceSelector": SELECTOR,
            }
        ],
    }
    return Snapshot(
        server_version=(1, 32),
        webhook_configurations=[configuration],
        served_certificates={"amw": ServedCertificate("https://x:443", unread="cannot connect")},
        namespaces={
            "af": {"metadata": {"name": "af", "labels": {"airflow-migration-webhook/inject": "enabled"}}}
        },
        pods={"af": [pod]},
        logs={
            ("af", "s-1", STEP_CONTAINER_NAME): [
                "airflow-db-migrate: migration failed after 5 attempts (exit 1)"
            ]
        },
    )


def test_a_failed_step_is_the_likely_cause_with_its_log_and_where_to_look() -> None:
    """A failing step has no fix doctor can know: its log says what failed. The log command is a diagnostic,
    printed under "Look at", never among the fixes."""
    step = {"name": STEP_CONTAINER_NAME, "image": "apache/airflow:3.0.2"}
    snap = snapshot(
        scheduler([step]),
        [{"name": STEP_CONTAINER_NAME, "state": {"terminated": {"exitCode": 1}}, "restartCount": 0}],
    )
    report = diagnose(snap, Context(EngineConfig(), NamespaceLabel(), NOW))
    assert report.exit_code == 1
    cause = report.likely_cause
    assert cause is not None and cause.code == Code.STEP_FAILED and "exit code 1" in cause.message
    assert cause.evidence == (
        f"{STEP_CONTAINER_NAME}: airflow-db-migrate: migration failed after 5 attempts (exit 1)",
    )
    assert report.fixes == []
    assert report.look_at == [f"kubectl logs -n af s-1 -c {STEP_CONTAINER_NAME}"]
    assert [f.code for f in report.warnings] == [Code.CERTIFICATE_UNREAD, Code.NO_AIRFLOW]
    table = render_table(report)
    assert "Likely cause: Pod/af/s-1" in table and "1 problem(s), 2 warning(s)" in table
    assert f"Look at:\n  kubectl logs -n af s-1 -c {STEP_CONTAINER_NAME}\n" in table
    assert "Suggested fixes" not in table
    summary = report.to_json()["summary"]
    assert summary["fixes"] == [] and summary["look_at"] == report.look_at


def test_a_pod_that_finished_its_init_containers_is_counted_not_listed() -> None:
    step = {"name": STEP_CONTAINER_NAME, "image": "apache/airflow:3.0.2"}
    snap = snapshot(
        scheduler([step]), [{"name": STEP_CONTAINER_NAME, "state": {"terminated": {"exitCode": 0}}}]
    )
    snap.pods["af"][0]["status"]["phase"] = "Running"
    report = diagnose(snap, Context(EngineConfig(), NamespaceLabel(), NOW))
    [ready] = [f for f in report.findings if f.check == "pod"]
    assert ready.code == Code.POD_READY and ready.message.endswith(": 1 running")
    assert report.exit_code == 0


def webhook_snapshot(served: bytes, ca_pem: bytes) -> Snapshot:
    import base64

    configuration = {
        "metadata": {"name": "amw"},
        "webhooks": [
            {
                "name": WEBHOOK_NAME,
                "clientConfig": {
                    "url": "https://amw.example:8443/mutate",
                    "caBundle": base64.b64encode(ca_pem).decode(),
                },
                "namespaceSelector": SELECTOR,
            }
        ],
    }
    return Snapshot(
        server_version=(1, 32),
        webhook_configurations=[configuration],
        served_certificates={"amw": ServedCertificate("https://amw.example:8443", served)},
    )


def test_a_certificate_for_another_name_or_near_expiry() -> None:
    from app.tls.issue import issue, new_ca

    ca = new_ca("ca", 30, NOW)
    context = Context(EngineConfig(), NamespaceLabel(), NOW)
    wrong_name = diagnose(
        webhook_snapshot(issue(ca, ["other.example"], [], 300, NOW).cert_pem, ca.cert_pem), context
    )
    [mismatch] = [f for f in wrong_name.findings if f.code == Code.CA_BUNDLE_MISMATCH]
    assert "not valid for amw.example" in mismatch.message and "other.example" in mismatch.evidence[0]
    expiring = diagnose(
        webhook_snapshot(issue(ca, ["amw.example"], [], 5, NOW).cert_pem, ca.cert_pem), context
    )
    assert [f.code for f in expiring.findings] == [
        Code.WEBHOOK_FOUND,
        Code.CA_BUNDLE_OK,
        Code.CERTIFICATE_EXPIRING,
    ]
    later = Context(EngineConfig(), NamespaceLabel(), NOW + dt.timedelta(days=6))
    expired = diagnose(webhook_snapshot(issue(ca, ["amw.example"], [], 5, NOW).cert_pem, ca.cert_pem), later)
    assert Code.CERTIFICATE_EXPIRED in [f.code for f in expired.problems]


@pytest.mark.parametrize(
    ("kind", "template_has_step", "fix"),
    [
        ("Deployment", True, "kubectl rollout restart -n af deployment/s"),
        ("Deployment", False, "airflow-migration-webhook reconcile --namespace af"),
        # OrderedReady: a StatefulSet never replaces a pod that is not Ready, whatever its template says
        ("StatefulSet", True, "kubectl delete pod -n af s-1"),
        (
            "StatefulSet",
            False,
            "airflow-migration-webhook reconcile --namespace af && kubectl delete pod -n af s-1",
        ),
    ],
)
def test_a_pod_waiting_without_the_step_gets_the_fix_its_owner_needs(
    kind: str, template_has_step: bool, fix: str
) -> None:
    wait = {
        "name": "wait-for-airflow-migrations",
        "image": "apache/airflow:3.0.2",
        "args": ["airflow", "db", "check-migrations", "--migration-wait-timeout=60"],
    }
    pod = scheduler([wait])
    snap = snapshot(pod, [{"name": wait["name"], "state": {"running": {}}, "restartCount": 2}])
    template_init = (
        [{"name": STEP_CONTAINER_NAME, "image": "apache/airflow:3.0.2"}, wait]
        if template_has_step
        else [wait]
    )
    owner = {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": "s", "namespace": "af"},
        "spec": {
            "selector": {"matchLabels": {"app": "s"}},
            "template": {
                "metadata": {"labels": {"app": "s"}},
                "spec": {**pod["spec"], "initContainers": template_init},
            },
        },
    }
    snap.workloads = {"af": [owner]}
    report = diagnose(snap, Context(EngineConfig(), NamespaceLabel(), NOW))
    [waiting] = [f for f in report.findings if f.code == Code.WAITING_WITHOUT_STEP]
    assert waiting.fix == fix


@pytest.mark.parametrize(
    ("replicas", "fix"),
    [
        (0, "kubectl scale deployment -n amw amw-airflow-migration-webhook --replicas=2"),
        (2, ""),  # nothing doctor knows brings it back: the webhook's pods say why they are not ready
    ],
)
def test_no_ready_endpoint_behind_the_service_and_what_brings_one_back(replicas: int, fix: str) -> None:
    key = ("amw", "amw-airflow-migration-webhook")
    configuration = {
        "metadata": {"name": "amw"},
        "webhooks": [
            {
                "name": WEBHOOK_NAME,
                "failurePolicy": "Ignore",
                "clientConfig": {"service": {"namespace": key[0], "name": key[1]}, "caBundle": "Cg=="},
                "namespaceSelector": SELECTOR,
            }
        ],
    }
    deployment = {"metadata": {"name": key[1], "namespace": key[0]}, "spec": {"replicas": replicas}}
    snap = Snapshot(
        server_version=(1, 32),
        webhook_configurations=[configuration],
        services={key: {"metadata": {"name": key[1]}, "spec": {"selector": {"app": "amw", "tier": "x"}}}},
        endpoint_slices={key: []},
        webhook_deployments={key: [deployment]},
        served_certificates={
            "amw": ServedCertificate("Secret amw/amw-tls", unread="no serving Secret found")
        },
    )
    report = diagnose(snap, Context(EngineConfig(), NamespaceLabel(), NOW))
    [finding] = [f for f in report.findings if f.code == Code.ENDPOINTS_NOT_READY]
    assert finding.fix == fix
    assert finding.look_at == "kubectl describe pods -n amw -l app=amw,tier=x"
    assert ("scaled to 0 replicas" in " ".join(finding.evidence)) is (replicas == 0)
    assert report.likely_cause is finding


def test_a_namespace_not_selected_shows_labels_and_selector_as_kubectl_writes_them() -> None:
    snap = snapshot(scheduler([]), [])
    snap.namespaces = {
        "af": {"metadata": {"name": "af", "labels": {"kubernetes.io/metadata.name": "af", "team": "data"}}}
    }
    report = diagnose(snap, Context(EngineConfig(), NamespaceLabel(), NOW))
    [finding] = [f for f in report.findings if f.code == Code.NAMESPACE_NOT_SELECTED]
    assert finding.evidence == (
        "labels: kubernetes.io/metadata.name=af,team=data",
        "namespaceSelector: airflow-migration-webhook/inject in (enabled),"
        "kubernetes.io/metadata.name notin (amw)",
    )


def waiting_pod(name: str, restarts: int = 0) -> dict[str, Any]:
    pod = scheduler(
        [
            {
                "name": "wait-for-airflow-migrations",
                "image": "apache/airflow:3.0.2",
                "args": ["airflow", "db", "check-migrations", "--migration-wait-timeout=60"],
            }
        ]
    )
    pod["metadata"]["name"] = name
    pod["status"] = {
        "startTime": "2026-12-04T11:00:00Z",
        "initContainerStatuses": [
            {
                "name": "wait-for-airflow-migrations",
                "state": {"running": {"startedAt": "2026-12-04T11:59:30Z"}},
                "restartCount": restarts,
            }
        ],
    }
    return pod


def test_the_likely_cause_is_what_blocks_the_others_not_the_first_name() -> None:
    """An API-server pod waiting behind a scheduler whose step fails: the cause is the failing step, whatever
    the names' order, and its fix comes first."""
    step = {"name": STEP_CONTAINER_NAME, "image": "apache/airflow:3.0.2"}
    failing = scheduler([step])
    snap = snapshot(failing, [{"name": STEP_CONTAINER_NAME, "state": {"terminated": {"exitCode": 1}}}])
    snap.pods["af"] = [waiting_pod("a-api-server-1"), failing]  # the waiting pod comes first by name
    report = diagnose(snap, Context(EngineConfig(), NamespaceLabel(), NOW))
    assert [f.code for f in report.problems] == [Code.WAITING_WITHOUT_STEP, Code.STEP_FAILED]
    cause = report.likely_cause
    assert cause is not None and cause.code == Code.STEP_FAILED
    assert report.look_at[0] == f"kubectl logs -n af s-1 -c {STEP_CONTAINER_NAME}"
    assert "Likely cause: Pod/af/s-1" in render_table(report)


def test_a_waiting_pod_says_how_long_since_it_started_and_its_restarts() -> None:
    snap = snapshot(scheduler([]), [])
    snap.pods["af"] = [waiting_pod("w-1", restarts=2)]
    report = diagnose(snap, Context(EngineConfig(), NamespaceLabel(), NOW))
    [waiting] = [f for f in report.findings if f.code == Code.WAITING_WITHOUT_STEP]
    assert "stuck in wait-for-airflow-migrations for 1h00m (2 restarts):" in waiting.message


def test_repeated_log_lines_collapse_in_the_table_and_json_keeps_them_all() -> None:
    snap = snapshot(scheduler([]), [])
    snap.pods["af"] = [waiting_pod("w-1")]
    lines = [f"Waiting for migrations... {n} second(s)" for n in range(10, 20)]
    snap.logs[("af", "w-1", "wait-for-airflow-migrations")] = ["DB: postgresql://x", *lines]
    report = diagnose(snap, Context(EngineConfig(), NamespaceLabel(), NOW))
    table = render_table(report)
    assert "| wait-for-airflow-migrations: DB: postgresql://x" in table
    assert "| wait-for-airflow-migrations: Waiting for migrations... 19 second(s) (10 similar lines)" in table
    assert "10 second(s)" not in table
    [waiting] = [f for f in report.to_json()["findings"] if f["code"] == "waiting_without_step"]
    assert len(waiting["evidence"]) == 11


# --- what is true about pods, Jobs and Argo CD ----------------------------------------------------------


def pod_with(status: dict[str, Any], node: str | None = "node-1") -> dict[str, Any]:
    pod = waiting_pod("p-1")
    pod["status"] = status
    if node:
        pod["spec"]["nodeName"] = node
    return pod


def pod_findings(pod: dict[str, Any]) -> list[Any]:
    snap = snapshot(scheduler([]), [])
    snap.pods["af"] = [pod]
    return [
        f for f in diagnose(snap, Context(EngineConfig(), NamespaceLabel(), NOW)).findings if f.check == "pod"
    ]


@pytest.mark.parametrize(
    ("status", "node", "severity", "message"),
    [
        (  # the scheduler found no node
            {
                "phase": "Pending",
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": "0/1 nodes",
                    }
                ],
            },
            None,
            "problem",
            "pending: not scheduled (Unschedulable)",
        ),
        (
            {"phase": "Pending"},
            None,
            "warning",
            "pending: not scheduled yet (no node chosen, no PodScheduled condition)",
        ),
        (  # the kubelet is still creating the first container: nothing for a person to do yet
            {
                "phase": "Pending",
                "initContainerStatuses": [
                    {
                        "name": "wait-for-airflow-migrations",
                        "state": {"waiting": {"reason": "PodInitializing"}},
                    }
                ],
            },
            "node-1",
            "warning",
            "pending: scheduled on node-1, not started (wait-for-airflow-migrations: PodInitializing)",
        ),
        (  # an image that cannot be pulled needs a person
            {
                "phase": "Pending",
                "initContainerStatuses": [
                    {
                        "name": "wait-for-airflow-migrations",
                        "state": {
                            "waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}
                        },
                    }
                ],
            },
            "node-1",
            "problem",
            "pending: scheduled on node-1, not started (wait-for-airflow-migrations: ImagePullBackOff)",
        ),
    ],
)
def test_a_pod_whose_containers_never_started_is_pending_with_its_reason(
    status: dict[str, Any], node: str | None, severity: str, message: str
) -> None:
    """Never "past its init containers", never "waiting for a migration": it has not started."""
    [finding] = pod_findings(pod_with(status, node))
    assert finding.code == Code.POD_PENDING and finding.severity == severity
    assert finding.message == message
    assert finding.look_at == "kubectl describe pod -n af p-1" and not finding.fix
    if "message" in str(status):
        assert finding.evidence, "the scheduler's or kubelet's message is the evidence"


def test_finished_and_failed_pods_are_said_as_such() -> None:
    assert [f.message for f in pod_findings(pod_with({"phase": "Succeeded"}))] == [
        "1 Airflow pod(s) past their init containers: 1 finished"
    ]
    [failed] = pod_findings(pod_with({"phase": "Failed", "reason": "Evicted", "message": "low on memory"}))
    assert (failed.code, failed.severity, failed.message) == (
        Code.POD_FAILED,
        "warning",
        "failed (Evicted: low on memory)",
    )


def migration_job(status: dict[str, Any], suspend: bool = False) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "airflow-run-airflow-migrations", "namespace": "af", "uid": "u-1"},
        "spec": {
            "suspend": suspend,
            "template": {
                "metadata": {"labels": {"component": "run-airflow-migrations"}},
                "spec": {
                    "containers": [
                        {
                            "name": "run-airflow-migrations",
                            "image": "apache/airflow:3.0.2",
                            "args": ["bash", "-c", "exec airflow db migrate"],
                        }
                    ]
                },
            },
        },
        "status": status,
    }


def job_findings(job: dict[str, Any], pods: list[dict[str, Any]]) -> list[Any]:
    snap = snapshot(scheduler([]), [])
    snap.jobs = {"af": [job]}
    snap.pods["af"] = pods
    return [
        f for f in diagnose(snap, Context(EngineConfig(), NamespaceLabel(), NOW)).findings if f.check == "job"
    ]


def job_pod(phase: str) -> dict[str, Any]:
    pod = pod_with({"phase": phase}, None)
    pod["metadata"]["ownerReferences"] = [
        {"kind": "Job", "name": "airflow-run-airflow-migrations", "uid": "u-1"}
    ]
    return pod


def test_a_migration_job_says_whether_it_runs_has_not_started_or_is_suspended() -> None:
    """Never `ok` with "has not finished (0 active)": running means a pod runs."""
    [none] = job_findings(migration_job({}), [])
    assert (none.code, none.severity) == (Code.JOB_PENDING, "warning")
    assert none.message == "the migration Job has not started: no pod of it exists yet"
    [pending_pod] = job_findings(migration_job({"active": 1}), [job_pod("Pending")])
    assert pending_pod.message == (
        "the migration Job has not started: Pod/af/p-1 is pending: not scheduled yet (no node chosen, no "
        "PodScheduled condition)"
    )
    [running] = job_findings(
        migration_job({"active": 1, "startTime": "2026-12-04T11:50:00Z"}), [job_pod("Running")]
    )
    assert (running.code, running.severity) == (Code.JOB_RUNNING, "ok")
    assert running.message == "the migration Job is running: 1 pod(s) running for 10m"
    [suspended] = job_findings(migration_job({}, suspend=True), [])
    assert suspended.code == Code.JOB_PENDING and "suspended" in suspended.message
    assert suspended.fix == (
        "kubectl patch job -n af airflow-run-airflow-migrations --type=merge -p "
        '\'{"spec": {"suspend": false}}\''
    )


def application(phase: str, message: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "airflow", "namespace": "argocd"},
        "spec": {"destination": {"namespace": "af"}},
        "status": {
            "sync": {"status": "OutOfSync"},
            "health": {"status": "Progressing"},
            "operationState": {"phase": phase, "message": message, "startedAt": "2026-12-04T11:30:00Z"},
        },
    }


@pytest.mark.parametrize(
    ("phase", "message", "blocked", "job_running", "severity", "says"),
    [
        (
            "Running",
            "waiting for healthy state of apps/Deployment/s",
            True,
            False,
            "problem",
            "it creates the PostSync migration hook only once every workload is Healthy, and the Airflow "
            "pods wait for that migration: the deadlock. What keeps it: Pod/af/w-1 (waiting_without_step)",
        ),
        (
            "Running",
            "waiting for completion of hook batch/Job/airflow-run-airflow-migrations",
            True,
            False,
            "problem",
            "the migration Job has not started: no pod of it exists yet; the "
            "Airflow pods wait for the migration too. What keeps it: Pod/af/w-1 (waiting_without_step)",
        ),
        (  # the hook runs: the migration will happen, whatever else is wrong
            "Running",
            "waiting for completion of hook batch/Job/airflow-run-airflow-migrations",
            True,
            True,
            "warning",
            "the sync is running: Argo CD is waiting for completion of hook batch/Job/"
            "airflow-run-airflow-migrations; the migration Job is running: 1 pod(s) running",
        ),
        (
            "Running",
            "waiting for healthy state of apps/Deployment/s",
            False,
            False,
            "warning",
            "the sync is running",
        ),
        (
            "Failed",
            "one or more synchronization tasks completed unsuccessfully",
            False,
            False,
            "warning",
            "Failed",
        ),
        ("Succeeded", "successfully synced (all tasks run)", False, False, "ok", "last operation Succeeded"),
    ],
)
def test_an_argocd_sync_is_a_problem_only_while_something_here_blocks_the_migration(
    phase: str, message: str, blocked: bool, job_running: bool, severity: str, says: str
) -> None:
    snap = snapshot(scheduler([]), [])
    snap.pods["af"] = [waiting_pod("w-1")] if blocked else []
    snap.jobs = {"af": [migration_job({"active": 1})]}
    if job_running:
        snap.pods["af"].append(job_pod("Running"))
    snap.applications = [application(phase, message)]
    report = diagnose(snap, Context(EngineConfig(), NamespaceLabel(), NOW))
    [argo] = [f for f in report.findings if f.check == "argocd"]
    assert argo.severity == severity and says in argo.message, argo.message
    assert argo.evidence[0].startswith("sync OutOfSync, health Progressing, operation " + phase)
    if severity == "problem":
        assert argo.message.startswith(f"the sync is stuck: Argo CD is {message}; ")
        [waiting] = [f for f in report.findings if f.code == Code.WAITING_WITHOUT_STEP]
        assert argo.fix == waiting.fix, "the fix of what keeps it"
        assert report.likely_cause is waiting, "the Argo CD finding is a symptom"
    else:
        assert not argo.fix


# --- who fixes the caBundle ---------------------------------------------------------------------------------


def stale_bundle(annotations: dict[str, str], client_config: dict[str, Any], volumes: list[Any]) -> Snapshot:
    """A caBundle of one CA, a served certificate of another: the fix depends on who writes the bundle."""
    from app.tls.issue import issue, new_ca

    ca, other = new_ca("ca", 30, NOW), new_ca("other", 30, NOW)
    served = issue(ca, ["amw.amw.svc", "amw.example"], [], 300, NOW).cert_pem
    key = ("amw", "amw")
    configuration = {
        "metadata": {"name": "amw", "annotations": annotations},
        "webhooks": [
            {"name": "other.example.io", "clientConfig": {"url": "https://other.example/x"}},
            {
                "name": WEBHOOK_NAME,
                "clientConfig": {**client_config, "caBundle": base64.b64encode(other.cert_pem).decode()},
                "namespaceSelector": SELECTOR,
            },
        ],
    }
    deployment = {
        "metadata": {"name": "amw"},
        "spec": {"replicas": 2, "template": {"spec": {"volumes": volumes}}},
    }
    ready = [{"endpoints": [{"addresses": ["10.0.0.9"], "conditions": {"ready": True}}]}]
    return Snapshot(
        server_version=(1, 32),
        webhook_configurations=[configuration],
        services={key: {"metadata": {"name": "amw"}}},
        endpoint_slices={key: ready},
        webhook_deployments={key: [deployment]},
        served_certificates={"amw": ServedCertificate("the certificate in Secret amw/amw-tls", served)},
    )


SERVICE = {"service": {"namespace": "amw", "name": "amw"}}
LEADER = "\"$(kubectl get lease -n amw {lease} -o jsonpath='{{.spec.holderIdentity}}')\""


@pytest.mark.parametrize(
    ("annotations", "client_config", "volumes", "self_managed", "fix", "look_at"),
    [
        (  # selfManaged, its settings read from the webhook's ConfigMap: the Lease it names
            {},
            SERVICE,
            [{"name": "certs", "emptyDir": {}}],
            "amw-leader",
            "kubectl delete pod -n amw " + LEADER.format(lease="amw-leader"),
            "kubectl logs -n amw " + LEADER.format(lease="amw-leader"),
        ),
        (  # selfManaged without its ConfigMap (no permission): the chart's emptyDir, the chart's Lease name
            {},
            SERVICE,
            [{"name": "certs", "emptyDir": {}}],
            None,
            "kubectl delete pod -n amw " + LEADER.format(lease="amw-certs"),
            "kubectl logs -n amw " + LEADER.format(lease="amw-certs"),
        ),
        (  # secret mode from a Helm release: set the value again with helm
            {"meta.helm.sh/release-name": "amw", "meta.helm.sh/release-namespace": "amw"},
            SERVICE,
            [{"name": "certs", "secret": {"secretName": "amw-tls"}}],
            None,
            'helm upgrade -n amw amw "$CHART" --reuse-values --set '
            'tls.secret.caBundle="$(base64 < "$CERTS_DIR/ca.crt" | tr -d \'\\n\')"',
            "",
        ),
        (  # a URL webhook applied without Helm: patch the configuration, at the index of our webhook
            {},
            {"url": "https://amw.example:8443/mutate"},
            [],
            None,
            "kubectl patch mutatingwebhookconfiguration amw --type=json -p "
            '"[{\\"op\\": \\"add\\", \\"path\\": '
            '\\"/webhooks/1/clientConfig/caBundle\\", \\"value\\": \\"$(base64 < "$CERTS_DIR/ca.crt" | '
            "tr -d '\\n')\\\"}]\"",
            "",
        ),
        (  # cert-manager's cainjector writes it: look at the Certificate
            {"cert-manager.io/inject-ca-from": "amw/amw"},
            SERVICE,
            [{"name": "certs", "secret": {"secretName": "amw"}}],
            None,
            "",
            "kubectl describe certificate -n amw amw",
        ),
    ],
)
def test_a_stale_ca_bundle_gets_the_fix_of_whoever_writes_it(
    annotations: dict[str, str],
    client_config: dict[str, Any],
    volumes: list[Any],
    self_managed: str | None,
    fix: str,
    look_at: str,
) -> None:
    from app.config import SelfManagedTLSConfig

    tls = (
        SelfManagedTLSConfig(
            namespace="amw", secret_name="amw-tls", lease_name=self_managed, webhook_configuration_name="amw"
        )
        if self_managed
        else None
    )
    snap = stale_bundle(annotations, client_config, volumes)
    report = diagnose(snap, Context(EngineConfig(), NamespaceLabel(), NOW, self_managed=tls))
    [mismatch] = [f for f in report.findings if f.code == Code.CA_BUNDLE_MISMATCH]
    assert mismatch.fix == fix and mismatch.look_at == look_at
    assert report.fixes == ([fix] if fix else [])
    assert set(report.inputs) == {name for name in ("CHART", "CERTS_DIR") if f"${name}" in fix}


@pytest.mark.parametrize(
    ("annotations", "fix"),
    [
        ({}, 'kubectl patch mutatingwebhookconfiguration amw --type=json -p "[{\\"op\\": \\"remove\\", '
         '\\"path\\": \\"/webhooks/1/matchConditions\\"}]"'),
        ({"meta.helm.sh/release-name": "amw", "meta.helm.sh/release-namespace": "amw"},
         'helm upgrade -n amw amw "$CHART" --reuse-values --set webhook.matchConditions=false'),
    ],
)  # fmt: skip
def test_match_conditions_on_an_old_server_are_removed_by_whoever_installed_them(
    annotations: dict[str, str], fix: str
) -> None:
    snap = stale_bundle(annotations, {"url": "https://amw.example:8443/mutate"}, [])
    snap.server_version = (1, 27)
    snap.webhook_configurations[0]["webhooks"][1]["matchConditions"] = [{"name": "x", "expression": "true"}]
    report = diagnose(snap, Context(EngineConfig(), NamespaceLabel(), NOW))
    [warning] = [f for f in report.findings if f.code == Code.MATCH_CONDITIONS_UNSUPPORTED]
    assert warning.fix == fix


def test_a_certificate_for_a_wrong_ip_host_is_issued_again_with_ip() -> None:
    from app.tls.issue import issue, new_ca

    ca = new_ca("ca", 30, NOW)
    snap = webhook_snapshot(issue(ca, ["localhost"], [], 300, NOW).cert_pem, ca.cert_pem)
    snap.webhook_configurations[0]["webhooks"][0]["clientConfig"]["url"] = "https://10.1.2.3:8443/mutate"
    report = diagnose(snap, Context(EngineConfig(), NamespaceLabel(), NOW))
    [mismatch] = [f for f in report.findings if f.code == Code.CA_BUNDLE_MISMATCH]
    assert mismatch.message.endswith("is not valid for 10.1.2.3, the name the API server calls")
    assert mismatch.fix == 'airflow-migration-webhook certs --out-dir "$CERTS_DIR" --ip 10.1.2.3 > /dev/null'


# --- no webhook, the summary's sections ---------------------------------------------------------------------


def test_without_a_webhook_the_namespace_is_judged_against_the_configured_label() -> None:
    snap = snapshot(scheduler([]), [])
    snap.webhook_configurations = []
    label = NamespaceLabel(key="team/airflow", value="yes")
    report = diagnose(snap, Context(EngineConfig(), label, NOW))
    [missing, namespace] = report.problems
    assert missing.code == Code.WEBHOOK_MISSING and namespace.code == Code.NAMESPACE_NOT_SELECTED
    assert missing.fix.endswith(
        "--set webhook.namespaceLabel.key=team/airflow --set webhook.namespaceLabel.value=yes"
    )
    assert namespace.fix == "kubectl label namespace af team/airflow=yes"
    assert report.fixes == [missing.fix, namespace.fix]
    assert list(report.inputs) == ["CHART", "IMAGE_REPOSITORY", "IMAGE_TAG"]
    snap.namespaces["af"]["metadata"]["labels"] = {"team/airflow": "yes"}
    [namespace] = [
        f for f in diagnose(snap, Context(EngineConfig(), label, NOW)).findings if f.check == "namespace"
    ]
    assert namespace.severity == "ok" and "no webhook installed to select it yet" in namespace.message


def test_the_summary_says_where_to_look_what_to_set_then_what_to_run() -> None:
    snap = snapshot(scheduler([]), [])
    snap.webhook_configurations = []
    step = {"name": STEP_CONTAINER_NAME, "image": "apache/airflow:3.0.2"}
    failing = scheduler([step])
    failing["status"] = {
        "initContainerStatuses": [{"name": STEP_CONTAINER_NAME, "state": {"terminated": {"exitCode": 1}}}]
    }
    snap.pods["af"] = [failing]
    report = diagnose(snap, Context(EngineConfig(), NamespaceLabel(), NOW))
    table = render_table(report)
    order = [table.index(heading) for heading in ("Look at:", "Set first:", "Suggested fixes, in order:")]
    assert order == sorted(order), table
    summary = report.to_json()["summary"]
    assert summary["look_at"] == [f"kubectl logs -n af s-1 -c {STEP_CONTAINER_NAME}"]
    assert summary["fixes"][0].startswith('helm install airflow-migration-webhook "$CHART"')
    assert set(summary["inputs"]) == {"CHART", "IMAGE_REPOSITORY", "IMAGE_TAG"}


# --- no access ----------------------------------------------------------------------------------------------


def test_the_rbac_rules_are_yaml_one_per_read_required_first() -> None:
    import yaml

    from app.doctor.gather import READS, rbac_rules

    lines = rbac_rules()
    optional_at = lines.index("# optional: doctor carries on without them, and says so")
    assert lines[0] == "# required"
    rules = [yaml.safe_load(line)[0] for line in lines if line.startswith("- ")]
    assert [(r["apiGroups"][0], r["resources"][0], tuple(r["verbs"])) for r in rules] == [
        (read.group, read.resource, read.verbs) for read in READS
    ]
    assert all(" # without it: " in line for line in lines[optional_at + 1 :])
    assert len(lines[optional_at + 1 :]) == len([read for read in READS if read.lost])


def test_why_the_api_server_cannot_be_reached_in_plain_words() -> None:
    import socket
    import ssl

    import urllib3

    from app.doctor.gather import unreachable

    def wrapped(cause: BaseException) -> BaseException:
        """As urllib3 wraps a failed connection: MaxRetryError(reason=NewConnectionError from the OSError)."""
        try:
            try:
                raise cause
            except BaseException as inner:
                raise urllib3.exceptions.NewConnectionError(
                    None, "Failed to establish a new connection"
                ) from inner  # type: ignore[arg-type]
        except urllib3.exceptions.NewConnectionError as error:
            return urllib3.exceptions.MaxRetryError(None, "/version/", error)  # type: ignore[arg-type]

    untrusted = ssl.SSLCertVerificationError(1, "certificate verify failed")
    untrusted.verify_message = "self-signed certificate"
    for cause, said in (
        (ConnectionRefusedError(111, "Connection refused"), "connection refused"),
        (
            socket.gaierror(-2, "Name or service not known"),
            "the host name does not resolve (Name or service not known)",
        ),
        (TimeoutError("timed out"), "no answer (timed out)"),
        (OSError(101, "Network is unreachable"), "network is unreachable"),
        (untrusted, "its TLS certificate is not trusted (self-signed certificate)"),
    ):
        assert str(unreachable("https://api.example:6443", wrapped(cause))) == (
            f"cannot reach the API server at https://api.example:6443: {said}"
        )


@pytest.mark.parametrize(
    ("render", "expected"),
    [
        ("community-airflow-8.9.0-defaults", Reason.RELEASE_MIGRATES_WITHOUT_HOOK),
        ("community-airflow-8.9.0-runasjob", Reason.INJECTED),
    ],
)
def test_workloads_are_judged_with_their_release_as_reconcile_judges_them(
    render: str, expected: Reason
) -> None:
    """The community chart at its defaults migrates in a Deployment of its own, without a hook: its
    scheduler without the step is as it should be, not a problem; with runAsJob (a hook Job) it is."""
    text = (CHART_RENDERS / f"{render}.yaml").read_text()
    objects = [doc for doc in yaml.safe_load_all(text) if isinstance(doc, dict) and doc.get("kind")]
    workloads = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
    for obj in objects:
        obj["metadata"]["namespace"] = "af"
    snap = Snapshot(
        server_version=(1, 32),
        namespaces={"af": {"metadata": {"name": "af", "labels": {"airflow-migration-webhook/inject": "on"}}}},
        workloads={"af": workloads},
        jobs={"af": [o for o in objects if o["kind"] == "Job"]},
    )
    findings = check_workloads(snap, "af", Context(EngineConfig(), NamespaceLabel(), NOW))
    [scheduler] = [f for f in findings if f.subject.endswith("/airflow-scheduler")]
    assert scheduler.code == expected.value, scheduler
    assert (scheduler.severity == Severity.PROBLEM) == (expected == Reason.INJECTED), scheduler
