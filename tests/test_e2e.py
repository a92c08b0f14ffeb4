"""End to end through a real kube-apiserver and etcd on loopback (tests/cluster.py says which server).

The API server calls the real webhook process over TLS, applies its patches and stores the result. On a
current server (v1.32 in CI) the chart is registered exactly as users install it: `helm template` with
default values (CEL matchConditions, the `kubernetes.io/metadata.name` namespace exclusion, failurePolicy
Ignore), only
the URL and caBundle pointed at the local process, and the chart renders are applied whole.

On the 1.20 fallback (clones without the 1.32 binary) the chart uses what 1.20 lacks, and the tier says so:
matchConditions are switched off (1.20 would reject them), the renders' policy/v1 PodDisruptionBudgets are
left out, Services lose `internalTrafficPolicy` (a 1.22 field), the namespace exclusion matches nothing, and
the tests that need a current server are skipped with that reason.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from kubernetes.utils import parse_quantity

from app.manifests import dump_yaml
from tests.cluster import Cluster, write_kubeconfig
from tests.servers import WebhookProcess, free_port, start_webhook
from tests.support import CHART_RENDERS, REPO, cli_mutate
from tests.test_chart import CHART, helm, sets
from tests.test_lifecycle import served_certificate

pytestmark = pytest.mark.e2e
SERVED_BY_1_20 = {
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "Service",
    "Deployment",
    "StatefulSet",
    "Job",
    "Role",
    "RoleBinding",
    "NetworkPolicy",
}
STEP = "airflow-db-migrate"
STATUS = "airflow-migration-webhook/status"


# --- fixtures ------------------------------------------------------------------------------------


def certs_command(out_dir: Path) -> str:
    """The project's own `certs` command: returns the caBundle it prints."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "app",
            "certs",
            "--out-dir",
            str(out_dir),
            "--dns",
            "localhost",
            "--ip",
            "127.0.0.1",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    return result.stdout.strip()


def render_chart(cluster: Cluster, name: str, namespace: str, *values: str) -> str:
    """The chart as `helm template` renders it for this server: defaults, except matchConditions on 1.20."""
    legacy = [] if cluster.modern else ["--set", "webhook.matchConditions=false"]
    return helm(
        "template",
        name,
        str(CHART),
        "--namespace",
        namespace,
        "--kube-version",
        cluster.kube_version,
        *legacy,
        *values,
    ).stdout


def secret_tls(ca_bundle: str, url: str) -> list[str]:
    """Chart values for the test webhook: its certificate as a user-provided Secret, reached by URL."""
    return sets(
        "tls.mode=secret", "tls.secret.name=amw-tls", f"tls.secret.caBundle={ca_bundle}", f"webhook.url={url}"
    )


def register(cluster: Cluster, name: str, namespace: str, label: str, *values: str) -> str:
    """Install the chart (as a GitOps tool would: rendered, then applied) and return the manifest."""
    cluster.kubectl("create", "namespace", namespace, check=False)
    manifest = render_chart(
        cluster,
        name,
        namespace,
        "--set",
        f"webhook.namespaceLabel.key={label}",
        "--set",
        f"fullnameOverride={name}",
        *values,
    )
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)
    return manifest


def probe(namespace: str, name: str = "probe") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "scheduler",
                            "image": "apache/airflow:3.0.2",
                            "args": ["bash", "-c", "exec airflow scheduler"],
                        }
                    ]
                },
            },
        },
    }


def injected(obj: dict[str, Any]) -> bool:
    spec = obj["spec"]["template"]["spec"]
    return any(c["name"] == STEP for c in spec.get("initContainers", []))


def dry_run_create(
    cluster: Cluster, obj: dict[str, Any], check: bool = True
) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl(
        "create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(obj), check=check
    )


def wait_until_injecting(cluster: Cluster, namespace: str, timeout: float = 30) -> None:
    """The API server picks up a new webhook configuration asynchronously."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = dry_run_create(cluster, probe(namespace), check=False)
        if result.returncode == 0 and injected(json.loads(result.stdout)):
            return
        time.sleep(0.3)
    raise AssertionError(f"the webhook never injected in {namespace}")


def labelled_namespace(cluster: Cluster, name: str, label: str | None) -> None:
    cluster.kubectl("create", "namespace", name)
    if label:
        cluster.kubectl("label", "namespace", name, f"{label}=enabled")


def render_docs(cluster: Cluster, path: Path) -> list[dict[str, Any]]:
    """A chart render to apply in a namespace of the test's choosing: whole on a current server."""
    docs = []
    for doc in yaml.safe_load_all(path.read_text()):
        if not doc or not (cluster.modern or doc["kind"] in SERVED_BY_1_20):
            continue
        doc["metadata"].pop("namespace", None)
        if doc["kind"] == "Service" and not cluster.modern:  # a 1.22 field that 1.20 refuses
            doc["spec"].pop("internalTrafficPolicy", None)
        docs.append(doc)
    return docs


def stored(cluster: Cluster, namespace: str, kind: str, name: str) -> dict[str, Any]:
    return dict(json.loads(cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout))


