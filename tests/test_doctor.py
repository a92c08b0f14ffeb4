"""`doctor` on a real kube-apiserver (the end-to-end tier), one test per scenario of issue 15.

No kubelet runs here: pods are created from the stored templates and their status is written through the
`status` subresource the way a kubelet writes it (init container states, waiting reasons, exit codes). Pod
logs need a kubelet, so doctor must say "logs unavailable" and carry on; everything else is real.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.engine.names import STEP_CONTAINER_NAME
from app.tls.issue import new_ca
from tests.cluster import Cluster
from tests.servers import WebhookProcess, free_port, start_webhook
from tests.support import CHART_RENDERS, REPO
from tests.test_chart import sets
from tests.test_e2e import (
    certs_command,
    injected,
    labelled_namespace,
    probe,
    register,
    secret_tls,
    stored,
    wait_until_injecting,
)

pytestmark = pytest.mark.e2e
LABEL = "doctor/inject"
WEBHOOK = "amw-doctor"


@pytest.fixture(scope="module")
def webhook(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebhookProcess]:
    """The chart as users install it (URL mode, caBundle of a `certs` CA) in front of the real server."""
    work = tmp_path_factory.mktemp("doctor-webhook")
    ca_bundle = certs_command(work / "certs")
    handle = start_webhook(work, cert_dir=work / "certs")
    register(cluster, WEBHOOK, WEBHOOK, LABEL, *secret_tls(ca_bundle, handle.url))
    labelled_namespace(cluster, "doc-probe", LABEL)
    wait_until_injecting(cluster, "doc-probe")
    yield handle
    handle.stop()


def doctor(cluster: Cluster, *args: str) -> tuple[int, dict[str, Any], str]:
    """Run the command as a user would; return the exit code, the JSON report and the table."""
    base = [sys.executable, "-m", "app", "doctor", "--kubeconfig", str(cluster.kubeconfig), *args]
    as_json = subprocess.run([*base, "-o", "json"], capture_output=True, text=True, cwd=REPO, timeout=120)
    as_table = subprocess.run(base, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert as_json.returncode == as_table.returncode, (as_json.stderr, as_table.stderr)
    assert as_json.returncode in (0, 1), as_json.stderr
    return as_json.returncode, json.loads(as_json.stdout), as_table.stdout


def found(report: dict[str, Any], code: str, severity: str | None = None) -> list[dict[str, Any]]:
    return [f for f in report["findings"] if f["code"] == code and severity in (None, f["severity"])]


def pod_from(cluster: Cluster, workload: dict[str, Any], name: str) -> dict[str, Any]:
    """A pod as the workload's controller would create it (no controller-manager runs here)."""
    template = copy.deepcopy(workload["spec"]["template"])
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {**template["metadata"], "name": name}}
    pod["spec"] = template["spec"]
    namespace = workload["metadata"]["namespace"]
    # the ServiceAccount admission wants the account the (absent) controller-manager would have made
    account = pod["spec"].get("serviceAccountName") or "default"
    cluster.kubectl("create", "serviceaccount", account, "-n", namespace, check=False)
    cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(pod))
    return json.loads(cluster.kubectl("get", "pod", name, "-n", namespace, "-o", "json").stdout)


def write_status(
    cluster: Cluster, pod: dict[str, Any], init_states: list[dict[str, Any]], phase: str
) -> None:
    """What a kubelet writes: one status per init container, in order, through the status subresource."""
    now = dt.datetime.now(dt.UTC)
    spec = pod["spec"]
    statuses = [
        {
            "name": container["name"],
            "image": container["image"],
            "imageID": "",
            "ready": "terminated" in state and state["terminated"].get("exitCode") == 0,
            "restartCount": state.pop("restartCount", 0),
            **state,
        }
        for container, state in zip(spec.get("initContainers", []), init_states, strict=False)
    ]
    status = {
        "phase": phase,
        "startTime": (now - dt.timedelta(minutes=25)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "initContainerStatuses": statuses,
    }
    cluster.kubectl(
        "patch",
        "pod",
        pod["metadata"]["name"],
        "-n",
        pod["metadata"]["namespace"],
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )


def done() -> dict[str, Any]:
    return {"state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}


def ago(minutes: int) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def official_scheduler(namespace: str) -> dict[str, Any]:
    """The official chart's scheduler Deployment, with its wait-for-airflow-migrations init container."""
    for doc in yaml.safe_load_all((CHART_RENDERS / "apache-airflow-1.18.0-defaults.yaml").read_text()):
        if doc and doc["kind"] == "Deployment" and doc["metadata"]["name"] == "airflow-scheduler":
            doc["metadata"]["namespace"] = namespace
            return doc
    raise AssertionError("no scheduler in the render")


def apply(cluster: Cluster, obj: dict[str, Any]) -> dict[str, Any]:
    namespace = obj["metadata"]["namespace"]
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj))
    return stored(cluster, namespace, obj["kind"], obj["metadata"]["name"])


