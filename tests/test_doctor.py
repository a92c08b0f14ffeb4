"""`doctor` on a real kube-apiserver (the end-to-end tier), one test per scenario of issues 15 and 23.

No kubelet, scheduler or controller runs here: pods are created from the stored templates and their status is
written through the `status` subresource the way a kubelet or the scheduler writes it (init container states,
waiting reasons, exit codes, PodScheduled=False). Pod logs need a kubelet, so doctor must say "logs
unavailable" and carry on. Argo CD cannot run here: its Application is written as Argo CD writes it (the
operation's phase and message, the resources' health). Everything else is real, and the fixes doctor prints
are run as printed (bash, with kubectl, helm and the project's command on PATH).

AMW_DOCTOR_TRANSCRIPTS=DIR writes every table doctor printed to DIR (docs/troubleshooting.md quotes them).
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.engine.names import STEP_CONTAINER_NAME
from app.tls.issue import new_ca
from tests.cluster import Cluster, write_kubeconfig
from tests.servers import WebhookProcess, free_port, start_webhook
from tests.support import CHART_RENDERS, REPO
from tests.test_chart import CHART, sets
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
    """Run the command as a user would; return the exit code, the JSON report and the table. Whatever the
    scenario, nothing reads like Python (no dict or list reprs) and the JSON says what the table says."""
    base = [sys.executable, "-m", "app", "doctor", "--kubeconfig", str(cluster.kubeconfig), *args]
    # both at once: most of a run is importing the Kubernetes client, and the tier runs on 2 cores
    runs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
        for command in ([*base, "-o", "json"], base)
    ]
    (json_out, json_err), (table, table_err) = (run.communicate(timeout=120) for run in runs)
    codes = [run.returncode for run in runs]
    assert codes[0] == codes[1], (json_err, table_err)
    assert codes[0] in (0, 1), json_err
    report = json.loads(json_out)
    python = re.compile(r"[{\[]'|'[}\]]")  # {'key': ...} or ['item', ...]
    assert not python.search(table), table
    for section, commands in (
        ("Look at:", report["summary"]["look_at"]),
        ("Suggested fixes", report["summary"]["fixes"]),
    ):
        assert (section in table) is bool(commands), table
        assert all(f"  {command}\n" in table for command in commands), table
    if os.environ.get("AMW_DOCTOR_TRANSCRIPTS"):
        test = os.environ.get("PYTEST_CURRENT_TEST", "doctor").split("::")[-1].split(" ")[0]
        folder = Path(os.environ["AMW_DOCTOR_TRANSCRIPTS"])
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / f"{test}.txt").open("a") as transcript:
            transcript.write(f"$ airflow-migration-webhook doctor {' '.join(args)}\n{table}\n")
    return codes[0], report, table


def run_as_printed(cluster: Cluster, command: str, **inputs: str) -> subprocess.CompletedProcess[str]:
    """A command doctor printed, pasted into bash: the cluster's kubeconfig, the project's command, kubectl
    and helm on PATH, and the values only the user knows (the summary's `inputs`) set."""
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "PATH": f"{REPO / '.venv' / 'bin'}:{REPO / '.cache' / 'bin'}:{os.environ['PATH']}",
        **inputs,
    }
    result = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, f"{command}\n{result.stdout}{result.stderr}"
    return result


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
    cluster: Cluster,
    pod: dict[str, Any],
    init_states: list[dict[str, Any]],
    phase: str,
    conditions: list[dict[str, Any]] | None = None,
) -> None:
    """What a kubelet writes: one status per init container, in order, through the status subresource
    (and the scheduler's conditions, when given)."""
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
    status: dict[str, Any] = {"phase": phase}
    if statuses:  # a kubelet has started the pod
        status["startTime"] = (now - dt.timedelta(minutes=25)).strftime("%Y-%m-%dT%H:%M:%SZ")
        status["initContainerStatuses"] = statuses
    if conditions:
        status["conditions"] = conditions
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


def official(namespace: str, kind: str = "Deployment", name: str = "airflow-scheduler") -> dict[str, Any]:
    """An object of the official chart's render: its workloads have the wait-for-airflow-migrations init
    container; its migration Job is a post-install hook."""
    for doc in yaml.safe_load_all((CHART_RENDERS / "apache-airflow-1.18.0-defaults.yaml").read_text()):
        if doc and doc["kind"] == kind and doc["metadata"]["name"] == name:
            doc["metadata"]["namespace"] = namespace
            return dict(doc)
    raise AssertionError(f"no {kind} {name} in the render")


