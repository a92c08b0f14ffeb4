"""Read what doctor needs from the cluster into a Snapshot: raw JSON as the API server stores it.

Read-only: only get, list and pods/log; and a TLS handshake with a webhook reached by URL (to see the
certificate it serves). Optional reads (Argo CD, the serving Secret, logs) become notes, never errors.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from app.engine import inspect
from app.engine.names import WEBHOOK_NAME

JsonObject = dict[str, Any]
LOG_LINES = 10
ARGOCD = ("argoproj.io", "v1alpha1", "applications")


@dataclass(frozen=True)
class Read:
    """One read doctor makes, as RBAC sees it. `lost`: what doctor cannot say without it (optional reads);
    empty for the reads it cannot work without."""

    group: str
    resource: str
    verbs: tuple[str, ...]
    lost: str = ""

    @property
    def rule(self) -> str:
        """The read as one RBAC rule, in YAML's flow style: a line to paste under a ClusterRole's `rules:`."""
        group = self.group or '""'
        return f"- {{apiGroups: [{group}], resources: [{self.resource}], verbs: [{', '.join(self.verbs)}]}}"


# What doctor reads (docs/troubleshooting.md lists it).
READS: tuple[Read, ...] = (
    Read("admissionregistration.k8s.io", "mutatingwebhookconfigurations", ("list",)),
    Read("", "namespaces", ("get", "list")),
    Read("", "services", ("get",)),
    Read("discovery.k8s.io", "endpointslices", ("list",)),
    Read("apps", "deployments", ("list",)),
    Read("apps", "statefulsets", ("list",)),
    Read("batch", "jobs", ("list",)),
    Read("", "pods", ("list",)),
    Read(
        "",
        "secrets",
        ("get",),
        "the caBundle is not checked against the certificate the webhook's pods serve",
    ),
    Read(
        "",
        "configmaps",
        ("get",),
        "workloads are judged with the engine's defaults, not the webhook's own settings (its migrating "
        "components)",
    ),
    Read("", "pods/log", ("get",), "no log lines of the stuck or failing init containers"),
    Read(
        "argoproj.io", "applications", ("list",), "no Argo CD checks (whether a sync waits on the migration)"
    ),
)


def rbac_rules() -> list[str]:
    """What doctor needs, as lines to paste under a ClusterRole's `rules:` (webhook configurations and
    namespaces are cluster-scoped): the required ones, then each optional one with what is lost without
    it."""
    lines = ["# required"]
    lines += [read.rule for read in READS if not read.lost]
    lines.append("# optional: doctor carries on without them, and says so")
    lines += [f"{read.rule}  # without it: {read.lost}" for read in READS if read.lost]
    return lines


def context_name(kubeconfig: Path | None) -> str | None:
    """The kubeconfig's current context (the file, else $KUBECONFIG), to name whose credentials were
    refused; None in a pod (its service account) or when the file says none."""
    path = kubeconfig or (Path(os.environ["KUBECONFIG"]) if os.environ.get("KUBECONFIG") else None)
    if path is None:
        return None
    try:
        _, active = k8s_config.list_kube_config_contexts(config_file=str(path))  # type: ignore[no-untyped-call]
    except Exception:  # unreadable: api_client has already said so
        return None
    return str(active.get("name")) if active else None


class NoAccess(RuntimeError):
    """The cluster cannot be read at all (unreachable, unauthenticated, or a required read refused); the
    message says which, in plain words."""


def unreachable(server: str, error: BaseException) -> NoAccess:
    """`cannot reach the API server at URL: connection refused`, from whatever urllib3 wrapped it in."""
    return NoAccess(f"cannot reach the API server at {server}: {_cause(error)}")


def _cause(error: BaseException) -> str:
    seen: list[BaseException] = []
    current: object = error
    while isinstance(current, BaseException) and current not in seen:
        seen.append(current)
        reason = getattr(current, "reason", None)  # urllib3 keeps the cause there
        current = reason if isinstance(reason, BaseException) else (current.__cause__ or current.__context__)
    for found in reversed(seen):  # the innermost cause that says something plain
        if isinstance(found, ssl.SSLCertVerificationError):
            return f"its TLS certificate is not trusted ({found.verify_message})"
        if isinstance(found, ConnectionRefusedError):
            return "connection refused"
        if isinstance(found, socket.gaierror):
            return f"the host name does not resolve ({found.strerror})"
        if isinstance(found, TimeoutError):
            return "no answer (timed out)"
        if isinstance(found, ssl.SSLError):
            return f"TLS failed ({found.reason or found})"
        if isinstance(found, OSError) and found.strerror:
            return found.strerror[0].lower() + found.strerror[1:]
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def refused(error: ApiException, context: str | None, what: str) -> NoAccess:
    """401 and 403 as a person reads them: whose credentials, and which read was refused."""
    who = f"context {context}" if context else "the kubeconfig"
    if error.status == 401:
        return NoAccess(f"401 Unauthorized: the credentials of {who} were refused (expired or unknown)")
    message = ""
    try:
        message = str(json.loads(error.body or "{}").get("message") or "")
    except (ValueError, AttributeError):
        message = ""
    return NoAccess(f"{error.status} {error.reason}: {message or what} ({who})")


@dataclass(frozen=True)
class ServedCertificate:
    """The certificate a webhook serves and where doctor read it, as the findings name it: "the certificate
    in Secret NS/NAME (which the webhook's pods serve)" (Service mode: doctor cannot reach the pods) or "the
    certificate served at https://HOST:PORT" (URL mode: a TLS handshake). `pem` None when it could not be
    read, and `unread` says why."""

    source: str
    pem: bytes | None = None
    unread: str = ""


@dataclass
class Snapshot:
    server_version: tuple[int, int] | None = None
    webhook_configurations: list[JsonObject] = field(default_factory=list)
    services: dict[tuple[str, str], JsonObject | None] = field(default_factory=dict)
    endpoint_slices: dict[tuple[str, str], list[JsonObject]] = field(default_factory=dict)
    # the Deployments whose pods the webhook's Service selects (Service mode)
    webhook_deployments: dict[tuple[str, str], list[JsonObject]] = field(default_factory=dict)
    served_certificates: dict[str, ServedCertificate] = field(default_factory=dict)  # by configuration
    webhook_config_text: str | None = None  # the webhook's own config.yaml (its ConfigMap), when readable
    namespaces: dict[str, JsonObject | None] = field(default_factory=dict)
    workloads: dict[str, list[JsonObject]] = field(default_factory=dict)  # Deployments, StatefulSets
    jobs: dict[str, list[JsonObject]] = field(default_factory=dict)
    pods: dict[str, list[JsonObject]] = field(default_factory=dict)
    logs: dict[tuple[str, str, str], list[str] | str] = field(default_factory=dict)  # str: why not read
    applications: list[JsonObject] | None = None  # None: Argo CD not installed or not readable
    notes: list[str] = field(default_factory=list)


def _json(response: Any) -> Any:
    return json.loads(response.data)


class Reader:
    """`context`: the kubeconfig context's name, for the message when its credentials are refused."""

    def __init__(self, api: k8s.ApiClient, context: str | None = None) -> None:
        self.api = api
        self.context = context
        self.core = k8s.CoreV1Api(api)
        self.apps = k8s.AppsV1Api(api)
        self.batch = k8s.BatchV1Api(api)
        self.admission = k8s.AdmissionregistrationV1Api(api)
        self.discovery = k8s.DiscoveryV1Api(api)
        self.custom = k8s.CustomObjectsApi(api)

    def snapshot(
        self, namespaces: list[str] | None, label_selector: str | None, webhook: str | None
    ) -> Snapshot:
        """`namespaces` None: every namespace selected by `label_selector` (the opt-in label). Raises NoAccess
        when the API server cannot be reached, refuses the credentials or refuses a required read."""
        try:
            return self._snapshot(namespaces, label_selector, webhook)
        except ApiException as error:
            if error.status in (401, 403):
                raise refused(error, self.context, "a read doctor needs was refused") from error
            raise NoAccess(f"the API server answered {error.status} {error.reason}") from error
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise unreachable(str(self.api.configuration.host), error) from error

    def _snapshot(
        self, namespaces: list[str] | None, label_selector: str | None, webhook: str | None
    ) -> Snapshot:
        snap = Snapshot()
        version = k8s.VersionApi(self.api).get_code()
        snap.server_version = (int(version.major), int("".join(ch for ch in version.minor if ch.isdigit())))
        configurations = _json(self.admission.list_mutating_webhook_configuration(_preload_content=False))[
            "items"
        ]
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
                snap.services[key] = _absent_is_none(self.core.read_namespaced_service, key[1], key[0])
                slices = _json(
                    self.discovery.list_namespaced_endpoint_slice(
                        key[0], label_selector=f"kubernetes.io/service-name={key[1]}", _preload_content=False
                    )
                )
                snap.endpoint_slices[key] = slices.get("items") or []
                snap.served_certificates[name] = self._serving_secret(snap, key, name)
                if snap.webhook_config_text is None:
                    snap.webhook_config_text = self._webhook_config(snap, key[0], name)
            elif client_config.get("url"):
                snap.served_certificates[name] = served_certificate(client_config["url"])

    def _serving_secret(
        self, snap: Snapshot, service_key: tuple[str, str], configuration: str
    ) -> ServedCertificate:
        """The certificate the webhook's pods serve: the Secret volume of the Deployment behind the Service,
        else the chart's `<release>-tls` (which self-managed TLS writes and every replica copies)."""
        namespace, _ = service_key
        service = snap.services.get(service_key) or {}
        selector = (service.get("spec") or {}).get("selector") or {}
        candidates = []
        deployments = _json(self.apps.list_namespaced_deployment(namespace, _preload_content=False))
        for deployment in deployments.get("items") or []:
            labels = deployment["spec"]["template"]["metadata"].get("labels") or {}
            if selector and all(labels.get(k) == v for k, v in selector.items()):
                snap.webhook_deployments.setdefault(service_key, []).append(deployment)
                for volume in deployment["spec"]["template"]["spec"].get("volumes") or []:
                    if (volume.get("secret") or {}).get("secretName"):
                        candidates.append(volume["secret"]["secretName"])
        candidates.append(f"{configuration}-tls")
        for secret_name in dict.fromkeys(candidates):
            source = f"the certificate in Secret {namespace}/{secret_name} (which the webhook's pods serve)"
            try:
                secret = _json(
                    self.core.read_namespaced_secret(secret_name, namespace, _preload_content=False)
                )
            except ApiException as error:
                if error.status == 403:
                    secret = f"Secret {namespace}/{secret_name}"
                    snap.notes.append(f"no permission to read {secret}: the caBundle was not checked")
                    return ServedCertificate(source, unread=f"no permission to read {secret}")
                continue
            data = secret.get("data") or {}
            if "tls.crt" in data:
                return ServedCertificate(source, base64.b64decode(data["tls.crt"]))
        looked = ", ".join(dict.fromkeys(candidates))
        return ServedCertificate(
            f"Secret {namespace}/{candidates[0]}",
            unread=f"no serving Secret found in {namespace} (looked at {looked})",
        )

    def _webhook_config(self, snap: Snapshot, namespace: str, name: str) -> str | None:
        try:
            config_map = _json(self.core.read_namespaced_config_map(name, namespace, _preload_content=False))
        except ApiException as error:
            if error.status == 403:
                snap.notes.append(
                    f"no permission to read ConfigMap {namespace}/{name} (the webhook's settings): "
                    "engine defaults used"
                )
            return None
        return (config_map.get("data") or {}).get("config.yaml")

    # --- one namespace -------------------------------------------------------------------------------

    def _namespace(self, snap: Snapshot, namespace: str) -> None:
        snap.namespaces[namespace] = _absent_is_none(self.core.read_namespace, namespace)
        if snap.namespaces[namespace] is None:
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

    def _log(self, namespace: str, pod: str, container: str) -> list[str] | str:
        try:
            text = self.core.read_namespaced_pod_log(
                pod, namespace, container=container, tail_lines=LOG_LINES
            )
        except ApiException as error:
            if error.status == 403:
                return "logs unavailable (no permission to get pods/log)"
            return "logs unavailable (no kubelet answered)"
        except Exception:  # no kubelet answers: say so, carry on
            return "logs unavailable (no kubelet answered)"
        if text is None:  # an unscheduled pod: the API server answers an empty body, no kubelet to ask
            return "logs unavailable (the pod runs on no node)"
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
                    f"Argo CD Applications not readable ({error.status} {error.reason}): its checks were "
                    "skipped"
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


def _absent_is_none(call: Any, *args: Any) -> Any:
    """A read whose object may not exist: the JSON, or None when absent (404). Any other refusal is an
    error: a required read refused must not pass for "does not exist"."""
    try:
        return _json(call(*args, _preload_content=False))
    except ApiException as error:
        if error.status == 404:
            return None
        raise


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


def served_certificate(url: str, timeout: float = 5.0) -> ServedCertificate:
    """The leaf certificate a webhook URL serves (PEM), or why it could not be read. Verification is off on
    purpose: the point is to compare what is served with the caBundle."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 443
    source = f"the certificate served at https://{host}:{port}"
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
        return ServedCertificate(source, unread=f"cannot connect to {host}:{port} from here: {_cause(error)}")
    if not der:
        return ServedCertificate(source, unread=f"{host}:{port} sent no certificate")
    return ServedCertificate(source, ssl.DER_cert_to_PEM_cert(der).encode())