def mismatch(whole: Any, part: Any, path: str = "") -> str | None:
    """Where `part` is not in `whole`, allowing fields the API server defaulted (extra keys in `whole`)
    and the empty values it drops (`envFrom: []`, `nodeSelector: {}`); None when it is."""
    if isinstance(part, dict):
        if not isinstance(whole, dict):
            return path or "/"
        for key, value in part.items():
            if key not in whole:
                if value in ([], {}, None, False):
                    continue
                return f"{path}/{key} missing"
            found = mismatch(whole[key], value, f"{path}/{key}")
            if found:
                return found
        return None
    if isinstance(part, list):
        if not isinstance(whole, list) or len(whole) != len(part):
            return f"{path} length"
        return next(
            (
                m
                for m in (
                    mismatch(w, p, f"{path}/{i}") for i, (w, p) in enumerate(zip(whole, part, strict=True))
                )
                if m
            ),
            None,
        )
    if "/resources/" in path and isinstance(whole, str) and isinstance(part, str):  # 1024Mi is stored as 1Gi
        return None if parse_quantity(whole) == parse_quantity(part) else f"{path}: {whole!r} != {part!r}"
    return None if whole == part else f"{path}: {whole!r} != {part!r}"


WEBHOOK_LABEL = "airflow-migration-webhook/inject"


@pytest.fixture(scope="module")
def webhook(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[WebhookProcess, str]]:
    work = tmp_path_factory.mktemp("e2e-webhook")
    ca_bundle = certs_command(work / "certs")
    handle = start_webhook(work, cert_dir=work / "certs")
    manifest = register(cluster, "amw", "amw-system", WEBHOOK_LABEL, *secret_tls(ca_bundle, handle.url))
    labelled_namespace(cluster, "probe", WEBHOOK_LABEL)
    wait_until_injecting(cluster, "probe")
    yield handle, manifest
    handle.stop()


# --- 1. the chart is valid for a real API server ---------------------------------------------------


def test_chart_objects_are_accepted_by_real_validation(
    cluster: Cluster, webhook: tuple[WebhookProcess, str]
) -> None:
    _, manifest = webhook
    for doc in (d for d in yaml.safe_load_all(manifest) if d):
        namespaced = doc["kind"] not in ("ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration")
        args = ["get", doc["kind"], doc["metadata"]["name"], "-o", "json"] + (
            ["-n", "amw-system"] if namespaced else []
        )
        assert json.loads(cluster.kubectl(*args).stdout)["metadata"]["name"] == doc["metadata"]["name"]
    self_managed = render_chart(cluster, "amw-sm", "amw-sm", "--set", "tls.mode=selfManaged")
    cluster.kubectl("create", "namespace", "amw-sm")
    result = cluster.kubectl("apply", "--dry-run=server", "-n", "amw-sm", "-f", "-", input=self_managed)
    assert "created (server dry run)" in result.stdout


# --- 2. the real chart renders, applied as Argo CD does ----------------------------------------------


def apply_render(cluster: Cluster, namespace: str, docs: list[dict[str, Any]]) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input="".join("---\n" + dump_yaml(d) for d in docs))


def comparable_spec(obj: dict[str, Any]) -> dict[str, Any]:
    """The spec without our step and without the per-object controller uid a Job gets at creation (label
    `controller-uid`, and `batch.kubernetes.io/controller-uid` since 1.27)."""
    spec = copy.deepcopy(obj["spec"])
    for labels in (
        spec.get("selector", {}).get("matchLabels", {}),
        spec["template"]["metadata"].get("labels", {}),
    ):
        labels.pop("controller-uid", None)
        labels.pop("batch.kubernetes.io/controller-uid", None)
    pod = spec["template"]["spec"]
    pod["initContainers"] = [c for c in pod.get("initContainers", []) if c["name"] != STEP]
    if not pod["initContainers"]:
        del pod["initContainers"]
    return dict(spec)


RENDERS = sorted(path.stem for path in CHART_RENDERS.glob("*.yaml"))


