"""The Helm chart, rendered by a real helm (installed by scripts/install-helm.sh)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.support import REPO

CHART = REPO / "charts" / "airflow-migration-webhook"
HELM = shutil.which("helm") or str(REPO / ".cache" / "bin" / "helm")
# kinds that the Kubernetes schema covers; CRD kinds (cert-manager, ServiceMonitor) are checked by shape
CORE_KINDS = {
    "Deployment",
    "Service",
    "ServiceAccount",
    "ConfigMap",
    "PodDisruptionBudget",
    "Role",
    "RoleBinding",
    "ClusterRole",
    "ClusterRoleBinding",
    "MutatingWebhookConfiguration",
    "NetworkPolicy",
}
CA_BUNDLE = "TFMwdExTMUNSVWRKVGlCRFJWSlVTVVpKUTBGVVJTMHRMUzB0Q2c9PQ=="


def sets(*assignments: str) -> list[str]:
    return [arg for assignment in assignments for arg in ("--set", assignment)]


SECRET_TLS = ("tls.mode=secret", "tls.secret.name=my-tls", f"tls.secret.caBundle={CA_BUNDLE}")
MODES: dict[str, list[str]] = {
    "defaults": [],
    "cert-manager": sets("tls.mode=certManager"),
    "cert-manager-own-issuer": sets(
        "tls.mode=certManager",
        "tls.certManager.issuerRef.name=corp-ca",
        "tls.certManager.issuerRef.kind=ClusterIssuer",
    ),
    "secret": sets(*SECRET_TLS),
    "pods": sets("target=pods"),
    "url": sets(*SECRET_TLS, "webhook.url=https://127.0.0.1:8443/mutate"),
    "reconcile": sets(*SECRET_TLS, "reconcile.enabled=true"),
    "extras": sets(
        "webhook.clientCASecret=apiserver-clients",
        "networkPolicy.enabled=true",
        "serviceMonitor.enabled=true",
        "priorityClassName=system-cluster-critical",
        "webhook.failurePolicy=Fail",
        "webhook.matchConditions=false",
        "config.migratingComponents=all",
    ),
}


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    if not Path(HELM).exists():
        pytest.fail("helm not found: run scripts/install-helm.sh (scripts/test.sh does)")
    return subprocess.run([HELM, *args], capture_output=True, text=True, check=check)


def render(*values: str) -> list[dict[str, Any]]:
    out = helm(
        "template", "amw", str(CHART), "--namespace", "amw-system", "--kube-version", "1.30.0", *values
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def webhook_of(docs: list[dict[str, Any]]) -> dict[str, Any]:
    [configuration] = by_kind(docs, "MutatingWebhookConfiguration")
    [webhook] = configuration["webhooks"]
    return dict(webhook)


def test_helm_lint_strict() -> None:
    result = helm("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_rendered_object_is_valid_kubernetes(mode: str) -> None:
    docs = render(*MODES[mode])
    for doc in docs:
        if doc["kind"] in CORE_KINDS:
            kubernetes_validate.validate(doc, "1.30", strict=True)
        else:
            assert doc["apiVersion"] in ("cert-manager.io/v1", "monitoring.coreos.com/v1"), doc["kind"]


def test_webhook_configuration_defaults() -> None:
    docs = render()
    webhook = webhook_of(docs)
    assert webhook["sideEffects"] == "None"
    assert webhook["admissionReviewVersions"] == ["v1", "v1beta1"]
    assert webhook["reinvocationPolicy"] == "IfNeeded"
    assert webhook["timeoutSeconds"] == 5
    assert webhook["failurePolicy"] == "Ignore"
    assert webhook["clientConfig"]["service"] == {
        "name": "amw-airflow-migration-webhook",
        "namespace": "amw-system",
        "path": "/mutate",
        "port": 443,
    }
    expressions = webhook["namespaceSelector"]["matchExpressions"]
    assert {"key": "airflow-migration-webhook/inject", "operator": "In", "values": ["enabled"]} in expressions
    excluded = next(e for e in expressions if e["key"] == "kubernetes.io/metadata.name")
    assert excluded["operator"] == "NotIn"
    assert set(excluded["values"]) == {"amw-system", "kube-system", "kube-public", "kube-node-lease"}
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"]), tuple(r["operations"])) for r in webhook["rules"]}
    assert rules == {
        (("apps",), ("deployments", "statefulsets"), ("CREATE", "UPDATE")),
        (("batch",), ("jobs",), ("CREATE",)),
    }
    assert webhook["matchConditions"][0]["name"] == "looks-like-airflow"
    assert "object.spec.template.spec.containers" in webhook["matchConditions"][0]["expression"]


def test_pods_switch_targets_pods_on_create_only() -> None:
    webhook = webhook_of(render(*MODES["pods"]))
    assert webhook["rules"] == [
        {
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["pods"],
            "operations": ["CREATE"],
            "scope": "Namespaced",
        }
    ]
    expression = webhook["matchConditions"][0]["expression"]
    assert "object.spec.containers" in expression and "template" not in expression


def test_mutual_tls_mounts_the_client_ca_and_requires_it() -> None:
    [deployment] = by_kind(render(*MODES["extras"]), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert "--client-ca-file=/client-ca/ca.crt" in pod["containers"][0]["args"]
    assert {"name": "client-ca", "mountPath": "/client-ca", "readOnly": True} in pod["containers"][0][
        "volumeMounts"
    ]
    volume = next(v for v in pod["volumes"] if v["name"] == "client-ca")
    assert volume["secret"]["secretName"] == "apiserver-clients"
    [plain] = by_kind(render(), "Deployment")
    assert not any("client-ca" in arg for arg in plain["spec"]["template"]["spec"]["containers"][0]["args"])


def test_match_conditions_can_be_switched_off_for_old_clusters() -> None:
    assert "matchConditions" not in webhook_of(render(*MODES["extras"]))


def test_url_client_config_with_ca_bundle() -> None:
    webhook = webhook_of(render(*MODES["url"]))
    assert webhook["clientConfig"] == {"url": "https://127.0.0.1:8443/mutate", "caBundle": CA_BUNDLE}


def test_cert_manager_mode_injects_the_ca() -> None:
    docs = render(*MODES["cert-manager"])
    [configuration] = by_kind(docs, "MutatingWebhookConfiguration")
    assert (
        configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
        == "amw-system/amw-airflow-migration-webhook"
    )
    serving = next(c for c in by_kind(docs, "Certificate") if not c["spec"].get("isCA"))
    assert serving["spec"]["dnsNames"] == [
        "amw-airflow-migration-webhook.amw-system.svc",
        "amw-airflow-migration-webhook.amw-system.svc.cluster.local",
    ]
    assert serving["spec"]["issuerRef"] == {"name": "amw-airflow-migration-webhook-ca", "kind": "Issuer"}
    own = render(*MODES["cert-manager-own-issuer"])
    assert [c["spec"]["issuerRef"] for c in by_kind(own, "Certificate")] == [
        {"name": "corp-ca", "kind": "ClusterIssuer"}
    ]
    assert by_kind(own, "Issuer") == []


def test_hardened_pod_and_service_account_token_only_when_needed() -> None:
    for mode, token in (("defaults", True), ("secret", False), ("cert-manager", False)):
        docs = render(*MODES[mode])
        [deployment] = by_kind(docs, "Deployment")
        pod = deployment["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is token, mode
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        [container] = pod["containers"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
        assert deployment["spec"]["replicas"] == 2
        assert pod["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
        assert by_kind(docs, "PodDisruptionBudget")[0]["spec"]["minAvailable"] == 1
        has_rbac = bool(by_kind(docs, "Role"))
        assert has_rbac is token, mode
    # the reconcile loop needs the API too, and exactly its own rights
    docs = render(*MODES["reconcile"])
    assert by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["automountServiceAccountToken"] is True
    [cluster_role] = by_kind(docs, "ClusterRole")
    assert cluster_role["rules"] == [
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list"]},
        {
            "apiGroups": ["apps"],
            "resources": ["deployments", "statefulsets"],
            "verbs": ["get", "list", "patch"],
        },
    ]


def test_rbac_is_scoped_by_resource_name() -> None:
    docs = render()
    [role] = by_kind(docs, "Role")
    [cluster_role] = by_kind(docs, "ClusterRole")
    for rule in role["rules"]:
        assert "resourceNames" in rule or rule["verbs"] == ["create"]
    assert cluster_role["rules"] == [
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["mutatingwebhookconfigurations"],
            "resourceNames": ["amw-airflow-migration-webhook"],
            "verbs": ["get", "patch"],
        }
    ]


def test_reconcile_rbac_grants_exactly_the_calls_reconcile_makes() -> None:
    """Both ways: nothing the code calls is missing (a refused `get` once dropped the rest of a round), and
    nothing is granted that no code uses (such as `watch`)."""
    from app.reconcile import CLUSTER_ACCESS

    docs = render(*MODES["reconcile"])
    [role] = [d for d in by_kind(docs, "ClusterRole") if d["metadata"]["name"].endswith("-reconcile")]
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert "resourceNames" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    assert granted == {key: set(verbs) for key, verbs in CLUSTER_ACCESS.items()}


def test_config_map_is_a_valid_server_configuration() -> None:
    from app.config import Settings

    assert (
        Settings.model_validate(
            yaml.safe_load(by_kind(render(*MODES["reconcile"]), "ConfigMap")[0]["data"]["config.yaml"])
        ).reconcile.enabled
        is True
    )
    for mode in ("defaults", "extras"):
        [config_map] = by_kind(render(*MODES[mode]), "ConfigMap")
        settings = Settings.model_validate(yaml.safe_load(config_map["data"]["config.yaml"]))
        assert settings.reconcile.lease_namespace == "amw-system"
        if mode == "defaults":
            assert settings.reconcile.enabled is False
            assert settings.self_managed_tls is not None
            assert settings.self_managed_tls.secret_name == "amw-airflow-migration-webhook-tls"
            assert settings.engine.migrating_components == ("scheduler", "api-server", "webserver", "web")
        else:
            assert settings.engine.migrating_components == "all"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["--set", "webhook.failurePolicy=Maybe"], "failurePolicy"),
        (["--set", "target=nodes"], "target"),
        (["--set", "tls.mode=secret"], "is required with tls.mode=secret"),
        (["--set", "webhook.timeoutSeconds=60"], "timeoutSeconds"),
        (["--set", "webhook.url=http://x/mutate"], "webhook/url"),
        # settings that would inject nothing (and so deadlock) are refused as the engine refuses them
        (["--set-json", "config.migratingComponents=[]"], "migratingComponents"),
        (["--set-json", 'config.migratingComponents=["schedular"]'], "migratingComponents"),
        (["--set", "config.migratingComponents=some"], "migratingComponents"),
    ],
)
def test_bad_values_are_refused(values: list[str], message: str) -> None:
    result = helm("template", "amw", str(CHART), *values, check=False)
    assert result.returncode != 0
    assert message in result.stderr


def test_schema_knows_exactly_the_engine_components() -> None:
    import json

    from app.engine.profiles import KNOWN_COMPONENTS

    schema = json.loads((CHART / "values.schema.json").read_text())
    choices = schema["properties"]["config"]["properties"]["migratingComponents"]["oneOf"]
    assert set(choices[1]["items"]["enum"]) == KNOWN_COMPONENTS
    for value in ("all", "All", " ALL "):
        assert (
            helm("template", "amw", str(CHART), "--set", f"config.migratingComponents={value}").returncode
            == 0
        )


def test_notes_tell_how_to_opt_in() -> None:
    result = helm("install", "amw", str(CHART), "--dry-run=client", "--namespace", "amw-system")
    assert (
        "kubectl label namespace <airflow-namespace> airflow-migration-webhook/inject=enabled"
        in result.stdout
    )


# --- matchConditions: no Kubernetes >= 1.30 runs here, so the CEL is evaluated with cel-python -------------


def match_condition(*values: str) -> Any:
    import celpy

    expression = webhook_of(render(*values))["matchConditions"][0]["expression"]
    environment = celpy.Environment()
    return environment.program(environment.compile(expression)), celpy.json_to_cel


@pytest.mark.parametrize("target", ["workloads", "pods"])
def test_match_conditions_let_through_everything_the_engine_changes(target: str) -> None:
    """A superset of the engine: every object it would change passes; obvious non-Airflow objects do not;
    objects missing optional fields evaluate without error (an error would apply the failurePolicy)."""
    from app.engine import EngineConfig, mutate
    from tests.support import CHART_RENDERS, GOLDEN

    program, to_cel = match_condition(*sets(f"target={target}"))
    sources = sorted(CHART_RENDERS.glob("*.yaml")) + sorted((GOLDEN / "cases").glob("*.yaml"))
    passed = blocked = 0
    for source in sources:
        for doc in (d for d in yaml.safe_load_all(source.read_text()) if d):
            if doc["kind"] not in ("Deployment", "StatefulSet", "Job", "Pod"):
                continue
            if target == "pods" and doc["kind"] != "Pod":
                template = doc["spec"]["template"]
                doc = {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": template.get("metadata", {}),
                    "spec": template["spec"],
                }
            if target == "workloads" and doc["kind"] == "Pod":
                continue
            allowed = bool(program.evaluate({"object": to_cel(doc)}))
            if mutate(doc, "CREATE", EngineConfig(migrating_components="all")).changed:
                assert allowed, f"{source.name}: {doc['metadata'].get('name')} would be filtered out"
            passed += allowed
            blocked += not allowed
    assert passed >= 10 and blocked >= 2
    bare = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
    }
    if target == "pods":
        bare = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "x"},
            "spec": bare["spec"]["template"]["spec"],
        }
    assert bool(program.evaluate({"object": to_cel(bare)})) is False