def official_scheduler(namespace: str) -> dict[str, Any]:
    return official(namespace)


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
    assert found(report, "webhook_found", "ok") and found(report, "namespace_selected", "ok")
    [bundle] = found(report, "ca_bundle_ok", "ok")  # URL mode: the certificate a TLS handshake got
    assert bundle["message"].startswith(
        f"caBundle verifies the certificate served at https://127.0.0.1:{webhook.port}, valid until "
    )
    [workload] = found(report, "up_to_date", "ok")
    assert workload["subject"] == "Deployment/doc-healthy/scheduler"
    [ready] = found(report, "pod_ready", "ok")
    assert ready["message"] == "1 Airflow pod(s) past their init containers: 1 running"
    assert report["summary"] == {
        "problems": 0,
        "warnings": 0,
        "likely_cause": None,
        "fixes": [],
        "look_at": [],
        "inputs": {},
    }
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
        assert unread["evidence"] == [f"cannot connect to 127.0.0.1:{port} from here: connection refused"]
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
        handle = start_webhook(tmp_path / "up", cert_dir=tmp_path / "certs", port=port)
        try:
            run_as_printed(cluster, fix)
        finally:
            handle.stop()
        assert injected(stored(cluster, "doc-down", "Deployment", "scheduler"))
        code, report, _ = doctor(cluster, "--namespace", "doc-down", "--webhook", "amw-down")
        assert found(report, "up_to_date", "ok") and not found(report, "injected")
    finally:
        cluster.kubectl("delete", "mutatingwebhookconfiguration", "amw-down", check=False)


def test_a_stale_ca_bundle_gets_a_command_that_sets_it_again(
    cluster: Cluster, webhook: WebhookProcess, tmp_path: Path
) -> None:
    """A webhook reached by URL whose configuration was applied without Helm (`helm template`, GitOps): the
    caBundle is a value someone set, so the fix sets it again, with kubectl, from the CA in the user's certs
    folder (an input the summary names). Run as printed, it makes the caBundle verify."""
    other = base64.b64encode(new_ca("someone-else", 2, dt.datetime.now(dt.UTC)).cert_pem).decode()
    register(cluster, "amw-stale", "amw-stale", "doctor-stale/inject", *secret_tls(other, webhook.url))
    try:
        labelled_namespace(cluster, "doc-stale", "doctor-stale/inject")
        code, report, table = doctor(cluster, "--namespace", "doc-stale", "--webhook", "amw-stale")
        assert code == 1
        [mismatch] = found(report, "ca_bundle_mismatch", "problem")
        assert mismatch["message"].startswith(
            f"the caBundle does not verify the certificate served at https://127.0.0.1:{webhook.port}:"
        )
        assert "someone-else" in mismatch["evidence"][1]
        assert report["summary"]["likely_cause"]["code"] == "ca_bundle_mismatch"
        assert mismatch["fix"].startswith("kubectl patch mutatingwebhookconfiguration amw-stale --type=json")
        assert '"$CERTS_DIR/ca.crt"' in mismatch["fix"]
        assert list(report["summary"]["inputs"]) == ["CERTS_DIR"]
        assert "Set first: values only you know" in table and "  CERTS_DIR: the folder holding" in table

        run_as_printed(cluster, mismatch["fix"], CERTS_DIR=str(webhook.cert_dir))
        code, report, _ = doctor(cluster, "--namespace", "doc-stale", "--webhook", "amw-stale")
        assert code == 0 and found(report, "ca_bundle_ok", "ok")
    finally:
        cluster.kubectl("delete", "mutatingwebhookconfiguration", "amw-stale", check=False)


def certs_for(out_dir: Path, *names: str) -> None:
    """The project's `certs` command, as a user runs it for a Service's DNS names."""
    dns = [arg for name in names for arg in ("--dns", name)]
    command = [sys.executable, "-m", "app", "certs", "--out-dir", str(out_dir), *dns]
    subprocess.run(command, check=True, capture_output=True, cwd=REPO, timeout=60)


def test_service_mode_secret_tls_reads_the_secret_and_says_so(cluster: Cluster, tmp_path: Path) -> None:
    """The chart in Service mode with tls.mode=secret: no ready endpoint (no pod runs here), and the
    caBundle is checked against the certificate in the Secret the Deployment mounts, which the message
    names (the pods serve it; doctor cannot reach them)."""
    certs_for(tmp_path / "certs", "amw-noep.amw-noep.svc")
    ca_bundle = base64.b64encode((tmp_path / "certs" / "ca.crt").read_bytes()).decode()
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
        assert not_ready["fix"] == "", "nothing doctor knows brings a pod back that is not scaled to 0"
        assert not_ready["look_at"] == (
            "kubectl describe pods -n amw-noep "
            "-l app.kubernetes.io/instance=amw-noep,app.kubernetes.io/name=airflow-migration-webhook"
        )
        assert report["summary"]["likely_cause"]["code"] == "endpoints_not_ready"
        [unread] = found(report, "certificate_unread", "warning")
        assert "no serving Secret found in amw-noep (looked at amw-tls, amw-noep-tls)" in unread["evidence"]

        cluster.kubectl(
            "create", "secret", "tls", "amw-tls", "-n", "amw-noep",
            "--cert", str(tmp_path / "certs" / "tls.crt"), "--key", str(tmp_path / "certs" / "tls.key"),
        )  # fmt: skip
        _, report, _ = doctor(cluster, "--namespace", "doc-noep", "--webhook", "amw-noep")
        [bundle] = found(report, "ca_bundle_ok", "ok")
        assert bundle["message"].startswith(
            "caBundle verifies the certificate in Secret amw-noep/amw-tls (which the webhook's pods serve), "
            "valid until "
        )
    finally:
        cluster.kubectl("delete", "mutatingwebhookconfiguration", "amw-noep", check=False)