# --- scenarios ---------------------------------------------------------------------------------------------


def test_a_healthy_injected_release(cluster: Cluster, webhook: WebhookProcess) -> None:
    labelled_namespace(cluster, "doc-healthy", LABEL)
    deployment = apply(cluster, probe("doc-healthy", "scheduler"))
    assert injected(deployment)
    pod = pod_from(cluster, deployment, "scheduler-1")
    write_status(cluster, pod, [done()], "Running")

    code, report, table = doctor(cluster, "--namespace", "doc-healthy")
    assert code == 0, table
    assert report["version"] == 1 and report["namespaces"] == ["doc-healthy"]
    assert found(report, "webhook_found", "ok") and found(report, "ca_bundle_ok", "ok")
    assert found(report, "namespace_selected", "ok")
    [workload] = found(report, "up_to_date", "ok")
    assert workload["subject"] == "Deployment/doc-healthy/scheduler"
    assert found(report, "pod_ready", "ok")
    assert report["summary"] == {"problems": 0, "warnings": 0, "likely_cause": None, "fixes": []}
    assert "No problem found." in table


def test_a_namespace_that_is_not_labelled(cluster: Cluster, webhook: WebhookProcess) -> None:
    labelled_namespace(cluster, "doc-unlabelled", None)
    assert not injected(apply(cluster, probe("doc-unlabelled", "scheduler")))

    code, report, table = doctor(cluster, "--namespace", "doc-unlabelled")
    assert code == 1
    cause = report["summary"]["likely_cause"]
    assert cause["code"] == "namespace_not_selected" and cause["severity"] == "problem"
    label_fix = f"kubectl label namespace doc-unlabelled {LABEL}=enabled"
    assert report["summary"]["fixes"][0] == label_fix
    assert found(report, "injected", "problem"), "the workload lacks the step the webhook would add"
    assert "Likely cause: Namespace/doc-unlabelled" in table and label_fix in table


def test_workloads_created_while_the_webhook_was_down(cluster: Cluster, tmp_path: Path) -> None:
    """failurePolicy Ignore (the chart's default) and a webhook that does not answer: the API server stores
    the Deployment without the step. doctor names it, and its suggested command fixes it."""
    ca_bundle = certs_command(tmp_path / "certs")
    port = free_port()
    down = f"https://127.0.0.1:{port}/mutate"  # nothing listens there
    register(cluster, "amw-down", "amw-down", "doctor-down/inject", *secret_tls(ca_bundle, down))
    try:
        labelled_namespace(cluster, "doc-down", "doctor-down/inject")
        assert not injected(apply(cluster, probe("doc-down", "scheduler")))

        code, report, _ = doctor(cluster, "--namespace", "doc-down", "--webhook", "amw-down")
        assert code == 1
        assert found(report, "namespace_selected", "ok")
        [unread] = found(report, "certificate_unread", "warning")
        assert "cannot connect" in unread["evidence"][0]
        [missing] = found(report, "injected", "problem")
        assert missing["subject"] == "Deployment/doc-down/scheduler"
        assert report["summary"]["likely_cause"]["code"] == "injected"
        fix = missing["fix"]
        assert fix == (
            "airflow-migration-webhook reconcile --namespace doc-down "
            "--namespace-label-key doctor-down/inject --namespace-label-value enabled"
        )
        # the suggested command, run as printed: the reconcile patch goes through the API server
        (tmp_path / "up").mkdir()
        handle = start_webhook(
            tmp_path / "up", cert_dir=tmp_path / "certs", port=int(down.split(":")[2].split("/")[0])
        )
        try:
            command = [sys.executable, "-m", "app", *fix.split()[1:], "--kubeconfig", str(cluster.kubeconfig)]
            subprocess.run(command, check=True, capture_output=True, cwd=REPO, timeout=120)
        finally:
            handle.stop()
        assert injected(stored(cluster, "doc-down", "Deployment", "scheduler"))
        code, report, _ = doctor(cluster, "--namespace", "doc-down", "--webhook", "amw-down")
        assert found(report, "up_to_date", "ok") and not found(report, "injected")
    finally:
        cluster.kubectl("delete", "mutatingwebhookconfiguration", "amw-down", check=False)


