"""Read what doctor needs from the cluster into a Snapshot: raw JSON as the API server stores it.

Read-only: only get, list and pods/log; and a TLS handshake with a webhook reached by URL (to see the
certificate it serves). Optional reads (Argo CD, the serving Secret, logs) become notes, never errors.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from app.engine import inspect
from app.engine.names import WEBHOOK_NAME

JsonObject = dict[str, Any]
LOG_LINES = 10
ARGOCD = ("argoproj.io", "v1alpha1", "applications")

# What doctor reads, as RBAC sees it (the README's "doctor needs" list is this table).
READS: dict[tuple[str, str], tuple[str, ...]] = {
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"): ("list",),
    ("", "namespaces"): ("get", "list"),
    ("", "services"): ("get",),
    ("discovery.k8s.io", "endpointslices"): ("list",),
    ("", "secrets"): ("get",),  # optional: the webhook's serving Secret, to check the caBundle
    ("", "configmaps"): ("get",),  # optional: the webhook's configuration (its migrating components)
    ("apps", "deployments"): ("list",),
    ("apps", "statefulsets"): ("list",),
    ("batch", "jobs"): ("list",),
    ("", "pods"): ("list",),
    ("", "pods/log"): ("get",),  # optional: needs a kubelet
    ("argoproj.io", "applications"): ("list",),  # optional
}


class NoAccess(RuntimeError):
    """The cluster cannot be read at all (unreachable, unauthenticated, or the essential reads refused)."""


@dataclass
class Snapshot:
    server_version: tuple[int, int] | None = None
    webhook_configurations: list[JsonObject] = field(default_factory=list)
    services: dict[tuple[str, str], JsonObject | None] = field(default_factory=dict)
    endpoint_slices: dict[tuple[str, str], list[JsonObject]] = field(default_factory=dict)
    # the Deployments whose pods the webhook's Service selects (Service mode)
    webhook_deployments: dict[tuple[str, str], list[JsonObject]] = field(default_factory=dict)
    served_certificates: dict[str, bytes | str] = field(
        default_factory=dict
    )  # configuration -> PEM or why not
    webhook_config_text: str | None = None  # the webhook's own config.yaml (its ConfigMap), when readable
    namespaces: dict[str, JsonObject | None] = field(default_factory=dict)
    workloads: dict[str, list[JsonObject]] = field(default_factory=dict)  # Deployments, StatefulSets
    jobs: dict[str, list[JsonObject]] = field(default_factory=dict)
    pods: dict[str, list[JsonObject]] = field(default_factory=dict)
    logs: dict[tuple[str, str, str], list[str] | None] = field(default_factory=dict)  # None: unavailable
    applications: list[JsonObject] | None = None  # None: Argo CD not installed or not readable
    notes: list[str] = field(default_factory=list)


def _json(response: Any) -> Any:
    return json.loads(response.data)


class Reader:
    def __init__(self, api: k8s.ApiClient) -> None:
        self.api = api
        self.core = k8s.CoreV1Api(api)
        self.apps = k8s.AppsV1Api(api)
        self.batch = k8s.BatchV1Api(api)
        self.admission = k8s.AdmissionregistrationV1Api(api)
        self.discovery = k8s.DiscoveryV1Api(api)
        self.custom = k8s.CustomObjectsApi(api)

    def snapshot(
        self, namespaces: list[str] | None, label_selector: str | None, webhook: str | None
    ) -> Snapshot:
        """`namespaces` None: every namespace selected by `label_selector` (the opt-in label)."""
        snap = Snapshot()
        try:
            version = k8s.VersionApi(self.api).get_code()
            snap.server_version = (
                int(version.major),
                int("".join(ch for ch in version.minor if ch.isdigit())),
            )
            configurations = _json(
                self.admission.list_mutating_webhook_configuration(_preload_content=False)
            )["items"]
        except ApiException as error:
            raise NoAccess(f"{error.status} {error.reason}") from error
        except Exception as error:  # unreachable, TLS, kubeconfig: one line
            raise NoAccess(str(error).splitlines()[0] if str(error) else repr(error)) from error
        snap.webhook_configurations = [
            c
            for c in configurations
            if (c["metadata"]["name"] == webhook)
            or (webhook is None and any(w.get("name") == WEBHOOK_NAME for w in c.get("webhooks") or []))
        ]
        for configuration in snap.webhook_configurations:
            self._webhook_side(snap, configuration)
        if namespaces is None:
            # the namespaces the webhook itself selects; the configured opt-in label without a webhook
            webhooks = [w for c in snap.webhook_configurations for w in c.get("webhooks") or []]
            if webhooks:
                label_selector = selector_text(webhooks[0].get("namespaceSelector") or {})
            listing = _json(self.core.list_namespace(label_selector=label_selector, _preload_content=False))
            namespaces = sorted(item["metadata"]["name"] for item in listing["items"])
        for namespace in namespaces:
            self._namespace(snap, namespace)
        self._argocd(snap)
        return snap

    # --- the webhook ---------------------------------------------------------------------------------

    def _webhook_side(self, snap: Snapshot, configuration: JsonObject) -> None:
        name = configuration["metadata"]["name"]
        for webhook in configuration.get("webhooks") or []:
            client_config = webhook.get("clientConfig") or {}
            service = client_config.get("service")
            if service:
                key = (service["namespace"], service["name"])
                if key in snap.services:
                    continue
                snap.services[key] = _maybe(self.core.read_namespaced_service, key[1], key[0])
                slices = _maybe(
                    self.discovery.list_namespaced_endpoint_slice,
                    key[0],
                    label_selector=f"kubernetes.io/service-name={key[1]}",
                )
                snap.endpoint_slices[key] = (slices or {}).get("items") or []
                snap.served_certificates[name] = self._serving_secret(snap, key, name)
                if snap.webhook_config_text is None:
                    snap.webhook_config_text = self._webhook_config(key[0], name)
            elif client_config.get("url"):
                snap.served_certificates[name] = served_certificate(client_config["url"])

    def _serving_secret(
        self, snap: Snapshot, service_key: tuple[str, str], configuration: str
    ) -> bytes | str:
        """The certificate the webhook's pods mount: the Secret volume of the Deployment behind the Service
        (the chart's `<release>-tls` when nothing better is found)."""
        namespace, _ = service_key
        service = snap.services.get(service_key) or {}
        selector = (service.get("spec") or {}).get("selector") or {}
        candidates = []
        deployments = _maybe(self.apps.list_namespaced_deployment, namespace) or {}
        for deployment in deployments.get("items") or []:
            labels = deployment["spec"]["template"]["metadata"].get("labels") or {}
            if selector and all(labels.get(k) == v for k, v in selector.items()):
                snap.webhook_deployments.setdefault(service_key, []).append(deployment)
                for volume in deployment["spec"]["template"]["spec"].get("volumes") or []:
                    if (volume.get("secret") or {}).get("secretName"):
                        candidates.append(volume["secret"]["secretName"])
        candidates.append(f"{configuration}-tls")
        for secret_name in dict.fromkeys(candidates):
            try:
                secret = _json(
                    self.core.read_namespaced_secret(secret_name, namespace, _preload_content=False)
                )
            except ApiException as error:
                if error.status == 403:
                    return f"no permission to read Secret {namespace}/{secret_name}"
                continue
            data = secret.get("data") or {}
            if "tls.crt" in data:
                return base64.b64decode(data["tls.crt"])
        return f"no serving Secret found in {namespace} (looked at {', '.join(dict.fromkeys(candidates))})"

    def _webhook_config(self, namespace: str, name: str) -> str | None:
        config_map = _maybe(self.core.read_namespaced_config_map, name, namespace)
        return ((config_map or {}).get("data") or {}).get("config.yaml")

    # --- one namespace -------------------------------------------------------------------------------

    def _namespace(self, snap: Snapshot, namespace: str) -> None:
        try:
            snap.namespaces[namespace] = _json(self.core.read_namespace(namespace, _preload_content=False))
        except ApiException as error:
            if error.status != 404:
                raise NoAccess(f"reading namespace {namespace}: {error.status} {error.reason}") from error
            snap.namespaces[namespace] = None
            return
        workloads = []
        for kind, call in (
            ("Deployment", self.apps.list_namespaced_deployment),
            ("StatefulSet", self.apps.list_namespaced_stateful_set),
        ):
            items = _json(call(namespace, _preload_content=False))["items"]
            workloads += [{"apiVersion": "apps/v1", "kind": kind, **item} for item in items]
        snap.workloads[namespace] = workloads
        jobs = _json(self.batch.list_namespaced_job(namespace, _preload_content=False))["items"]
        snap.jobs[namespace] = [{"apiVersion": "batch/v1", "kind": "Job", **item} for item in jobs]
        pods = _json(self.core.list_namespaced_pod(namespace, _preload_content=False))["items"]
        snap.pods[namespace] = [{"apiVersion": "v1", "kind": "Pod", **item} for item in pods]
        for pod in snap.pods[namespace]:
            for container in containers_worth_a_log(pod):
                snap.logs[(namespace, pod["metadata"]["name"], container)] = self._log(
                    namespace, pod["metadata"]["name"], container
                )

    def _log(self, namespace: str, pod: str, container: str) -> list[str] | None:
        try:
            text = self.core.read_namespaced_pod_log(
                pod, namespace, container=container, tail_lines=LOG_LINES
            )
        except Exception:  # no kubelet answers (or no permission): say so, carry on
            return None
        if text is None:  # an unscheduled pod: the API server answers an empty body, no kubelet to ask
            return None
        return str(text).splitlines()[-LOG_LINES:]

    def _argocd(self, snap: Snapshot) -> None:
        try:
            listing: Any = self.custom.list_cluster_custom_object(*ARGOCD)
        except ApiException as error:
            if error.status == 404:
                snap.notes.append(
                    "Argo CD is not installed here (no Application CRD): its checks were skipped"
                )
            else:
                snap.notes.append(
                    f"Argo CD Applications not readable ({error.status} {error.reason}): skipped"
                )
            return
        snap.applications = list(listing.get("items") or [])


def selector_text(selector: JsonObject) -> str:
    """A LabelSelector object as the `labelSelector` query parameter spells it."""
    terms = [f"{key}={value}" for key, value in (selector.get("matchLabels") or {}).items()]
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        terms.append(
            {
                "In": f"{key} in ({','.join(values)})",
                "NotIn": f"{key} notin ({','.join(values)})",
                "Exists": key,
                "DoesNotExist": f"!{key}",
            }[operator]
        )
    return ",".join(terms)


def _maybe(call: Any, *args: Any, **kwargs: Any) -> Any:
    """An optional read: the JSON, or None when the API refuses (absent, forbidden)."""
    try:
        return _json(call(*args, _preload_content=False, **kwargs))
    except ApiException:
        return None


def containers_worth_a_log(pod: JsonObject) -> list[str]:
    """Init containers of an Airflow pod that did not finish cleanly: the one it is stuck in, and the
    migrate step when it failed."""
    if inspect(pod) is None:
        return []
    wanted = []
    for status in (pod.get("status") or {}).get("initContainerStatuses") or []:
        state = status.get("state") or {}
        done = (state.get("terminated") or {}).get("exitCode") == 0
        failed_before = ((status.get("lastState") or {}).get("terminated") or {}).get("exitCode") not in (
            None,
            0,
        )
        if not done or failed_before:
            wanted.append(str(status.get("name")))
    return wanted[:2]


def served_certificate(url: str, timeout: float = 5.0) -> bytes | str:
    """The leaf certificate a webhook URL serves (PEM), or why it could not be read. Verification is off on
    purpose: the point is to compare what is served with the caBundle."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 443
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except OSError as error:
        return f"cannot connect to {host}:{port} from here: {error}"
    if not der:
        return f"{host}:{port} sent no certificate"
    return ssl.DER_cert_to_PEM_cert(der).encode()