def test_a_helm_release_in_secret_mode_gets_helm_upgrade_then_a_new_serving_pair(
    cluster: Cluster, tmp_path: Path
) -> None:
    """`helm install` in secret mode with a caBundle from another CA, and a serving certificate for the wrong
    name: doctor's fixes, run as printed with the inputs it names (the chart, the certs folder), first set
    the caBundle through `helm upgrade`, then issue a pair for the Service's name into the Secret."""
    if not cluster.modern:
        pytest.skip(
            "helm install of the chart's defaults needs a current server (policy/v1, matchConditions)"
        )
    certs_command(tmp_path / "certs")  # localhost and 127.0.0.1 only: not the Service's name
    other = base64.b64encode(new_ca("someone-else", 2, dt.datetime.now(dt.UTC)).cert_pem).decode()
    cluster.kubectl("create", "namespace", "amw-helm")
    cluster.kubectl(
        "create", "secret", "tls", "amw-helm-tls", "-n", "amw-helm",
        "--cert", str(tmp_path / "certs" / "tls.crt"), "--key", str(tmp_path / "certs" / "tls.key"),
    )  # fmt: skip
    cluster.run_tool(
        "helm", "install", "amw-helm", str(CHART), "-n", "amw-helm",
        *sets(
            "tls.mode=secret", "tls.secret.name=amw-helm-tls", f"tls.secret.caBundle={other}",
            "webhook.namespaceLabel.key=doctor-helm/inject",
        ),
    )  # fmt: skip
    inputs = {"CHART": str(CHART), "CERTS_DIR": str(tmp_path / "certs")}
    try:
        labelled_namespace(cluster, "doc-helm", "doctor-helm/inject")
        doctor_args = ("--namespace", "doc-helm", "--webhook", "amw-helm-airflow-migration-webhook")
        _, report, _ = doctor(cluster, *doctor_args)
        [mismatch] = found(report, "ca_bundle_mismatch", "problem")
        assert mismatch["message"] == (
            "the caBundle does not verify the certificate in Secret amw-helm/amw-helm-tls (which the "
            "webhook's pods serve): the API server cannot call the webhook (tls.mode secret)"
        )
        assert mismatch["fix"] == (
            'helm upgrade -n amw-helm amw-helm "$CHART" --reuse-values --set '
            'tls.secret.caBundle="$(base64 < "$CERTS_DIR/ca.crt" | tr -d \'\\n\')"'
        )
        assert set(report["summary"]["inputs"]) == {"CHART", "CERTS_DIR"}
        # no pod is ready here (no kubelet): the API server can call nothing, which comes first
        assert report["summary"]["likely_cause"]["code"] == "endpoints_not_ready"
        assert report["summary"]["fixes"] == [mismatch["fix"]]
        run_as_printed(cluster, mismatch["fix"], **inputs)

        _, report, _ = doctor(cluster, *doctor_args)
        [wrong_name] = found(report, "ca_bundle_mismatch", "problem")
        assert "is not valid for amw-helm-airflow-migration-webhook.amw-helm.svc" in wrong_name["message"]
        assert wrong_name["fix"].startswith(
            'airflow-migration-webhook certs --out-dir "$CERTS_DIR" '
            "--dns amw-helm-airflow-migration-webhook.amw-helm.svc > /dev/null && "
            "kubectl create secret tls amw-helm-tls -n amw-helm"
        )
        run_as_printed(cluster, wrong_name["fix"], **inputs)

        _, report, _ = doctor(cluster, *doctor_args)
        assert found(report, "ca_bundle_ok", "ok") and not found(report, "ca_bundle_mismatch")
    finally:
        cluster.run_tool("helm", "uninstall", "amw-helm", "-n", "amw-helm", check=False)


