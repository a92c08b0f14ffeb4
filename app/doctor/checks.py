"""Pure checks: a Snapshot in, findings out, in the order a person would look (webhook, namespace,
workloads, pods, migration Job, Argo CD). Workloads and pods are judged by the engine itself (`mutate` on
the live object, `inspect` on pods), so doctor and the webhook never disagree."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509

from app.config import NamespaceLabel
from app.doctor.findings import Code, Finding, Report, Severity
from app.doctor.gather import JsonObject, Snapshot
from app.engine import ENGINE_VERSION, EngineConfig, Reason, inspect, mutate
from app.engine.names import STEP_CONTAINER_NAME, WEBHOOK_NAME

EXPIRY_WARNING = dt.timedelta(days=14)
INSTALL = (
    "helm install airflow-migration-webhook charts/airflow-migration-webhook "
    "-n airflow-migration-webhook --create-namespace"
)
_MIGRATION_JOB_REASONS = {
    Reason.HOOK_JOB_MARKED,
    Reason.JOB_FORCE_SYNC_ADDED,
    Reason.JOB_FORCE_SYNC_PRESENT,
    Reason.JOB_NOT_ARGOCD_MANAGED,
    Reason.JOB_FORCE_DISABLED,
    Reason.UP_TO_DATE,
}


@dataclass(frozen=True)
class Context:
    engine: EngineConfig
    label: NamespaceLabel
    now: dt.datetime
    release: str | None = None


def diagnose(snap: Snapshot, context: Context) -> Report:
    webhooks = [w for c in snap.webhook_configurations for w in _ours(c)]
    if webhooks:  # the label the webhook really selects on, for the commands doctor suggests
        key, _, value = _opt_in_label(webhooks[0].get("namespaceSelector"), context.label).partition("=")
        context = replace(context, label=NamespaceLabel(key=key, value=value))
    findings = check_webhooks(snap, context)
    for namespace in snap.namespaces:
        findings += check_namespace(snap, namespace, context)
        if snap.namespaces[namespace] is None:
            continue
        findings += check_workloads(snap, namespace, context)
        findings += check_pods(snap, namespace, context)
        findings += check_jobs(snap, namespace, context)
        findings += check_argocd(snap, namespace)
    return Report(sorted(snap.namespaces), findings, list(snap.notes))


def ref(kind: str, obj: JsonObject) -> str:
    metadata = obj.get("metadata") or {}
    namespace = f"{metadata['namespace']}/" if metadata.get("namespace") else ""
    return f"{kind}/{namespace}{metadata.get('name', '?')}"


# --- 1. the webhook -----------------------------------------------------------------------------------------


def _ours(configuration: JsonObject) -> list[JsonObject]:
    webhooks = configuration.get("webhooks") or []
    named = [w for w in webhooks if w.get("name") == WEBHOOK_NAME]
    return named or webhooks


def check_webhooks(snap: Snapshot, context: Context) -> list[Finding]:
    if not snap.webhook_configurations:
        return [
            Finding(
                "webhook",
                "MutatingWebhookConfiguration/*",
                Severity.PROBLEM,
                Code.WEBHOOK_MISSING,
                f"no MutatingWebhookConfiguration with the webhook {WEBHOOK_NAME}: "
                "nothing adds the migrate step",
                fix=INSTALL,
            )
        ]
    findings = []
    for configuration in snap.webhook_configurations:
        subject = ref("MutatingWebhookConfiguration", configuration)
        for webhook in _ours(configuration):
            findings.append(
                Finding(
                    "webhook",
                    subject,
                    Severity.OK,
                    Code.WEBHOOK_FOUND,
                    f"{webhook.get('name')}: failurePolicy {webhook.get('failurePolicy', 'Fail')}, "
                    f"timeout {webhook.get('timeoutSeconds', 10)}s",
                )
            )
            findings += _endpoints(snap, subject, webhook)
            findings += _ca_bundle(snap, configuration, subject, webhook, context.now)
            if webhook.get("matchConditions") and snap.server_version and snap.server_version < (1, 28):
                findings.append(
                    Finding(
                        "webhook",
                        subject,
                        Severity.WARNING,
                        Code.MATCH_CONDITIONS_UNSUPPORTED,
                        f"matchConditions on Kubernetes {snap.server_version[0]}.{snap.server_version[1]}, "
                        "which does not evaluate them by default",
                        fix="helm upgrade ... --set webhook.matchConditions=false",
                    )
                )
    return findings


def _endpoints(snap: Snapshot, subject: str, webhook: JsonObject) -> list[Finding]:
    service = (webhook.get("clientConfig") or {}).get("service")
    if not service:
        return []
    key = (service["namespace"], service["name"])
    where = f"Service/{key[0]}/{key[1]}"
    ignore = webhook.get("failurePolicy") == "Ignore"
    consequence = (
        "with failurePolicy Ignore, Airflow objects created now are stored without the migrate step"
        if ignore
        else "with failurePolicy Fail, the API server refuses every matching object"
    )
    if snap.services.get(key) is None:
        return [
            Finding(
                "webhook",
                where,
                Severity.PROBLEM,
                Code.SERVICE_MISSING,
                f"the webhook's Service does not exist; {consequence}",
                fix=INSTALL,
            )
        ]
    ready = [
        address
        for piece in snap.endpoint_slices.get(key, [])
        for endpoint in piece.get("endpoints") or []
        if (endpoint.get("conditions") or {}).get("ready") is not False
        for address in endpoint.get("addresses") or []
    ]
    if not ready:
        # a webhook scaled to zero is brought back by scaling it up (to the chart's default replicas)
        scaled_down = [
            d["metadata"]["name"]
            for d in snap.webhook_deployments.get(key, [])
            if (d.get("spec") or {}).get("replicas") == 0
        ]
        return [
            Finding(
                "webhook",
                where,
                Severity.PROBLEM,
                Code.ENDPOINTS_NOT_READY,
                f"no ready endpoint behind the webhook's Service; {consequence}",
                evidence=(
                    f"{len(snap.endpoint_slices.get(key, []))} EndpointSlice(s), none with a ready address",
                    *(f"Deployment/{key[0]}/{name} is scaled to 0 replicas" for name in scaled_down),
                ),
                fix=(
                    f"kubectl scale deployment -n {key[0]} {scaled_down[0]} --replicas=2"
                    if scaled_down
                    else f"kubectl -n {key[0]} describe service {key[1]}"
                ),
            )
        ]
    return [Finding("webhook", where, Severity.OK, Code.ENDPOINTS_READY, f"{len(ready)} ready endpoint(s)")]


def _ca_bundle(
    snap: Snapshot, configuration: JsonObject, subject: str, webhook: JsonObject, now: dt.datetime
) -> list[Finding]:
    client_config = webhook.get("clientConfig") or {}
    bundle_b64 = client_config.get("caBundle")
    served = snap.served_certificates.get(configuration["metadata"]["name"])
    if not bundle_b64:
        return [
            Finding(
                "webhook",
                subject,
                Severity.PROBLEM,
                Code.CA_BUNDLE_MISSING,
                "the webhook configuration has no caBundle: the API server cannot trust the webhook",
                fix="set the caBundle (selfManaged, certManager write it; else tls.secret.caBundle)",
            )
        ]
    if served is None or isinstance(served, str):
        return [
            Finding(
                "webhook",
                subject,
                Severity.WARNING,
                Code.CERTIFICATE_UNREAD,
                "could not read the certificate the webhook serves; caBundle not checked",
                evidence=(served or "no certificate source",),
            )
        ]
    try:
        bundle = x509.load_pem_x509_certificates(base64.b64decode(bundle_b64))
        leaf = x509.load_pem_x509_certificates(served)[0]
    except ValueError as error:
        return [
            Finding("webhook", subject, Severity.PROBLEM, Code.CA_BUNDLE_MISMATCH, f"unreadable PEM: {error}")
        ]
    issuer = next((ca for ca in bundle if _issued_by(leaf, ca)), None)
    names = _names_of(leaf)
    wanted = _expected_name(client_config)
    evidence = (
        f"served: subject {leaf.subject.rfc4514_string()}, issuer {leaf.issuer.rfc4514_string()}, "
        f"names {', '.join(sorted(names)) or 'none'}",
        f"caBundle: {', '.join(ca.subject.rfc4514_string() for ca in bundle)}",
    )
    fix = (
        "put the CA that signed the serving certificate into the caBundle (self-managed TLS republishes it "
        "within a minute of a webhook restart; tls.mode=secret: tls.secret.caBundle)"
    )
    if issuer is None or (wanted and wanted not in names):
        message, action = (
            (
                "the caBundle does not verify the certificate the webhook serves: the API server cannot "
                "call it",
                fix,
            )
            if issuer is None
            else (
                f"the served certificate is not valid for {wanted}",
                "issue the serving certificate for that name (airflow-migration-webhook certs --dns)",
            )
        )
        return [
            Finding("webhook", subject, Severity.PROBLEM, Code.CA_BUNDLE_MISMATCH, message, evidence, action)
        ]
    findings = [
        Finding(
            "webhook",
            subject,
            Severity.OK,
            Code.CA_BUNDLE_OK,
            f"caBundle verifies the served certificate (valid until {leaf.not_valid_after_utc:%Y-%m-%d})",
        )
    ]
    left = leaf.not_valid_after_utc - now
    if left <= dt.timedelta(0):  # (the API server refuses an expired certificate too)
        findings.append(
            Finding(
                "webhook",
                subject,
                Severity.PROBLEM,
                Code.CERTIFICATE_EXPIRED,
                f"the serving certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC",
                fix=fix,
            )
        )
    elif left < EXPIRY_WARNING:
        findings.append(
            Finding(
                "webhook",
                subject,
                Severity.WARNING,
                Code.CERTIFICATE_EXPIRING,
                f"the serving certificate expires in {left.days} day(s)",
            )
        )
    return findings


def _issued_by(leaf: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        leaf.verify_directly_issued_by(ca)
    except Exception:
        return leaf == ca  # a self-signed serving certificate placed in the bundle itself
    return True


def _names_of(leaf: x509.Certificate) -> set[str]:
    try:
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return set(sans.get_values_for_type(x509.DNSName)) | {
        str(ip) for ip in sans.get_values_for_type(x509.IPAddress)
    }


def _expected_name(client_config: JsonObject) -> str | None:
    service = client_config.get("service")
    if service:
        return f"{service['name']}.{service['namespace']}.svc"
    return urlsplit(str(client_config.get("url") or "")).hostname


# --- 2. the namespace ---------------------------------------------------------------------------------------


def _label_list(labels: dict[str, str]) -> str:
    """`a=b,c=d`, as kubectl prints labels (`--show-labels`)."""
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items())) or "<none>"


def _selector_text(selector: JsonObject | None) -> str:
    """A label selector as kubectl's `-l` syntax reads: `a=b,c in (x,y),d notin (z),e,!f`."""
    if not selector:
        return "<everything>"
    terms = [f"{key}={value}" for key, value in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key"), expression.get("operator")
        values = ",".join(expression.get("values") or [])
        terms.append(
            {"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})", "Exists": f"{key}"}.get(
                str(operator), f"!{key}"
            )
        )
    return ",".join(terms)


def selects(selector: JsonObject | None, labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions) against a label set."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = (
            expression.get("key"),
            expression.get("operator"),
            expression.get("values") or [],
        )
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def _opt_in_label(selector: JsonObject | None, fallback: NamespaceLabel) -> str:
    for expression in (selector or {}).get("matchExpressions") or []:
        if expression.get("operator") == "In" and expression.get("values"):
            return f"{expression['key']}={expression['values'][0]}"
    for key, value in ((selector or {}).get("matchLabels") or {}).items():
        return f"{key}={value}"
    return fallback.selector