def alone(doc: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The offline `mutate` of one object by itself, as the webhook judges it: the object and the report."""
    code, text, report = cli_mutate(dump_yaml(doc))
    assert code == 0, report
    return yaml.safe_load(text), report


@pytest.mark.parametrize("render", RENDERS)
def test_stored_objects_carry_exactly_what_mutate_predicts(
    cluster: Cluster, webhook: tuple[WebhookProcess, str], render: str
) -> None:
    """The same stream into a labelled and an unlabelled namespace: the labelled one stores the unlabelled
    one's objects plus exactly what the offline `mutate` predicts for each object alone, in the same place
    (the webhook sees one object at a time: `mutate` over the whole stream also knows whether the release
    migrates without a hook)."""
    docs = render_docs(cluster, CHART_RENDERS / f"{render}.yaml")
    opted_in, untouched = render.replace(".", "-")[:50], render.replace(".", "-")[:44] + "-plain"
    labelled_namespace(cluster, opted_in, WEBHOOK_LABEL)
    labelled_namespace(cluster, untouched, None)
    apply_render(cluster, opted_in, docs)
    apply_render(cluster, untouched, docs)
    predicted = [alone(doc)[0] for doc in docs]
    changed = 0
    for original, expected in zip(docs, predicted, strict=True):
        if original["kind"] not in ("Deployment", "StatefulSet", "Job"):
            continue
        name = original["metadata"]["name"]
        live = stored(cluster, opted_in, original["kind"], name)
        plain = stored(cluster, untouched, original["kind"], name)
        live_inits = live["spec"]["template"]["spec"].get("initContainers", [])
        expected_inits = expected["spec"]["template"]["spec"].get("initContainers", [])
        assert [c["name"] for c in live_inits] == [c["name"] for c in expected_inits], name
        assert mismatch(live_inits, expected_inits) is None, f"{name}: {mismatch(live_inits, expected_inits)}"
        assert comparable_spec(live) == comparable_spec(plain), f"{name}: something besides the step changed"
        assert (live["metadata"].get("annotations") or {}).get(STATUS) == (
            expected["metadata"].get("annotations") or {}
        ).get(STATUS)
        assert STATUS not in (plain["metadata"].get("annotations") or {})
        assert not injected(plain)
        changed += expected != original
    assert changed >= 1


def test_opted_out_objects_are_untouched(cluster: Cluster, webhook: tuple[WebhookProcess, str]) -> None:
    docs = render_docs(cluster, CHART_RENDERS / "bitnami-airflow-24.1.0-defaults.yaml")
    labelled_namespace(cluster, "opted-out", WEBHOOK_LABEL)
    scheduler = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "airflow-scheduler"
    )
    scheduler["metadata"].setdefault("annotations", {})["airflow-migration-webhook/inject"] = "false"
    apply_render(cluster, "opted-out", [scheduler])
    live = stored(cluster, "opted-out", "Deployment", "airflow-scheduler")
    assert not injected(live) and STATUS not in live["metadata"]["annotations"]


# --- 3. stability ------------------------------------------------------------------------------------


def test_reapply_with_a_new_label_changes_no_spec(
    cluster: Cluster, webhook: tuple[WebhookProcess, str]
) -> None:
    """Re-applying with only a label added sends an UPDATE through the webhook for every workload and
    changes no spec. Generations are compared with the same stream in an unlabelled namespace: the Bitnami
    Deployments bump their generation on such a re-apply even without any webhook (kubectl + chart quirk)."""
    handle, _ = webhook
    docs = render_docs(cluster, CHART_RENDERS / "bitnami-airflow-24.1.0-defaults.yaml")
    workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    relabelled = copy.deepcopy(docs)
    for doc in relabelled:
        doc["metadata"].setdefault("labels", {})["e2e/reapplied"] = "yes"
    snapshots: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for namespace, label in (("stable", WEBHOOK_LABEL), ("stable-plain", None)):
        labelled_namespace(cluster, namespace, label)
        apply_render(cluster, namespace, docs)
        before = {
            d["metadata"]["name"]: stored(cluster, namespace, d["kind"], d["metadata"]["name"])
            for d in workloads
        }
        apply_render(cluster, namespace, relabelled)
        after = {
            d["metadata"]["name"]: stored(cluster, namespace, d["kind"], d["metadata"]["name"])
            for d in workloads
        }
        snapshots[namespace] = (before, after)
    updates = {
        line["name"]
        for line in map(json.loads, filter(lambda s: s.startswith("{"), handle.log().splitlines()))
        if line.get("msg") == "review"
        and line.get("namespace") == "stable"
        and line.get("operation") == "UPDATE"
    }
    (before, after), (plain_before, plain_after) = snapshots["stable"], snapshots["stable-plain"]
    for doc in workloads:
        name = doc["metadata"]["name"]
        # matchConditions keep the PostgreSQL and Redis StatefulSets from the webhook on a current server
        looks_like_airflow = (
            doc["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/name") == "airflow"
        )
        if looks_like_airflow or not cluster.modern:
            assert name in updates, f"no UPDATE review for {name}"
        else:
            assert name not in updates, f"{name} reached the webhook through matchConditions"
        assert after[name]["metadata"]["labels"]["e2e/reapplied"] == "yes"
        assert after[name]["spec"] == before[name]["spec"], f"{name}: spec changed on re-apply"
        bumped = after[name]["metadata"]["generation"] - before[name]["metadata"]["generation"]
        plain_bumped = (
            plain_after[name]["metadata"]["generation"] - plain_before[name]["metadata"]["generation"]
        )
        assert bumped == plain_bumped, f"{name}: the webhook caused a rollout"


def test_set_image_moves_the_step(cluster: Cluster, webhook: tuple[WebhookProcess, str]) -> None:
    labelled_namespace(cluster, "bump", WEBHOOK_LABEL)
    cluster.kubectl("apply", "-n", "bump", "-f", "-", input=json.dumps(probe("bump", "sched")))
    cluster.kubectl("set", "image", "-n", "bump", "deployment/sched", "scheduler=apache/airflow:3.0.3")
    live = stored(cluster, "bump", "Deployment", "sched")
    steps = [c for c in live["spec"]["template"]["spec"]["initContainers"] if c["name"] == STEP]
    assert [s["image"] for s in steps] == ["apache/airflow:3.0.3"]


def test_argocd_hook_finalizer_updates_succeed(cluster: Cluster, webhook: tuple[WebhookProcess, str]) -> None:
    docs = render_docs(cluster, CHART_RENDERS / "bitnami-airflow-24.1.0-defaults.yaml")
    job = next(d for d in docs if d["kind"] == "Job")
    job["metadata"]["finalizers"] = ["argocd.argoproj.io/hook-finalizer"]  # Argo CD 3 creates hooks with it
    labelled_namespace(cluster, "hooks", WEBHOOK_LABEL)
    apply_render(cluster, "hooks", [job])
    name = job["metadata"]["name"]
    live = stored(cluster, "hooks", "Job", name)
    assert STATUS in live["metadata"]["annotations"]
    live["metadata"]["finalizers"] = []  # what Argo CD does when the hook finished: a full UPDATE
    cluster.kubectl("replace", "-n", "hooks", "-f", "-", input=json.dumps(live))
    assert stored(cluster, "hooks", "Job", name)["metadata"].get("finalizers") in (None, [])


def test_server_side_dry_run_matches_the_real_apply(
    cluster: Cluster, webhook: tuple[WebhookProcess, str]
) -> None:
    docs = [
        d
        for d in render_docs(cluster, CHART_RENDERS / "apache-airflow-1.18.0-defaults.yaml")
        if d["kind"] in ("Deployment", "StatefulSet")
    ]
    labelled_namespace(cluster, "dry", WEBHOOK_LABEL)
    text = "".join("---\n" + dump_yaml(d) for d in docs)
    dry = json.loads(
        cluster.kubectl("apply", "--dry-run=server", "-n", "dry", "-o", "json", "-f", "-", input=text).stdout
    )
    cluster.kubectl("apply", "-n", "dry", "-f", "-", input=text)
    for item in dry["items"]:
        live = stored(cluster, "dry", item["kind"], item["metadata"]["name"])
        assert item["spec"]["template"] == live["spec"]["template"]


def reviews(handle: WebhookProcess, namespace: str) -> list[dict[str, Any]]:
    """The webhook's `review` log lines for one namespace: what the API server actually sent it."""
    lines = (json.loads(s) for s in handle.log().splitlines() if s.startswith("{"))
    return [line for line in lines if line.get("msg") == "review" and line.get("namespace") == namespace]


@pytest.mark.parametrize("render", RENDERS)
def test_match_conditions_keep_non_airflow_objects_away_and_let_every_airflow_one_through(
    cluster: Cluster, webhook: tuple[WebhookProcess, str], render: str
) -> None:
    """The chart's CEL, evaluated by the real API server: objects the engine calls `not_airflow` (the
    PostgreSQL and Redis StatefulSets) are never sent, and every object the engine changes is sent and stored
    changed. A CEL error under failurePolicy Ignore would skip the webhook silently; this catches it."""
    if not cluster.modern:
        pytest.skip("matchConditions need Kubernetes >= 1.30; this run has a 1.20 server")
    handle, _ = webhook
    docs = render_docs(cluster, CHART_RENDERS / f"{render}.yaml")
    namespace = "cel-" + render.replace(".", "-")[:40]
    labelled_namespace(cluster, namespace, WEBHOOK_LABEL)
    apply_render(cluster, namespace, docs)
    report = "".join(alone(doc)[1] for doc in docs)  # the webhook sees one object at a time
    line = re.compile(r"^(?:Deployment|StatefulSet|Job)/(?:[^/\s]+/)?([^/\s]+): \w+ (\w+)", re.M)
    decisions = {found.group(1): found.group(2) for found in line.finditer(report)}
    sent = {line["name"] for line in reviews(handle, namespace)}
    kept_away = {name for name, reason in decisions.items() if reason == "not_airflow"}
    changed = {name for name, reason in decisions.items() if reason in ("injected", "hook_job_marked")}
    assert changed, report
    assert kept_away & sent == set(), f"matchConditions let non-Airflow objects through: {kept_away & sent}"
    assert changed <= sent, f"never sent to the webhook: {changed - sent}"
    for doc in docs:
        if doc["metadata"]["name"] in changed and doc["kind"] in ("Deployment", "StatefulSet"):
            assert injected(stored(cluster, namespace, doc["kind"], doc["metadata"]["name"]))


# --- 3b. drift, as Argo CD sees it ------------------------------------------------------------------------


def render_text(cluster: Cluster, render: str) -> str:
    return "".join("---\n" + dump_yaml(d) for d in render_docs(cluster, CHART_RENDERS / f"{render}.yaml"))


def workload_specs(cluster: Cluster, namespace: str) -> dict[str, Any]:
    found = {}
    for kind in ("deployments", "statefulsets", "jobs"):
        for item in json.loads(cluster.kubectl("get", kind, "-n", namespace, "-o", "json").stdout)["items"]:
            # (1.20 gives Jobs no generation)
            found[f"{kind}/{item['metadata']['name']}"] = (item["spec"], item["metadata"].get("generation"))
    return found


@pytest.mark.parametrize("render", RENDERS)
def test_no_drift_after_a_client_side_apply(
    cluster: Cluster, webhook: tuple[WebhookProcess, str], render: str
) -> None:
    """`kubectl diff` of the manifests just applied reports nothing: what the webhook added is not drift."""
    namespace = "drift-" + render.replace(".", "-")[:40]
    labelled_namespace(cluster, namespace, WEBHOOK_LABEL)
    text = render_text(cluster, render)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=text)
    assert any(
        injected({"spec": spec})
        for key, (spec, _) in workload_specs(cluster, namespace).items()
        if "jobs/" not in key
    )
    diff = cluster.kubectl("diff", "-n", namespace, "-f", "-", input=text, check=False)
    assert diff.returncode == 0, f"kubectl diff reports drift:\n{diff.stdout[-4000:]}{diff.stderr[-2000:]}"