def test_self_managed_tls_gets_the_leader_restarted(cluster: Cluster, tmp_path: Path) -> None:
    """tls.mode=selfManaged (the chart's default): the replica holding the Lease publishes the caBundle at
    start and every minute, so a bundle that stays wrong means that replica fails. doctor reads the mode and
    the Lease's name from the webhook's ConfigMap; its fix, run as printed, deletes the Lease holder's pod
    (a bare pod here: no controller re-creates it, no kubelet runs it)."""
    register(cluster, "amw-sm", "amw-sm", "doctor-sm/inject")
    certs_for(tmp_path / "certs", "amw-sm.amw-sm.svc")
    cluster.kubectl(
        "create", "secret", "tls", "amw-sm-tls", "-n", "amw-sm",
        "--cert", str(tmp_path / "certs" / "tls.crt"), "--key", str(tmp_path / "certs" / "tls.key"),
    )  # fmt: skip
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "amw-sm-certs", "namespace": "amw-sm"},
        "spec": {"holderIdentity": "amw-sm-7d9f-leader", "leaseDurationSeconds": 30},
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(lease))
    leader = probe("amw-sm", "amw-sm-7d9f-leader")["spec"]["template"]
    cluster.kubectl("create", "serviceaccount", "default", "-n", "amw-sm", check=False)
    cluster.kubectl(
        "create", "-f", "-",
        input=json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "amw-sm-7d9f-leader",
                          "namespace": "amw-sm"}, "spec": leader["spec"]}),
    )  # fmt: skip
    try:
        labelled_namespace(cluster, "doc-sm", "doctor-sm/inject")
        doctor_args = ("--namespace", "doc-sm", "--webhook", "amw-sm")
        _, report, _ = doctor(cluster, *doctor_args)
        [missing] = found(report, "ca_bundle_missing", "problem")  # not yet published
        leader_pod = "\"$(kubectl get lease -n amw-sm amw-sm-certs -o jsonpath='{.spec.holderIdentity}')\""
        assert missing["fix"] == f"kubectl delete pod -n amw-sm {leader_pod}"
        assert missing["look_at"] == f"kubectl logs -n amw-sm {leader_pod}"
        assert "tls.mode selfManaged" in missing["message"]
        assert report["summary"]["likely_cause"]["code"] == "endpoints_not_ready"

        other = base64.b64encode(new_ca("someone-else", 2, dt.datetime.now(dt.UTC)).cert_pem).decode()
        patch = [{"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": other}]
        cluster.kubectl(
            "patch", "mutatingwebhookconfiguration", "amw-sm", "--type=json", "-p", json.dumps(patch)
        )
        _, report, _ = doctor(cluster, *doctor_args)
        [mismatch] = found(report, "ca_bundle_mismatch", "problem")
        assert "the certificate in Secret amw-sm/amw-sm-tls" in mismatch["message"]
        assert mismatch["fix"] == missing["fix"] and not report["summary"]["inputs"]
        run_as_printed(cluster, mismatch["fix"])
        gone = cluster.kubectl("get", "pod", "-n", "amw-sm", "amw-sm-7d9f-leader", check=False)
        assert "NotFound" in gone.stderr, "the fix deleted the Lease holder's pod"
    finally:
        cluster.kubectl("delete", "mutatingwebhookconfiguration", "amw-sm", check=False)


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
    [evidence] = step["evidence"]
    assert evidence.startswith(f"{STEP_CONTAINER_NAME}: logs unavailable (")
    # what failed is in its log: a diagnostic, under "Look at", not a fix
    logs = f"kubectl logs -n doc-failed scheduler-1 -c {STEP_CONTAINER_NAME}"
    assert step["fix"] == "" and step["look_at"] == logs
    assert report["summary"]["look_at"] == [logs] and report["summary"]["fixes"] == []
    assert f"Look at:\n  {logs}\n" in table and "Suggested fixes" not in table


def test_pods_stuck_in_the_wait_container_without_the_step(cluster: Cluster, webhook: WebhookProcess) -> None:
    labelled_namespace(cluster, "doc-waiting", None)
    deployment = apply(cluster, official_scheduler("doc-waiting"))
    assert not injected(deployment)
    pod = pod_from(cluster, deployment, "airflow-scheduler-1")
    waiting = {"state": {"running": {"startedAt": ago(20)}}}
    write_status(cluster, pod, [waiting], "Pending")

    code, report, _ = doctor(cluster, "--namespace", "doc-waiting")
    assert code == 1
    [stuck] = found(report, "waiting_without_step", "problem")
    assert stuck["subject"] == "Pod/doc-waiting/airflow-scheduler-1"
    # counted from the pod's start (25 minutes ago), not from the current attempt (20)
    assert "wait-for-airflow-migrations for 25m" in stuck["message"]
    reconcile = "airflow-migration-webhook reconcile --namespace doc-waiting --namespace-label-key " + (
        f"{LABEL} --namespace-label-value enabled"
    )
    assert stuck["fix"] == reconcile
    assert report["summary"]["fixes"] == [f"kubectl label namespace doc-waiting {LABEL}=enabled", reconcile]
    # --release narrows to that release: another release's objects are not reported
    _, other, _ = doctor(cluster, "--namespace", "doc-waiting", "--release", "someone-else")
    assert not found(other, "waiting_without_step") and found(other, "no_airflow", "warning")