def test_a_stale_ca_bundle(cluster: Cluster, webhook: WebhookProcess, tmp_path: Path) -> None:
    import base64

    other = base64.b64encode(new_ca("someone-else", 2, dt.datetime.now(dt.UTC)).cert_pem).decode()
    register(cluster, "amw-stale", "amw-stale", "doctor-stale/inject", *secret_tls(other, webhook.url))
    try:
        labelled_namespace(cluster, "doc-stale", "doctor-stale/inject")
        code, report, _ = doctor(cluster, "--namespace", "doc-stale", "--webhook", "amw-stale")
        assert code == 1
        [mismatch] = found(report, "ca_bundle_mismatch", "problem")
        assert "does not verify" in mismatch["message"] and "someone-else" in mismatch["evidence"][1]
        assert report["summary"]["likely_cause"]["code"] == "ca_bundle_mismatch"
    finally:
        cluster.kubectl("delete", "mutatingwebhookconfiguration", "amw-stale", check=False)


def test_webhook_endpoints_not_ready(cluster: Cluster, tmp_path: Path) -> None:
    """The chart in Service mode: its Service exists, no pod is ready behind it (none runs here)."""
    ca_bundle = certs_command(tmp_path / "certs")
    register(
        cluster,
        "amw-noep",
        "amw-noep",
        "doctor-noep/inject",
        *sets("tls.mode=secret", "tls.secret.name=amw-tls", f"tls.secret.caBundle={ca_bundle}"),
    )
    try:
        labelled_namespace(cluster, "doc-noep", "doctor-noep/inject")
        code, report, _ = doctor(cluster, "--namespace", "doc-noep", "--webhook", "amw-noep")
        assert code == 1
        [not_ready] = found(report, "endpoints_not_ready", "problem")
        assert not_ready["subject"] == "Service/amw-noep/amw-noep"
        assert "failurePolicy Ignore" in not_ready["message"]
        assert report["summary"]["likely_cause"]["code"] == "endpoints_not_ready"
    finally:
        cluster.kubectl("delete", "mutatingwebhookconfiguration", "amw-noep", check=False)


def test_a_migrate_step_that_failed(cluster: Cluster, webhook: WebhookProcess) -> None:
    labelled_namespace(cluster, "doc-failed", LABEL)
    deployment = apply(cluster, probe("doc-failed", "scheduler"))
    pod = pod_from(cluster, deployment, "scheduler-1")
    failed = {
        "restartCount": 3,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 3, "reason": "Error"}},
    }
    write_status(cluster, pod, [failed], "Pending")

    code, report, table = doctor(cluster, "--namespace", "doc-failed")
    assert code == 1
    [step] = found(report, "step_failed", "problem")
    assert step["subject"] == "Pod/doc-failed/scheduler-1"
    assert "exit code 3" in step["message"] and "CrashLoopBackOff" in step["message"]
    assert step["evidence"] == [
        f"{STEP_CONTAINER_NAME}: logs unavailable (no kubelet answered, or no pods/log permission)"
    ]
    assert step["fix"] == f"kubectl logs -n doc-failed scheduler-1 -c {STEP_CONTAINER_NAME}"
    assert "logs unavailable" in table