def check_namespace(snap: Snapshot, namespace: str, context: Context) -> list[Finding]:
    subject = f"Namespace/{namespace}"
    obj = snap.namespaces.get(namespace)
    if obj is None:
        return [Finding("namespace", subject, Severity.PROBLEM, Code.NAMESPACE_MISSING, "no such namespace")]
    labels = {**(obj["metadata"].get("labels") or {}), "kubernetes.io/metadata.name": namespace}
    webhooks = [w for c in snap.webhook_configurations for w in _ours(c)]
    if not webhooks:
        return []
    if any(selects(w.get("namespaceSelector"), labels) for w in webhooks):
        return [
            Finding("namespace", subject, Severity.OK, Code.NAMESPACE_SELECTED, "selected by the webhook")
        ]
    selector = webhooks[0].get("namespaceSelector")
    label = _opt_in_label(selector, context.label)
    key = label.split("=", 1)[0]
    excluded = key in labels and labels[key] == label.split("=", 1)[1]
    message = (
        "carries the opt-in label, but the webhook excludes it (its own namespace or excludeNamespaces)"
        if excluded
        else f"not opted in: the namespace lacks the label {label}, so the webhook never sees its objects"
    )
    return [
        Finding(
            "namespace",
            subject,
            Severity.PROBLEM,
            Code.NAMESPACE_NOT_SELECTED,
            message,
            evidence=(
                f"labels: {_label_list(obj['metadata'].get('labels') or {})}",
                f"namespaceSelector: {_selector_text(selector)}",
            ),
            fix="" if excluded else f"kubectl label namespace {namespace} {label}",
        )
    ]