def test_no_webhook_installed_still_judges_the_namespace_and_its_install_runs_as_printed(
    cluster: Cluster,
) -> None:
    """No webhook configuration (here: --webhook names none): the namespace is judged against the configured
    opt-in label, and the fixes start with an install that runs as printed once the values only the user
    knows are set (the chart folder, the image they pushed)."""
    if not cluster.modern:
        pytest.skip(
            "helm install of the chart's defaults needs a current server (policy/v1, matchConditions)"
        )
    labelled_namespace(cluster, "doc-nowebhook", None)
    apply(cluster, official_scheduler("doc-nowebhook"))
    code, report, table = doctor(cluster, "--namespace", "doc-nowebhook", "--webhook", "amw-none")
    assert code == 1
    assert report["summary"]["likely_cause"]["code"] == "webhook_missing"
    [namespace] = found(report, "namespace_not_selected", "problem")
    assert namespace["message"].startswith(
        "not opted in: the namespace lacks the label airflow-migration-webhook/inject=enabled"
    )
    install = report["summary"]["fixes"][0]
    assert install == (
        'helm install airflow-migration-webhook "$CHART" -n airflow-migration-webhook --create-namespace '
        '--set image.repository="$IMAGE_REPOSITORY" --set image.tag="$IMAGE_TAG"'
    )
    assert report["summary"]["fixes"][1:] == [
        "kubectl label namespace doc-nowebhook airflow-migration-webhook/inject=enabled",
        "airflow-migration-webhook reconcile --namespace doc-nowebhook",
    ]
    assert list(report["summary"]["inputs"]) == ["CHART", "IMAGE_REPOSITORY", "IMAGE_TAG"]
    assert "Namespace/doc-nowebhook" in table and "IMAGE_REPOSITORY: where you pushed the image" in table
    try:
        inputs = {
            "CHART": str(CHART),
            "IMAGE_REPOSITORY": "registry.example.com/airflow-migration-webhook",
            "IMAGE_TAG": "0.1.0",
        }
        run_as_printed(cluster, install, **inputs)
        _, after, _ = doctor(
            cluster, "--namespace", "doc-nowebhook", "--webhook", "airflow-migration-webhook"
        )
        assert found(after, "webhook_found", "ok") and not found(after, "webhook_missing")
        deployment = stored(cluster, "airflow-migration-webhook", "Deployment", "airflow-migration-webhook")
        image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image == "registry.example.com/airflow-migration-webhook:0.1.0"
    finally:
        cluster.run_tool(
            "helm", "uninstall", "airflow-migration-webhook", "-n", "airflow-migration-webhook", check=False
        )


def test_pending_pods_and_a_job_that_has_not_started_say_what_is_true(
    cluster: Cluster, webhook: WebhookProcess
) -> None:
    """A pod the scheduler could not place is pending, with the scheduler's reason, never "past its init
    containers"; the migration Job with no pod has not started, and with a pending pod says why; with a
    running pod it runs."""
    labelled_namespace(cluster, "doc-pending", LABEL)
    scheduler = apply(cluster, official_scheduler("doc-pending"))
    assert injected(scheduler)
    unschedulable = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: "
        "3 No preemption victims found for incoming pod.",
        "lastProbeTime": None,
        "lastTransitionTime": ago(7),
    }
    pod = pod_from(cluster, scheduler, "airflow-scheduler-1")
    write_status(cluster, pod, [], "Pending", [unschedulable])
    job = apply(cluster, official("doc-pending", "Job", "airflow-run-airflow-migrations"))

    code, report, _ = doctor(cluster, "--namespace", "doc-pending")
    assert code == 1
    [pending] = found(report, "pod_pending", "problem")
    assert pending["subject"] == "Pod/doc-pending/airflow-scheduler-1"
    assert re.fullmatch(r"pending for \d+m: not scheduled \(Unschedulable\)", pending["message"])
    assert pending["evidence"] == [f"PodScheduled=False (Unschedulable): {unschedulable['message']}"]
    assert pending["look_at"] == "kubectl describe pod -n doc-pending airflow-scheduler-1"
    assert not found(report, "pod_ready"), "a pending pod is not past its init containers"
    [job_finding] = found(report, "job_pending", "warning")
    assert job_finding["message"] == ("the migration Job has not started: no pod of it exists yet")
    assert not found(report, "job_running")

    job_pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "airflow-run-airflow-migrations-x7k2p",
            "namespace": "doc-pending",
            "labels": job["spec"]["template"]["metadata"].get("labels") or {},
            "ownerReferences": [
                {"apiVersion": "batch/v1", "kind": "Job", "name": job["metadata"]["name"],
                 "uid": job["metadata"]["uid"], "controller": True}
            ],
        },
        "spec": job["spec"]["template"]["spec"],
    }  # fmt: skip
    cluster.kubectl("create", "serviceaccount", job_pod["spec"].get("serviceAccountName") or "default",
                    "-n", "doc-pending", check=False)  # fmt: skip
    cluster.kubectl("create", "-f", "-", input=json.dumps(job_pod))
    created = stored(cluster, "doc-pending", "Pod", "airflow-run-airflow-migrations-x7k2p")
    write_status(cluster, created, [], "Pending", [unschedulable])
    _, report, _ = doctor(cluster, "--namespace", "doc-pending")
    [job_finding] = found(report, "job_pending", "warning")
    assert job_finding["message"] == (
        "the migration Job has not started: Pod/doc-pending/airflow-run-airflow-migrations-x7k2p is "
        "pending: not scheduled (Unschedulable)"
    )
    assert len(found(report, "pod_pending", "problem")) == 2

    write_status(cluster, created, [], "Running")
    _, report, _ = doctor(cluster, "--namespace", "doc-pending")
    [running] = found(report, "job_running", "ok")
    assert running["message"].startswith("the migration Job is running: 1 pod(s) running")


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