@pytest.mark.parametrize("render", RENDERS)
def test_no_drift_with_argocd_server_side_apply(
    cluster: Cluster, webhook: tuple[WebhookProcess, str], render: str
) -> None:
    """Argo CD's `ServerSideApply=true`: the workloads are injected, a second apply changes no spec and
    starts no rollout, and a server-side diff with Argo CD's field manager reports nothing."""
    if not cluster.modern:
        pytest.skip(
            "1.20's server-side apply refuses the renders' Service ports without `protocol` (fixed later)"
        )
    namespace = "ssa-" + render.replace(".", "-")[:40]
    labelled_namespace(cluster, namespace, WEBHOOK_LABEL)
    text = render_text(cluster, render)
    ssa = ("apply", "--server-side", "--field-manager=argocd-controller", "-n", namespace, "-f", "-")
    cluster.kubectl(*ssa, input=text)
    first = workload_specs(cluster, namespace)
    assert any(injected({"spec": spec}) for key, (spec, _) in first.items() if "jobs/" not in key)
    cluster.kubectl(*ssa, input=text)
    assert workload_specs(cluster, namespace) == first, "a second server-side apply changed a spec"
    diff = cluster.kubectl(
        "diff",
        "--server-side",
        "--field-manager=argocd-controller",
        "-n",
        namespace,
        "-f",
        "-",
        input=text,
        check=False,
    )
    assert diff.returncode == 0, (
        f"server-side diff reports drift:\n{diff.stdout[-4000:]}{diff.stderr[-2000:]}"
    )