# --- 3. workloads -------------------------------------------------------------------------------------------


def _in_release(obj: JsonObject, release: str | None) -> bool:
    if release is None:
        return True
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return release in (labels.get("app.kubernetes.io/instance"), labels.get("release"))


def reconcile_command(namespace: str, label: NamespaceLabel) -> str:
    command = f"airflow-migration-webhook reconcile --namespace {namespace}"
    if label != NamespaceLabel():
        command += f" --namespace-label-key {label.key} --namespace-label-value {label.value}"
    return command


def _airflow(objects: list[JsonObject], release: str | None) -> list[JsonObject]:
    """The Airflow objects of the release (all releases when None), as the engine recognises them."""
    return [obj for obj in objects if _in_release(obj, release) and inspect(obj) is not None]


# How doctor weighs the engine's verdict on a live workload: severity, what it says, whether `reconcile`
# fixes it. Other skips are fine as they are (the engine's own message says why).
_WORKLOAD_VERDICTS: dict[Reason, tuple[Severity, str, bool]] = {
    Reason.INJECTED: (
        Severity.PROBLEM,
        f"should carry the {STEP_CONTAINER_NAME} step and does not (created while the webhook was down or "
        "before the namespace was labelled): the webhook would add it",
        True,
    ),
    Reason.REINJECTED: (
        Severity.WARNING,
        f"carries a {STEP_CONTAINER_NAME} step built from an older spec or webhook version "
        f"(now {ENGINE_VERSION}); the webhook would rebuild it",
        True,
    ),
    Reason.UP_TO_DATE: (Severity.OK, "carries the step", False),
    Reason.OPTED_OUT: (Severity.WARNING, Reason.OPTED_OUT.message, False),
}