def argocd_application(cluster: Cluster, name: str, namespace: str, status: dict[str, Any]) -> None:
    """An Application as Argo CD stores it (Argo CD cannot run here): the CRD, then the object, with the
    status its controller writes."""
    cluster.kubectl("apply", "-f", "-", input=json.dumps(APPLICATION_CRD))
    cluster.kubectl("wait", "--for=condition=Established", "crd/applications.argoproj.io", "--timeout=60s")
    cluster.kubectl("create", "namespace", "argocd", check=False)
    application = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": "argocd"},
        "spec": {"destination": {"namespace": namespace, "server": "https://kubernetes.default.svc"}},
        "status": status,
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(application))


def running_sync(
    message: str, resources: list[dict[str, Any]], hooks: list[dict[str, Any]]
) -> dict[str, Any]:
    """An Application's status mid-sync, in Argo CD's words (messages from gitops-engine's sync_context.go,
    as tests/argocd.py replays them)."""
    return {
        "sync": {"status": "OutOfSync"},
        "health": {"status": "Progressing"},
        "resources": resources,
        "operationState": {
            "phase": "Running",
            "message": message,
            "startedAt": ago(30),
            "syncResult": {"resources": hooks},
        },
    }


def progressing(name: str, kind: str = "Deployment") -> dict[str, Any]:
    return {
        "group": "apps",
        "version": "v1",
        "kind": kind,
        "name": name,
        "status": "Synced",
        "health": {
            "status": "Progressing",
            "message": "Waiting for rollout to finish: 0 of 1 updated replicas are available...",
        },
    }


def test_an_argocd_sync_waiting_for_health_before_its_post_sync_hook_is_the_deadlock(
    cluster: Cluster, webhook: WebhookProcess
) -> None:
    """Argo CD waits for every workload to be Healthy before it creates the PostSync migration hook, while
    the workloads' pods wait for that migration: a problem, with what Argo CD waits for and the fix of what
    keeps it (the namespace's label), not a warning."""
    labelled_namespace(cluster, "doc-argo", None)
    apply(cluster, official_scheduler("doc-argo"))
    _, before, _ = doctor(cluster, "--namespace", "doc-argo")
    assert any("Argo CD is not installed" in note for note in before["notes"]), "a missing CRD is a note"

    message = "waiting for healthy state of apps/Deployment/airflow-scheduler"
    argocd_application(
        cluster, "airflow", "doc-argo", running_sync(message, [progressing("airflow-scheduler")], [])
    )
    code, report, table = doctor(cluster, "--namespace", "doc-argo")
    assert code == 1
    [stuck] = found(report, "argocd_waiting", "problem")
    assert stuck["subject"] == "Application/argocd/airflow"
    assert stuck["message"] == (
        f"the sync is stuck: Argo CD is {message}; it creates the PostSync migration hook only once every "
        "workload is Healthy, and the Airflow pods wait for that migration: the deadlock. What keeps it: "
        "Namespace/doc-argo (namespace_not_selected)"
    )
    assert stuck["evidence"] == [
        "sync OutOfSync, health Progressing, operation Running for 30m",
        "apps/Deployment/airflow-scheduler: Progressing (Waiting for rollout to finish: 0 of 1 updated "
        "replicas are available...)",
    ]
    label = f"kubectl label namespace doc-argo {LABEL}=enabled"
    assert stuck["fix"] == label and report["summary"]["fixes"][0] == label
    assert not any("Argo CD" in note for note in report["notes"])
    assert report["summary"]["likely_cause"]["code"] == "namespace_not_selected", "the cause, not the symptom"
    assert f"{report['summary']['problems']} problem(s), 0 warning(s)" in table