# --- 4. failure policies --------------------------------------------------------------------------------


def test_failure_policy_ignore_and_fail(cluster: Cluster, tmp_path: Path) -> None:
    label = "e2e-failure/inject"
    ca_bundle = certs_command(tmp_path / "certs")
    handle = start_webhook(tmp_path, cert_dir=tmp_path / "certs")
    register(cluster, "amw-failure", "amw-failure", label, *secret_tls(ca_bundle, handle.url))
    labelled_namespace(cluster, "failure", label)
    wait_until_injecting(cluster, "failure")
    assert handle.stop() == 0

    ignored = json.loads(dry_run_create(cluster, probe("failure", "while-down")).stdout)
    assert not injected(ignored), "Ignore must admit the object unmutated"
    fail = sets("webhook.failurePolicy=Fail")
    register(cluster, "amw-failure", "amw-failure", label, *secret_tls(ca_bundle, handle.url), *fail)
    deadline = time.monotonic() + 30
    while True:
        refused = dry_run_create(cluster, probe("failure", "while-down"), check=False)
        if refused.returncode != 0 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert refused.returncode != 0
    assert (
        "failed calling webhook" in refused.stderr
        and "migrate.airflow-migration-webhook.io" in refused.stderr
    )

    (tmp_path / "again").mkdir()
    back = start_webhook(tmp_path / "again", cert_dir=tmp_path / "certs")
    try:
        register(cluster, "amw-failure", "amw-failure", label, *secret_tls(ca_bundle, back.url), *fail)
        wait_until_injecting(cluster, "failure")
        cluster.kubectl("apply", "-n", "failure", "-f", "-", input=json.dumps(probe("failure", "after")))
        assert injected(stored(cluster, "failure", "Deployment", "after"))
    finally:
        back.stop()
        cluster.kubectl("delete", "mutatingwebhookconfiguration", "amw-failure")


# --- 5. self-managed TLS --------------------------------------------------------------------------------