def check_workloads(snap: Snapshot, namespace: str, context: Context) -> list[Finding]:
    findings = []
    for workload in _airflow(snap.workloads.get(namespace, []), context.release):
        decision = mutate(workload, "UPDATE", context.engine).decision
        severity, message, reconciles = _WORKLOAD_VERDICTS.get(
            decision.reason, (Severity.OK, decision.message, False)
        )
        findings.append(
            Finding(
                "workload",
                ref(workload["kind"], workload),
                severity,
                decision.reason.value,
                f"{decision.profile or '?'} {decision.component or '?'}: {message}",
                evidence=decision.warnings if reconciles else (),
                fix=reconcile_command(namespace, context.label) if reconciles else "",
            )
        )
    if not findings:
        scope = f" of release {context.release}" if context.release else ""
        findings.append(
            Finding(
                "workload",
                f"Namespace/{namespace}",
                Severity.WARNING,
                Code.NO_AIRFLOW,
                f"no Airflow Deployment or StatefulSet{scope} here",
            )
        )
    return findings


# --- 4. pods ------------------------------------------------------------------------------------------------


def _since(timestamp: str | None, now: dt.datetime) -> str:
    if not timestamp:
        return ""
    try:
        started = dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return ""
    minutes = int((now - started).total_seconds() // 60)
    return f" for {minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f" for {minutes}m"


def _owner(snap: Snapshot, namespace: str, pod: JsonObject) -> JsonObject | None:
    labels = pod["metadata"].get("labels") or {}
    for workload in snap.workloads.get(namespace, []):
        selector = (workload.get("spec") or {}).get("selector")
        if selector and selects(selector, labels):
            return workload
    return None


def _log_evidence(snap: Snapshot, namespace: str, pod: str, container: str) -> tuple[str, ...]:
    lines = snap.logs.get((namespace, pod, container))
    if lines is None:
        return (f"{container}: logs unavailable (no kubelet answered, or no pods/log permission)",)
    return tuple(f"{container}: {line}" for line in lines) or (f"{container}: (no output)",)


def check_pods(snap: Snapshot, namespace: str, context: Context) -> list[Finding]:
    findings: list[Finding] = []
    healthy = 0
    for pod in snap.pods.get(namespace, []):
        facts = inspect(pod)
        if facts is None or not _in_release(pod, context.release):
            continue
        name = pod["metadata"]["name"]
        subject = ref("Pod", pod)
        statuses = (pod.get("status") or {}).get("initContainerStatuses") or []
        current = next(
            (s for s in statuses if ((s.get("state") or {}).get("terminated") or {}).get("exitCode") != 0),
            None,
        )
        if current is None:
            healthy += 1
            continue
        container = str(current.get("name"))
        state = current.get("state") or {}
        last = (current.get("lastState") or {}).get("terminated") or {}
        terminated = state.get("terminated") or {}
        exit_code = terminated.get("exitCode", last.get("exitCode"))
        waiting = (state.get("waiting") or {}).get("reason")
        # how long the pod has been stuck: since it started (a wait container that times out and restarts
        # begins a new attempt each time), with the restarts that took
        running_since = _since(
            pod["status"].get("startTime") or (state.get("running") or {}).get("startedAt"), context.now
        )
        if restarts := int(current.get("restartCount") or 0):
            running_since += f" ({restarts} restart{'s' if restarts > 1 else ''})"
        evidence = _log_evidence(snap, namespace, name, container)
        owner = _owner(snap, namespace, pod)
        if container == STEP_CONTAINER_NAME and exit_code not in (None, 0):
            findings.append(
                Finding(
                    "pod",
                    subject,
                    Severity.PROBLEM,
                    Code.STEP_FAILED,
                    f"{STEP_CONTAINER_NAME} failed with exit code {exit_code}"
                    + (f" ({waiting}, {current.get('restartCount', 0)} restarts)" if waiting else ""),
                    evidence=evidence,
                    fix=f"kubectl logs -n {namespace} {name} -c {STEP_CONTAINER_NAME}",
                )
            )
        elif container == facts.wait_container and not facts.step_present:
            owner_has_step = owner is not None and (inspect(owner) or facts).step_present
            # Under the default OrderedReady policy a StatefulSet does not replace a pod that is not Ready,
            # whatever its template says: such a pod must be deleted to be re-created with the step.
            stateful = owner is not None and owner.get("kind") == "StatefulSet"
            delete = f"kubectl delete pod -n {namespace} {name}"
            if owner is not None and owner_has_step:
                workload = f"{owner['kind'].lower()}/{owner['metadata']['name']}"
                fix = delete if stateful else f"kubectl rollout restart -n {namespace} {workload}"
            else:
                fix = reconcile_command(namespace, context.label) + (f" && {delete}" if stateful else "")
            findings.append(
                Finding(
                    "pod",
                    subject,
                    Severity.PROBLEM,
                    Code.WAITING_WITHOUT_STEP,
                    f"stuck in {container}{running_since}: it waits for a migration, and the pod has no "
                    f"{STEP_CONTAINER_NAME} step to run it"
                    + (" (its workload has the step now: the pod predates it)" if owner_has_step else ""),
                    evidence=evidence,
                    fix=fix,
                )
            )
        else:
            findings.append(
                Finding(
                    "pod",
                    subject,
                    Severity.WARNING,
                    Code.POD_STUCK_IN_INIT,
                    f"in init container {container}{running_since}"
                    + (f" ({waiting})" if waiting else "")
                    + (f", last exit code {exit_code}" if exit_code not in (None, 0) else ""),
                    evidence=evidence,
                    fix=f"kubectl logs -n {namespace} {name} -c {container}",
                )
            )
    if healthy:
        findings.append(
            Finding(
                "pod",
                f"Namespace/{namespace}",
                Severity.OK,
                Code.POD_READY,
                f"{healthy} Airflow pod(s) past their init containers",
            )
        )
    return findings


# --- 5. the migration Job and Argo CD -----------------------------------------------------------------------


def check_jobs(snap: Snapshot, namespace: str, context: Context) -> list[Finding]:
    findings = []
    for job in _airflow(snap.jobs.get(namespace, []), context.release):
        if mutate(job, "CREATE", context.engine).decision.reason not in _MIGRATION_JOB_REASONS:
            continue
        subject = ref("Job", job)
        status = job.get("status") or {}
        conditions = {c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"}
        if "Failed" in conditions or (status.get("failed") and not status.get("active")):
            failed = conditions.get("Failed") or {}
            findings.append(
                Finding(
                    "job",
                    subject,
                    Severity.PROBLEM,
                    Code.JOB_FAILED,
                    " ".join(
                        ["the migration Job failed:", failed.get("reason", ""), failed.get("message", "")]
                    ).strip(),
                    fix=f"kubectl logs -n {namespace} job/{job['metadata']['name']}",
                )
            )
        elif status.get("succeeded") or "Complete" in conditions:
            findings.append(
                Finding("job", subject, Severity.OK, Code.JOB_SUCCEEDED, "the migration Job succeeded")
            )
        else:
            findings.append(
                Finding(
                    "job",
                    subject,
                    Severity.OK,
                    Code.JOB_RUNNING,
                    f"the migration Job has not finished ({status.get('active', 0)} active)",
                )
            )
    return findings


def check_argocd(snap: Snapshot, namespace: str) -> list[Finding]:
    findings = []
    for application in snap.applications or []:
        destination = (application.get("spec") or {}).get("destination") or {}
        if destination.get("namespace") != namespace:
            continue
        status: dict[str, Any] = application.get("status") or {}
        operation = status.get("operationState") or {}
        phase = operation.get("phase") or "none"
        message = str(operation.get("message") or "")
        sync = (status.get("sync") or {}).get("status", "?")
        health = (status.get("health") or {}).get("status", "?")
        evidence = (f"sync {sync}, health {health}, operation {phase}", *((message,) if message else ()))
        subject = ref("Application", application)
        if phase == "Running":
            findings.append(
                Finding(
                    "argocd",
                    subject,
                    Severity.WARNING,
                    Code.ARGOCD_WAITING,
                    "the sync is still running"
                    + (f": {message}" if message else "")
                    + " (a PostSync migration hook runs only once every workload is Healthy)",
                    evidence=evidence,
                )
            )
        else:
            findings.append(
                Finding(
                    "argocd", subject, Severity.OK, Code.ARGOCD_OPERATION, f"last operation {phase}", evidence
                )
            )
    return findings