def test_a_failing_step_a_waiting_pod_and_argocd_waiting_on_its_hook_the_step_first(
    cluster: Cluster, webhook: WebhookProcess
) -> None:
    """Three problems in one release: an API server created before the namespace was labelled (no step) whose
    pod waits, a scheduler whose step fails, and an Argo CD sync waiting for the migration hook, whose Job has
    no pod yet. The failing step blocks the others: it is the likely cause, its log the first place to look,
    and the Argo CD finding points at it."""
    labelled_namespace(cluster, "doc-three", None)
    api_server = apply(cluster, official("doc-three", name="airflow-api-server"))
    assert not injected(api_server)
    cluster.kubectl("label", "namespace", "doc-three", f"{LABEL}=enabled")
    scheduler = apply(cluster, probe("doc-three", "scheduler"))
    assert injected(scheduler)
    waiting_pod = pod_from(cluster, api_server, "airflow-api-server-1")  # first by name
    write_status(cluster, waiting_pod, [{"state": {"running": {"startedAt": ago(20)}}}], "Pending")
    failing_pod = pod_from(cluster, scheduler, "scheduler-1")
    failed = {
        "restartCount": 4,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
    }
    write_status(cluster, failing_pod, [failed], "Pending")
    apply(cluster, official("doc-three", "Job", "airflow-run-airflow-migrations"))
    message = "waiting for completion of hook batch/Job/airflow-run-airflow-migrations"
    hook = {
        "group": "batch", "version": "v1", "kind": "Job", "name": "airflow-run-airflow-migrations",
        "namespace": "doc-three", "hookType": "PostSync", "hookPhase": "Running", "syncPhase": "PostSync",
        "message": "job.batch/airflow-run-airflow-migrations created",
    }  # fmt: skip
    argocd_application(
        cluster, "airflow-three", "doc-three",
        running_sync(message, [progressing("airflow-api-server"), progressing("scheduler")], [hook]),
    )  # fmt: skip

    code, report, table = doctor(cluster, "--namespace", "doc-three")
    assert code == 1
    codes = [f["code"] for f in report["findings"] if f["severity"] == "problem"]
    assert sorted(codes) == sorted(["injected", "waiting_without_step", "step_failed", "argocd_waiting"])
    cause = report["summary"]["likely_cause"]
    assert cause["code"] == "step_failed" and cause["subject"] == "Pod/doc-three/scheduler-1"
    logs = f"kubectl logs -n doc-three scheduler-1 -c {STEP_CONTAINER_NAME}"
    assert report["summary"]["look_at"][0] == logs
    [argo] = found(report, "argocd_waiting", "problem")
    assert argo["message"].startswith(
        f"the sync is stuck: Argo CD is {message}; the migration Job has not started: no pod of it exists yet"
    )
    assert argo["message"].endswith("What keeps it: Pod/doc-three/scheduler-1 (step_failed)")
    assert argo["look_at"] == logs and argo["fix"] == ""
    assert argo["evidence"][1:] == [
        "batch/Job/airflow-run-airflow-migrations: PostSync hook Running "
        "(job.batch/airflow-run-airflow-migrations created)",
        "apps/Deployment/airflow-api-server, apps/Deployment/scheduler: Progressing (Waiting for rollout to "
        "finish: 0 of 1 updated replicas are available...)",
    ]
    assert "Likely cause: Pod/doc-three/scheduler-1" in table
    cluster.kubectl("delete", "application", "airflow-three", "-n", "argocd")


# --- no access --------------------------------------------------------------------------------------------


def kubeconfig_for(cluster: Cluster, path: Path, user: dict[str, str], context: str = "test") -> Path:
    """A kubeconfig for this cluster with other credentials, its context named `context`."""
    write_kubeconfig(path, cluster.server, cluster.pki / "ca.crt", user)
    config = yaml.safe_load(path.read_text())
    config["contexts"][0]["name"] = config["current-context"] = context
    path.write_text(yaml.safe_dump(config))
    return path