def test_self_managed_tls_rotation_and_lease(cluster: Cluster, tmp_path: Path) -> None:
    """The server, with only a ServiceAccount token and the chart's RBAC, creates its CA and serving pair,
    publishes the caBundle and is then called by the API server; a forced CA rotation keeps the old and new CA
    in the bundle and no call fails; a second replica never writes while the first holds the Lease."""
    name, namespace, label = "amw-self", "amw-self", "e2e-self/inject"
    port = free_port()
    manifest = register(
        cluster,
        name,
        namespace,
        label,
        "--set",
        "tls.mode=selfManaged",
        "--set",
        f"webhook.url=https://127.0.0.1:{port}/mutate",
        "--set",
        "tls.selfManaged.ipAddresses={127.0.0.1}",
        "--set",
        "webhook.failurePolicy=Fail",
    )
    [config_map] = [d for d in yaml.safe_load_all(manifest) if d and d["kind"] == "ConfigMap"]
    self_managed = yaml.safe_load(config_map["data"]["config.yaml"])["self_managed_tls"]
    token = cluster.kubectl("create", "token", name, "-n", namespace, "--duration=1h").stdout.strip()
    kubeconfig = tmp_path / "token-kubeconfig"
    write_kubeconfig(kubeconfig, cluster.server, cluster.pki / "ca.crt", {"token": token})
    common = {
        **self_managed,
        "sync_interval_seconds": 1,
        "lease_duration_seconds": 5,
    }
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = start_webhook(
        tmp_path / "a",
        port=port,
        server={"cert_reload_interval_seconds": 0.3},
        self_managed={**common, "cert_dir": str(tmp_path / "a" / "tls")},
        top_level={"kubeconfig": str(kubeconfig)},
        env={"POD_NAME": "replica-a"},
    )
    second = start_webhook(
        tmp_path / "b",
        server={"cert_reload_interval_seconds": 0.3},
        self_managed={**common, "cert_dir": str(tmp_path / "b" / "tls")},
        top_level={"kubeconfig": str(kubeconfig)},
        env={"POD_NAME": "replica-b"},
    )
    try:
        secret = json.loads(
            cluster.kubectl("get", "secret", f"{name}-tls", "-n", namespace, "-o", "json").stdout
        )
        assert {"ca.crt", "ca.key", "ca-bundle.crt", "tls.crt", "tls.key"} <= set(secret["data"])
        lease = json.loads(
            cluster.kubectl("get", "lease", f"{name}-certs", "-n", namespace, "-o", "json").stdout
        )
        assert lease["spec"]["holderIdentity"] == "replica-a"

        def bundle() -> list[x509.Certificate]:
            configuration = json.loads(
                cluster.kubectl("get", "mutatingwebhookconfiguration", name, "-o", "json").stdout
            )
            pem = base64.b64decode(configuration["webhooks"][0]["clientConfig"]["caBundle"])
            return list(x509.load_pem_x509_certificates(pem))

        assert len(bundle()) == 1
        labelled_namespace(cluster, "self-tls", label)
        wait_until_injecting(cluster, "self-tls")

        failures: list[str] = []
        calls = 0
        stop = threading.Event()

        def load() -> None:
            nonlocal calls
            while not stop.is_set():
                result = dry_run_create(cluster, probe("self-tls", f"p{calls}"), check=False)
                calls += 1
                if result.returncode != 0 or not injected(json.loads(result.stdout)):
                    failures.append(result.stderr[-500:] or "not injected")

        def serving_issuer_is(ca: x509.Certificate) -> bool:
            context = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
            context.check_hostname = False  # the pair names 127.0.0.1 and the Service; the issuer is checked
            try:
                served_certificate(port, context).verify_directly_issued_by(ca)
            except (ssl.SSLError, ValueError, InvalidSignature):
                return False
            return True

        worker = threading.Thread(target=load)
        worker.start()
        try:
            old_ca = bundle()[0]
            assert serving_issuer_is(old_ca)
            cluster.kubectl(
                "annotate", "secret", f"{name}-tls", "-n", namespace, "airflow-migration-webhook/rotate=true"
            )
            deadline = time.monotonic() + 30
            while not (len(bundle()) == 2 and serving_issuer_is(bundle()[0])):
                assert time.monotonic() < deadline, "the rotated certificate was never served"
                time.sleep(0.3)
            time.sleep(3)  # calls go on against the new pair
        finally:
            stop.set()
            worker.join(60)
        current = bundle()
        assert len(current) == 2 and current[1] == old_ca, "old and new CA must both be in the caBundle"
        assert failures == [] and calls >= 5
        assert "certificate secret written" in first.log()
        assert "certificate secret written" not in second.log() and "caBundle published" not in second.log()
        assert (
            json.loads(
                cluster.kubectl("get", "lease", f"{name}-certs", "-n", namespace, "-o", "json").stdout
            )["spec"]["holderIdentity"]
            == "replica-a"
        )
    finally:
        first.stop()
        second.stop()
        cluster.kubectl("delete", "mutatingwebhookconfiguration", name)


# --- reconcile: releases that are already stuck -----------------------------------------------------------

RECONCILE_LABEL = "e2e-reconcile/inject"
RECONCILER = "amw-rec"  # release name and namespace of the chart whose reconcile RBAC the tests run under