def test_pods_stuck_in_the_wait_container_without_the_step(cluster: Cluster, webhook: WebhookProcess) -> None:
    labelled_namespace(cluster, "doc-waiting", None)
    deployment = apply(cluster, official_scheduler("doc-waiting"))
    assert not injected(deployment)
    pod = pod_from(cluster, deployment, "airflow-scheduler-1")
    waiting = {"state": {"running": {"startedAt": ago(20)}}}
    write_status(cluster, pod, [waiting], "Pending")

    code, report, _ = doctor(cluster, "--namespace", "doc-waiting", "--release", "airflow")
    assert code == 1
    [stuck] = found(report, "waiting_without_step", "problem")
    assert stuck["subject"] == "Pod/doc-waiting/airflow-scheduler-1"
    # counted from the pod's start (25 minutes ago), not from the current attempt (20)
    assert "wait-for-airflow-migrations for 25m" in stuck["message"]
    assert stuck[
        "fix"
    ] == "airflow-migration-webhook reconcile --namespace doc-waiting --namespace-label-key " + (
        f"{LABEL} --namespace-label-value enabled"
    )
    # --release narrows to that release: another release's objects are not reported
    _, other, _ = doctor(cluster, "--namespace", "doc-waiting", "--release", "someone-else")
    assert not found(other, "waiting_without_step") and found(other, "no_airflow", "warning")


APPLICATION_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "applications.argoproj.io"},
    "spec": {
        "group": "argoproj.io",
        "scope": "Namespaced",
        "names": {"kind": "Application", "plural": "applications", "singular": "application"},
        "versions": [
            {
                "name": "v1alpha1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                },
            }
        ],
    },
}


def test_an_argocd_application_stuck_on_a_post_sync_hook(cluster: Cluster, webhook: WebhookProcess) -> None:
    labelled_namespace(cluster, "doc-argo", None)
    apply(cluster, official_scheduler("doc-argo"))
    _, before, _ = doctor(cluster, "--namespace", "doc-argo")
    assert any("Argo CD is not installed" in note for note in before["notes"]), "a missing CRD is a note"

    cluster.kubectl("apply", "-f", "-", input=json.dumps(APPLICATION_CRD))
    cluster.kubectl("wait", "--for=condition=Established", "crd/applications.argoproj.io", "--timeout=60s")
    cluster.kubectl("create", "namespace", "argocd", check=False)
    hook = "waiting for completion of hook batch/Job/airflow-run-airflow-migrations"
    application = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "airflow", "namespace": "argocd"},
        "spec": {"destination": {"namespace": "doc-argo", "server": "https://kubernetes.default.svc"}},
        "status": {
            "sync": {"status": "OutOfSync"},
            "health": {"status": "Progressing"},
            "operationState": {"phase": "Running", "message": hook},
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(application))
    code, report, _ = doctor(cluster, "--namespace", "doc-argo")
    assert code == 1
    [waiting] = found(report, "argocd_waiting", "warning")
    assert waiting["subject"] == "Application/argocd/airflow" and hook in waiting["message"]
    assert not any("Argo CD" in note for note in report["notes"])
    assert report["summary"]["likely_cause"]["code"] == "namespace_not_selected", "the cause, not the symptom"


def test_no_cluster_access_is_a_usage_error(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "nowhere"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{free_port()}"}}],
                "users": [{"name": "u", "user": {"token": "x"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "app", "doctor", "--namespace", "x", "--kubeconfig", str(kubeconfig)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: cannot read the cluster:") and "Traceback" not in result.stderr
    assert "doctor needs read access" in result.stderr


def test_all_opted_in_means_the_namespaces_the_webhook_selects(
    cluster: Cluster, webhook: WebhookProcess
) -> None:
    """The webhook's namespaceSelector decides (here a non-default label), not the default opt-in label."""
    _, report, _ = doctor(cluster, "--all-opted-in")
    assert {"doc-probe", "doc-healthy", "doc-failed"} <= set(report["namespaces"])
    assert not {"doc-unlabelled", "doc-waiting", "doc-argo", "doc-down", "doc-stale"} & set(
        report["namespaces"]
    )