def doctor_refused(
    kubeconfig: Path, *args: str
) -> tuple[list[str], list[dict[str, Any]], list[dict[str, Any]]]:
    """doctor without access: exit 2, its first line, then the RBAC rules it printed, required and optional,
    each read back as YAML (they are meant to be pasted under `rules:`)."""
    result = subprocess.run(
        [sys.executable, "-m", "app", "doctor", "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "HTTPSConnectionPool" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    rules_at = lines.index("# required")
    optional_at = lines.index("# optional: doctor carries on without them, and says so")
    required = [yaml.safe_load(line)[0] for line in lines[rules_at + 1 : optional_at]]
    optional = [yaml.safe_load(line)[0] for line in lines[optional_at + 1 :]]
    assert all(" # without it: " in line for line in lines[optional_at + 1 :])
    return lines[:rules_at], required, optional


def test_no_cluster_access_says_why_in_one_line_then_the_reads_it_needs(tmp_path: Path) -> None:
    port = free_port()
    kubeconfig = tmp_path / "nowhere"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "x"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    said, required, optional = doctor_refused(kubeconfig, "--namespace", "x")
    assert said[0] == f"error: cannot reach the API server at https://127.0.0.1:{port}: connection refused"
    assert said[1].startswith("doctor only reads; these rules grant what it reads")
    assert {"apiGroups": ["admissionregistration.k8s.io"], "resources": ["mutatingwebhookconfigurations"],
            "verbs": ["list"]} in required  # fmt: skip
    assert [rule["resources"] for rule in optional] == [
        ["secrets"],
        ["configmaps"],
        ["pods/log"],
        ["applications"],
    ]


def test_refused_credentials_refused_reads_and_the_printed_rules_are_enough(
    cluster: Cluster, webhook: WebhookProcess, tmp_path: Path
) -> None:
    """401: whose credentials were refused. 403: what the API server refused, in its words. Then the rules
    doctor printed, pasted into a ClusterRole: the required ones alone let doctor run and say what it could
    not read; with the optional ones too, nothing is missing."""
    if not cluster.modern:
        pytest.skip("`kubectl create token` needs a current server")
    said, _, _ = doctor_refused(
        kubeconfig_for(cluster, tmp_path / "bad-token", {"token": "not-a-token"}, "doc-ctx"),
        "--namespace",
        "x",
    )
    assert (
        said[0]
        == "error: 401 Unauthorized: the credentials of context doc-ctx were refused (expired or unknown)"
    )

    cluster.kubectl("create", "namespace", "doc-rbac")
    cluster.kubectl("create", "serviceaccount", "reader", "-n", "doc-rbac")
    token = cluster.kubectl("create", "token", "reader", "-n", "doc-rbac", "--duration=1h").stdout.strip()
    kubeconfig = kubeconfig_for(cluster, tmp_path / "reader", {"token": token})
    said, required, optional = doctor_refused(kubeconfig, "--namespace", "doc-rbac")
    assert said[0] == (
        "error: 403 Forbidden: mutatingwebhookconfigurations.admissionregistration.k8s.io is forbidden: "
        'User "system:serviceaccount:doc-rbac:reader" cannot list resource "mutatingwebhookconfigurations" '
        'in API group "admissionregistration.k8s.io" at the cluster scope (context test)'
    )

    # a Service-mode webhook (its Secret and ConfigMap are optional reads) and a pod with a failed step
    certs_for(tmp_path / "certs", "amw-rbac.amw-rbac.svc")
    ca_bundle = base64.b64encode((tmp_path / "certs" / "ca.crt").read_bytes()).decode()
    register(
        cluster, "amw-rbac", "amw-rbac", "doctor-rbac/inject",
        *sets("tls.mode=secret", "tls.secret.name=amw-tls", f"tls.secret.caBundle={ca_bundle}"),
    )  # fmt: skip
    cluster.kubectl(
        "create", "secret", "tls", "amw-tls", "-n", "amw-rbac",
        "--cert", str(tmp_path / "certs" / "tls.crt"), "--key", str(tmp_path / "certs" / "tls.key"),
    )  # fmt: skip
    cluster.kubectl("label", "namespace", "doc-rbac", f"{LABEL}=enabled")  # the module's webhook injects
    pod = pod_from(cluster, apply(cluster, probe("doc-rbac", "scheduler")), "scheduler-1")
    write_status(cluster, pod, [{"state": {"terminated": {"exitCode": 1, "reason": "Error"}}}], "Pending")

    def grant(rules: list[dict[str, Any]]) -> None:
        role = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "doctor-reader"},
            "rules": rules,
        }
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "doctor-reader"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "doctor-reader",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": "doc-rbac"}],
        }
        cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                              "items": [role, binding]}))  # fmt: skip

    def as_reader() -> dict[str, Any]:
        deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
        while True:  # RBAC changes reach the authorizer within a moment
            result = subprocess.run(
                [sys.executable, "-m", "app", "doctor", "--kubeconfig", str(kubeconfig), "--namespace",
                 "doc-rbac", "--webhook", "amw-rbac", "-o", "json"],
                capture_output=True, text=True, cwd=REPO, timeout=120,
            )  # fmt: skip
            if result.returncode in (0, 1) or dt.datetime.now(dt.UTC) > deadline:
                assert result.returncode in (0, 1), result.stderr
                return dict(json.loads(result.stdout))

    try:
        grant(required)
        report = as_reader()
        notes = " ".join(report["notes"])
        assert "no permission to read Secret amw-rbac/amw-tls" in notes
        assert "no permission to read ConfigMap amw-rbac/amw-rbac" in notes
        assert "Argo CD Applications not readable (403 Forbidden)" in notes
        assert found(report, "certificate_unread", "warning")
        [step] = found(report, "step_failed", "problem")
        assert step["evidence"] == [
            f"{STEP_CONTAINER_NAME}: logs unavailable (no permission to get pods/log)"
        ]

        grant(required + optional)
        report = as_reader()
        assert not [note for note in report["notes"] if "permission" in note or "not readable" in note]
        assert found(report, "ca_bundle_ok", "ok") and not found(report, "certificate_unread")
        [step] = found(report, "step_failed", "problem")
        assert "no permission" not in step["evidence"][0]
    finally:
        cluster.kubectl("delete", "mutatingwebhookconfiguration", "amw-rbac", check=False)
        cluster.kubectl("delete", "clusterrolebinding,clusterrole", "doctor-reader", check=False)


def test_all_opted_in_means_the_namespaces_the_webhook_selects(
    cluster: Cluster, webhook: WebhookProcess
) -> None:
    """The webhook's namespaceSelector decides (here a non-default label), not the default opt-in label."""
    _, report, _ = doctor(cluster, "--all-opted-in")
    assert {"doc-probe", "doc-healthy", "doc-failed"} <= set(report["namespaces"])
    assert not {"doc-unlabelled", "doc-waiting", "doc-argo", "doc-down", "doc-stale"} & set(
        report["namespaces"]
    )