@pytest.fixture(scope="module")
def reconciler_kubeconfig(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ServiceAccount token bound only by the chart's own reconcile RBAC (reconcile.enabled=true)."""
    manifest = render_chart(
        cluster,
        RECONCILER,
        RECONCILER,
        *sets(
            "reconcile.enabled=true",
            f"fullnameOverride={RECONCILER}",
            f"webhook.namespaceLabel.key={RECONCILE_LABEL}",
        ),
    )
    rbac = [
        d
        for d in yaml.safe_load_all(manifest)
        if d and d["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
    ]
    cluster.kubectl("create", "namespace", RECONCILER)
    cluster.kubectl("apply", "-n", RECONCILER, "-f", "-", input="".join("---\n" + dump_yaml(d) for d in rbac))
    token = cluster.kubectl("create", "token", RECONCILER, "-n", RECONCILER, "--duration=1h").stdout.strip()
    kubeconfig = tmp_path_factory.mktemp("reconciler") / "kubeconfig"
    write_kubeconfig(kubeconfig, cluster.server, cluster.pki / "ca.crt", {"token": token})
    return kubeconfig


def reconcile(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "app",
            "reconcile",
            "--kubeconfig",
            str(kubeconfig),
            "--label-key",
            RECONCILE_LABEL,
            *args,
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )


def versions(cluster: Cluster, namespace: str) -> dict[str, str]:
    found = {}
    for kind in ("deployments", "statefulsets", "jobs"):
        listing = json.loads(cluster.kubectl("get", kind, "-n", namespace, "-o", "json").stdout)
        found.update(
            {f"{kind}/{i['metadata']['name']}": i["metadata"]["resourceVersion"] for i in listing["items"]}
        )
    return found


def test_reconcile_fixes_a_release_applied_without_the_webhook(
    cluster: Cluster, reconciler_kubeconfig: Path
) -> None:
    """No webhook is registered for this label: the release is stored as a stuck Argo CD sync leaves it.
    The command runs with the chart's reconcile RBAC, as its loop does in the cluster."""
    docs = render_docs(cluster, CHART_RENDERS / "bitnami-airflow-24.1.0-defaults.yaml")
    labelled_namespace(cluster, "stuck", RECONCILE_LABEL)
    labelled_namespace(cluster, "stuck-unlabelled", None)
    for namespace in ("stuck", "stuck-unlabelled"):
        apply_render(cluster, namespace, docs)
    opted_out = copy.deepcopy(
        next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "airflow-web")
    )
    opted_out["metadata"]["name"] = "airflow-web-opted-out"
    opted_out["metadata"].setdefault("annotations", {})["airflow-migration-webhook/inject"] = "false"
    apply_render(cluster, "stuck", [opted_out])
    assert not injected(stored(cluster, "stuck", "Deployment", "airflow-scheduler"))
    before, unlabelled_before = versions(cluster, "stuck"), versions(cluster, "stuck-unlabelled")

    dry = reconcile(reconciler_kubeconfig, "--namespace", "stuck", "--dry-run", "-o", "json")
    assert dry.returncode == 0, dry.stderr
    planned = {o["name"]: o for o in json.loads(dry.stdout)}
    assert {n for n, o in planned.items() if o["result"] == "would_patch"} == {
        "airflow-scheduler",
        "airflow-web",
    }
    assert planned["airflow-web-opted-out"]["reason"] == "opted_out"
    assert planned["airflow-worker"]["reason"] == "component_not_migrating"
    assert all(op["op"] in ("add", "test") for o in planned.values() for op in o["patch"])
    assert versions(cluster, "stuck") == before, "--dry-run changed something"
    table = reconcile(reconciler_kubeconfig, "--namespace", "stuck", "--dry-run")
    assert re.search(r"stuck\s+Deployment\s+airflow-scheduler\s+would_patch\s+injected", table.stdout)

    applied = reconcile(reconciler_kubeconfig, "--all-opted-in", "-o", "json")
    assert applied.returncode == 0, applied.stderr
    patched = {o["name"] for o in json.loads(applied.stdout) if o["result"] == "patched"}
    assert patched == {"airflow-scheduler", "airflow-web"}
    _, predicted_text, _ = cli_mutate("".join("---\n" + dump_yaml(d) for d in docs))
    predicted = {
        d["metadata"]["name"]: d
        for d in yaml.safe_load_all(predicted_text)
        if d and d["kind"] == "Deployment"
    }
    for name in patched:
        live = stored(cluster, "stuck", "Deployment", name)
        plain = stored(cluster, "stuck-unlabelled", "Deployment", name)
        expected = predicted[name]["spec"]["template"]["spec"]["initContainers"]
        assert [c["name"] for c in live["spec"]["template"]["spec"]["initContainers"]] == [
            c["name"] for c in expected
        ]
        assert comparable_spec(live) == comparable_spec(plain), f"{name}: reconcile changed more than it adds"
    after = versions(cluster, "stuck")
    changed = {key for key in after if after[key] != before.get(key)}
    assert changed == {"deployments/airflow-scheduler", "deployments/airflow-web"}, (
        "Jobs and others untouched"
    )
    assert versions(cluster, "stuck-unlabelled") == unlabelled_before, "an unlabelled namespace was touched"
    assert not injected(stored(cluster, "stuck-unlabelled", "Deployment", "airflow-scheduler"))
    assert not injected(stored(cluster, "stuck", "Deployment", "airflow-web-opted-out"))

    again = reconcile(reconciler_kubeconfig, "--all-opted-in", "-o", "json")
    assert {o["result"] for o in json.loads(again.stdout)} <= {"unchanged", "skipped"}
    assert versions(cluster, "stuck") == after, "a second run changed something"

    refused = reconcile(reconciler_kubeconfig, "--namespace", "stuck-unlabelled")
    assert refused.returncode == 2 and "does not carry e2e-reconcile/inject=enabled" in refused.stderr


def test_reconcile_never_overwrites_a_concurrent_change(
    cluster: Cluster, reconciler_kubeconfig: Path
) -> None:
    """A change between list and patch: the patch is refused, the object read again (a `get` the chart's
    RBAC must grant) and patched on top of the change."""
    from app.config import NamespaceLabel
    from app.engine import EngineConfig
    from app.kube import api_client
    from app.reconcile import Reconciler

    labelled_namespace(cluster, "racing", RECONCILE_LABEL)
    cluster.kubectl("apply", "-n", "racing", "-f", "-", input=json.dumps(probe("racing", "sched")))
    reconciler = Reconciler(
        api_client(reconciler_kubeconfig),
        EngineConfig(),
        NamespaceLabel(key=RECONCILE_LABEL),
    )
    [stale] = reconciler.workloads("Deployment", "racing")
    cluster.kubectl(
        "label", "-n", "racing", "deployment/sched", "changed-meanwhile=yes"
    )  # a concurrent writer
    outcome = reconciler.reconcile_object(stale, dry_run=False)
    assert outcome.result == "patched" and outcome.retries == 1
    live = stored(cluster, "racing", "Deployment", "sched")
    assert live["metadata"]["labels"]["changed-meanwhile"] == "yes"
    assert injected(live)


def test_the_reconcile_loop_inside_serve(
    cluster: Cluster, reconciler_kubeconfig: Path, tmp_path: Path
) -> None:
    """The loop with the chart's RBAC and its Lease name."""
    labelled_namespace(cluster, "loop", RECONCILE_LABEL)
    cluster.kubectl("apply", "-n", "loop", "-f", "-", input=json.dumps(probe("loop", "sched")))
    assert not injected(stored(cluster, "loop", "Deployment", "sched"))
    handle = start_webhook(
        tmp_path,
        reconcile={
            "enabled": True,
            "interval_seconds": 1,
            "lease_namespace": RECONCILER,
            "lease_name": f"{RECONCILER}-reconcile",
        },
        top_level={"kubeconfig": str(reconciler_kubeconfig), "namespace_label": {"key": RECONCILE_LABEL}},
    )
    try:
        deadline = time.monotonic() + 30
        while not injected(stored(cluster, "loop", "Deployment", "sched")):
            assert time.monotonic() < deadline, handle.log()[-2000:]
            time.sleep(0.5)
        metrics = httpx.get(f"{handle.health}/metrics").text
        assert (
            'airflow_migration_webhook_reconcile_objects_total{reason="injected",result="patched"} 1.0'
            in metrics
        )
        lease = json.loads(
            cluster.kubectl("get", "lease", f"{RECONCILER}-reconcile", "-n", RECONCILER, "-o", "json").stdout
        )
        assert lease["spec"]["holderIdentity"]
    finally:
        assert handle.stop() == 0


def test_a_refused_object_never_drops_the_rest_of_the_round(
    cluster: Cluster, reconciler_kubeconfig: Path
) -> None:
    """The API server refuses one object's patch (a ValidatingAdmissionPolicy, GA since 1.30): that object
    is reported failed with its reason, and the others of the round are still patched."""
    if not cluster.modern:
        pytest.skip("ValidatingAdmissionPolicy needs Kubernetes >= 1.30; this run has a 1.20 server")
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": "e2e-frozen"},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": ["apps"],
                        "apiVersions": ["v1"],
                        "operations": ["UPDATE"],
                        "resources": ["deployments"],
                    }
                ]
            },
            "validations": [
                {
                    "expression": "!has(object.metadata.labels) || !('e2e/frozen' in object.metadata.labels)",
                    "message": "frozen by the test",
                }
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": "e2e-frozen"},
        "spec": {
            "policyName": "e2e-frozen",
            "validationActions": ["Deny"],
            "matchResources": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "partial"}}
            },
        },
    }
    labelled_namespace(cluster, "partial", RECONCILE_LABEL)
    frozen = probe("partial", "a-frozen")
    frozen["metadata"]["labels"] = {"e2e/frozen": "yes"}
    for obj in (frozen, probe("partial", "b-free")):
        cluster.kubectl("apply", "-n", "partial", "-f", "-", input=json.dumps(obj))
    cluster.kubectl("apply", "-f", "-", input=json.dumps(policy) + "\n---\n" + json.dumps(binding))
    try:
        deadline = time.monotonic() + 30
        while True:  # the policy is picked up asynchronously
            refused = cluster.kubectl(
                "label", "-n", "partial", "deployment/a-frozen", "probe=1", "--overwrite", check=False
            )
            if refused.returncode != 0 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert "frozen by the test" in refused.stderr
        result = reconcile(reconciler_kubeconfig, "--namespace", "partial", "-o", "json")
        outcomes = {o["name"]: o for o in json.loads(result.stdout)}
        assert outcomes["a-frozen"]["result"] == "failed", outcomes
        assert any("422" in w or "403" in w for w in outcomes["a-frozen"]["warnings"]), outcomes
        assert outcomes["b-free"]["result"] == "patched", outcomes
        assert injected(stored(cluster, "partial", "Deployment", "b-free"))
        assert result.returncode == 1, "a failed object makes the command's exit non-zero"
    finally:
        cluster.kubectl("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", "e2e-frozen")


