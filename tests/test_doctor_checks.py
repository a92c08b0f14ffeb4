"""The pure half of doctor: label selectors, the order of findings and the summary, on hand-made snapshots
(the scenarios on a real API server are in tests/test_doctor.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from app.config import NamespaceLabel
from app.doctor.checks import Context, diagnose, selects
from app.doctor.findings import Code, render_table
from app.doctor.gather import Snapshot
from app.engine import EngineConfig
from app.engine.names import STEP_CONTAINER_NAME, WEBHOOK_NAME

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
        served_certificates={"amw": "cannot connect"},
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


def test_a_failed_step_is_the_likely_cause_with_its_log_and_one_fix() -> None:
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
    assert report.fixes == [f"kubectl logs -n af s-1 -c {STEP_CONTAINER_NAME}"]
    assert [f.code for f in report.warnings] == [Code.CERTIFICATE_UNREAD, Code.NO_AIRFLOW]
    table = render_table(report)
    assert "Likely cause: Pod/af/s-1" in table and "1 problem(s), 2 warning(s)" in table


def test_a_pod_that_finished_its_init_containers_is_counted_not_listed() -> None:
    step = {"name": STEP_CONTAINER_NAME, "image": "apache/airflow:3.0.2"}
    snap = snapshot(
        scheduler([step]), [{"name": STEP_CONTAINER_NAME, "state": {"terminated": {"exitCode": 0}}}]
    )
    report = diagnose(snap, Context(EngineConfig(), NamespaceLabel(), NOW))
    assert [f.code for f in report.findings if f.check == "pod"] == [Code.POD_READY]
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
        server_version=(1, 32), webhook_configurations=[configuration], served_certificates={"amw": served}
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
        (2, "kubectl -n amw describe service amw-airflow-migration-webhook"),
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
        services={key: {"metadata": {"name": key[1]}}},
        endpoint_slices={key: []},
        webhook_deployments={key: [deployment]},
        served_certificates={"amw": "no serving Secret found"},
    )
    report = diagnose(snap, Context(EngineConfig(), NamespaceLabel(), NOW))
    [finding] = [f for f in report.findings if f.code == Code.ENDPOINTS_NOT_READY]
    assert finding.fix == fix
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
    assert report.fixes[0] == f"kubectl logs -n af s-1 -c {STEP_CONTAINER_NAME}"
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