def test_reconcile_leaves_a_release_that_migrates_without_a_hook(
    cluster: Cluster, reconciler_kubeconfig: Path
) -> None:
    """The User-Community chart stored without the webhook, at its defaults (its migrator a Deployment: no
    deadlock) and with `runAsJob=true` (a hook Job: the deadlock): reconcile, which sees the namespace,
    patches only the second; the first's scheduler and web are skipped, naming the migrator."""
    stores = {"hookless": "community-airflow-8.9.0-defaults", "hooked": "community-airflow-8.9.0-runasjob"}
    for namespace, render in stores.items():
        labelled_namespace(cluster, namespace, RECONCILE_LABEL)
        apply_render(cluster, namespace, render_docs(cluster, CHART_RENDERS / f"{render}.yaml"))
    try:
        before = versions(cluster, "hookless")
        result = reconcile(reconciler_kubeconfig, "--namespace", "hookless", "-o", "json")
        assert result.returncode == 0, result.stderr
        outcomes = {o["name"]: o for o in json.loads(result.stdout)}
        for name in ("airflow-scheduler", "airflow-web"):
            assert (outcomes[name]["result"], outcomes[name]["reason"]) == (
                "skipped",
                "release_migrates_without_hook",
            ), outcomes[name]
            assert outcomes[name]["detail"].startswith(
                "Deployment airflow-db-migrations is the chart's migrator"
            )
        assert outcomes["airflow-db-migrations"]["reason"] == "self_migrating"
        assert versions(cluster, "hookless") == before, "nothing of a hookless release is patched"
        table = reconcile(reconciler_kubeconfig, "--namespace", "hookless")
        assert re.search(
            r"Deployment\s+airflow-scheduler\s+skipped\s+release_migrates_without_hook", table.stdout
        )

        hooked = reconcile(reconciler_kubeconfig, "--namespace", "hooked", "-o", "json")
        assert hooked.returncode == 0, hooked.stderr
        patched = {o["name"] for o in json.loads(hooked.stdout) if o["result"] == "patched"}
        assert patched == {"airflow-scheduler", "airflow-web"}
        assert injected(stored(cluster, "hooked", "Deployment", "airflow-scheduler"))
    finally:  # out of the other reconcile tests' --all-opted-in rounds
        for namespace in stores:
            cluster.kubectl("label", "namespace", namespace, f"{RECONCILE_LABEL}-")
