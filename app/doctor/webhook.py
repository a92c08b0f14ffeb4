"""The webhook's checks: is there one, can the API server reach it (Service, ready endpoints), does its
caBundle verify the certificate it serves, for the right name and still valid. Each problem's fix depends
on who writes what: the chart's TLS mode (`tls.mode`) and whether a Helm release installed it."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import shlex
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography import x509

from app.config import NamespaceLabel
from app.doctor.context import Context
from app.doctor.findings import Code, Finding, Severity
from app.doctor.gather import JsonObject, ServedCertificate, Snapshot
from app.engine.names import WEBHOOK_NAME

EXPIRY_WARNING = dt.timedelta(days=14)
RELEASE_NAME_ANNOTATION = "meta.helm.sh/release-name"  # written by `helm install`, not by `helm template`
RELEASE_NAMESPACE_ANNOTATION = "meta.helm.sh/release-namespace"
CERT_MANAGER_CA = "cert-manager.io/inject-ca-from"


def ref(kind: str, obj: JsonObject) -> str:
    metadata = obj.get("metadata") or {}
    namespace = f"{metadata['namespace']}/" if metadata.get("namespace") else ""
    return f"{kind}/{namespace}{metadata.get('name', '?')}"


def q(word: str) -> str:
    """A word of a printed command, quoted for the shell when it needs it."""
    return shlex.quote(word)


# --- the webhook -----------------------------------------------------------------------------------------


def ours(configuration: JsonObject) -> list[JsonObject]:
    webhooks = configuration.get("webhooks") or []
    named = [w for w in webhooks if w.get("name") == WEBHOOK_NAME]
    return named or webhooks


def install_command(label: NamespaceLabel) -> str:
    """The chart as the README installs it; the chart and the image are the user's (INPUTS)."""
    command = (
        'helm install airflow-migration-webhook "$CHART" -n airflow-migration-webhook --create-namespace '
        '--set image.repository="$IMAGE_REPOSITORY" --set image.tag="$IMAGE_TAG"'
    )
    if label != NamespaceLabel():
        command += f" --set webhook.namespaceLabel.key={q(label.key)}"
        command += f" --set webhook.namespaceLabel.value={q(label.value)}"
    return command


def _helm_upgrade(configuration: JsonObject, *settings: str) -> str:
    """`helm upgrade` of the release that installed this configuration; "" when no Helm release did
    (`helm template` + apply, Argo CD): then there is no release to upgrade."""
    annotations = (configuration.get("metadata") or {}).get("annotations") or {}
    release, namespace = (
        annotations.get(RELEASE_NAME_ANNOTATION),
        annotations.get(RELEASE_NAMESPACE_ANNOTATION),
    )
    if not release or not namespace:
        return ""
    sets = "".join(f" --set {setting}" for setting in settings)
    return f'helm upgrade -n {q(namespace)} {q(release)} "$CHART" --reuse-values{sets}'


def _patch(configuration: JsonObject, op: str, path: str, value: str | None = None) -> str:
    """`kubectl patch` of the configuration with one JSON-patch operation, in double quotes so that a value
    may be a shell expansion ($(...))."""
    operation = f'{{\\"op\\": \\"{op}\\", \\"path\\": \\"{path}\\"'
    if value is not None:
        operation += f', \\"value\\": \\"{value}\\"'
    name = q(configuration["metadata"]["name"])
    return f'kubectl patch mutatingwebhookconfiguration {name} --type=json -p "[{operation}}}]"'


def _webhook_index(configuration: JsonObject, webhook: JsonObject) -> int:
    return next(i for i, w in enumerate(configuration.get("webhooks") or []) if w is webhook)


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
                fix=install_command(context.label),
            )
        ]
    findings = []
    for configuration in snap.webhook_configurations:
        subject = ref("MutatingWebhookConfiguration", configuration)
        for webhook in ours(configuration):
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
            findings += _endpoints(snap, configuration, webhook)
            findings += _ca_bundle(snap, configuration, subject, webhook, context)
            if webhook.get("matchConditions") and snap.server_version and snap.server_version < (1, 28):
                index = _webhook_index(configuration, webhook)
                findings.append(
                    Finding(
                        "webhook",
                        subject,
                        Severity.WARNING,
                        Code.MATCH_CONDITIONS_UNSUPPORTED,
                        f"matchConditions on Kubernetes {snap.server_version[0]}.{snap.server_version[1]}, "
                        "which does not evaluate them by default",
                        fix=_helm_upgrade(configuration, "webhook.matchConditions=false")
                        or _patch(configuration, "remove", f"/webhooks/{index}/matchConditions"),
                    )
                )
    return findings


def _endpoints(snap: Snapshot, configuration: JsonObject, webhook: JsonObject) -> list[Finding]:
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
        upgrade = _helm_upgrade(configuration)
        return [
            Finding(
                "webhook",
                where,
                Severity.PROBLEM,
                Code.SERVICE_MISSING,
                f"the webhook's Service does not exist; {consequence}"
                + ("" if upgrade else " (re-apply the webhook chart's manifests: no Helm release made them)"),
                fix=upgrade,
                look_at=f"kubectl get deployments,services -n {q(key[0])}",
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
        selector = ((snap.services.get(key) or {}).get("spec") or {}).get("selector") or {}
        pods = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
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
                    f"kubectl scale deployment -n {q(key[0])} {q(scaled_down[0])} --replicas=2"
                    if scaled_down
                    else ""
                ),
                look_at=(
                    f"kubectl describe pods -n {q(key[0])} -l {q(pods)}"
                    if pods
                    else f"kubectl describe service -n {q(key[0])} {q(key[1])}"
                ),
            )
        ]
    return [Finding("webhook", where, Severity.OK, Code.ENDPOINTS_READY, f"{len(ready)} ready endpoint(s)")]


@dataclass(frozen=True)
class _Remedy:
    """What brings back a caBundle that verifies the served certificate, in the webhook's TLS mode."""

    mode: str
    fix: str = ""
    look_at: str = ""


def _tls_mode(snap: Snapshot, configuration: JsonObject, webhook: JsonObject, context: Context) -> str:
    """certManager, selfManaged or secret (the chart's tls.mode); `url` for a webhook outside the cluster
    that the chart does not serve."""
    name = configuration["metadata"]["name"]
    if CERT_MANAGER_CA in ((configuration.get("metadata") or {}).get("annotations") or {}):
        return "certManager"
    if context.self_managed is not None and context.self_managed.webhook_configuration_name == name:
        return "selfManaged"
    service = (webhook.get("clientConfig") or {}).get("service")
    if service is None:
        return "url"
    for deployment in snap.webhook_deployments.get((service["namespace"], service["name"]), []):
        for volume in _volumes(deployment):
            if volume.get("name") == "certs" and "emptyDir" in volume:  # the chart's selfManaged volume
                return "selfManaged"
    return "secret"


def _volumes(deployment: JsonObject) -> list[JsonObject]:
    template = (deployment.get("spec") or {}).get("template") or {}
    return list((template.get("spec") or {}).get("volumes") or [])


def _leader(namespace: str, lease: str) -> str:
    """The pod holding the self-managed TLS Lease (its holderIdentity is the pod's name), as a shell word."""
    return f"\"$(kubectl get lease -n {q(namespace)} {q(lease)} -o jsonpath='{{.spec.holderIdentity}}')\""


def _ca_bundle_remedy(
    snap: Snapshot, configuration: JsonObject, webhook: JsonObject, context: Context
) -> _Remedy:
    """Who writes the caBundle decides the fix. cert-manager's cainjector, from the Certificate. Self-managed
    TLS: the replica holding the Lease publishes the CA of the Secret it manages at start and every sync,
    so a bundle that stays wrong means that replica fails; deleting it hands the Lease to another. Otherwise
    the bundle is a value the user set (tls.secret.caBundle): set it again from the CA that signed the
    served certificate."""
    name = configuration["metadata"]["name"]
    mode = _tls_mode(snap, configuration, webhook, context)
    if mode == "certManager":
        namespace, _, certificate = str(configuration["metadata"]["annotations"][CERT_MANAGER_CA]).partition(
            "/"
        )
        return _Remedy(mode, look_at=f"kubectl describe certificate -n {q(namespace)} {q(certificate)}")
    if mode == "selfManaged":
        service = (webhook.get("clientConfig") or {}).get("service") or {}
        namespace = context.self_managed.namespace if context.self_managed else service.get("namespace", "")
        lease = context.self_managed.lease_name if context.self_managed else f"{name}-certs"
        leader = _leader(namespace, lease)
        return _Remedy(
            mode,
            fix=f"kubectl delete pod -n {q(namespace)} {leader}",
            look_at=f"kubectl logs -n {q(namespace)} {leader}",
        )
    ca = "$(base64 < \"$CERTS_DIR/ca.crt\" | tr -d '\\n')"
    upgrade = _helm_upgrade(configuration, f'tls.secret.caBundle="{ca}"')
    index = _webhook_index(configuration, webhook)
    patch = _patch(configuration, "add", f"/webhooks/{index}/clientConfig/caBundle", ca)
    return _Remedy(mode, fix=upgrade or patch)


def _reissue_remedy(
    snap: Snapshot, configuration: JsonObject, webhook: JsonObject, context: Context, names: list[str]
) -> _Remedy:
    """A serving certificate to issue again (expired, or for the wrong name): self-managed TLS re-issues it
    itself (its leader failing: the same remedy as for its caBundle); a user-provided Secret gets a new pair
    from the same CA (`certs` reuses the CA in its folder), which the server re-reads without a restart."""
    remedy = _ca_bundle_remedy(snap, configuration, webhook, context)
    if remedy.mode != "secret" and remedy.mode != "url":
        return remedy
    dns = [n for n in names if not _is_ip(n)]
    ips = [n for n in names if _is_ip(n)]
    certs = (
        'airflow-migration-webhook certs --out-dir "$CERTS_DIR"'
        + "".join(f" --dns {q(n)}" for n in dns)
        + "".join(f" --ip {q(n)}" for n in ips)
    )
    service = (webhook.get("clientConfig") or {}).get("service")
    secret = _mounted_secret(snap, service)
    if remedy.mode == "url" or secret is None:  # the server outside reads its files from where it was told
        return _Remedy(remedy.mode, fix=certs + " > /dev/null")
    namespace, secret_name = secret
    return _Remedy(
        remedy.mode,
        fix=f"{certs} > /dev/null && kubectl create secret tls {q(secret_name)} -n {q(namespace)} "
        '--cert "$CERTS_DIR/tls.crt" --key "$CERTS_DIR/tls.key" --dry-run=client -o yaml '
        "| kubectl apply -f -",
    )


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _mounted_secret(snap: Snapshot, service: JsonObject | None) -> tuple[str, str] | None:
    if not service:
        return None
    key = (service["namespace"], service["name"])
    for deployment in snap.webhook_deployments.get(key, []):
        for volume in _volumes(deployment):
            if volume.get("name") == "certs" and (volume.get("secret") or {}).get("secretName"):
                return key[0], volume["secret"]["secretName"]
    return None


def _ca_bundle(
    snap: Snapshot, configuration: JsonObject, subject: str, webhook: JsonObject, context: Context
) -> list[Finding]:
    client_config = webhook.get("clientConfig") or {}
    bundle_b64 = client_config.get("caBundle")
    served = snap.served_certificates.get(configuration["metadata"]["name"]) or ServedCertificate(
        "no certificate source", unread="no certificate source"
    )
    if not bundle_b64:
        remedy = _ca_bundle_remedy(snap, configuration, webhook, context)
        return [
            Finding(
                "webhook",
                subject,
                Severity.PROBLEM,
                Code.CA_BUNDLE_MISSING,
                "the webhook configuration has no caBundle: the API server cannot trust the webhook "
                f"(tls.mode {remedy.mode})",
                fix=remedy.fix,
                look_at=remedy.look_at,
            )
        ]
    if served.pem is None:
        return [
            Finding(
                "webhook",
                subject,
                Severity.WARNING,
                Code.CERTIFICATE_UNREAD,
                f"could not read {served.source}; the caBundle was not checked",
                evidence=(served.unread,),
            )
        ]
    try:
        bundle = x509.load_pem_x509_certificates(base64.b64decode(bundle_b64))
        leaf = x509.load_pem_x509_certificates(served.pem)[0]
    except ValueError as error:
        return [
            Finding("webhook", subject, Severity.PROBLEM, Code.CA_BUNDLE_MISMATCH, f"unreadable PEM: {error}")
        ]
    issuer = next((ca for ca in bundle if _issued_by(leaf, ca)), None)
    names = _names_of(leaf)
    wanted = _expected_name(client_config)
    evidence = (
        f"served: subject {leaf.subject.rfc4514_string()}, "
        f"issuer {leaf.issuer.rfc4514_string()}, names {', '.join(sorted(names)) or 'none'}",
        f"caBundle: {', '.join(ca.subject.rfc4514_string() for ca in bundle)}",
    )
    if issuer is None:
        remedy = _ca_bundle_remedy(snap, configuration, webhook, context)
        return [
            Finding(
                "webhook",
                subject,
                Severity.PROBLEM,
                Code.CA_BUNDLE_MISMATCH,
                f"the caBundle does not verify {served.source}: the API server cannot "
                f"call the webhook (tls.mode {remedy.mode})",
                evidence,
                remedy.fix,
                remedy.look_at,
            )
        ]
    if wanted and wanted not in names:
        remedy = _reissue_remedy(snap, configuration, webhook, context, [wanted])
        return [
            Finding(
                "webhook",
                subject,
                Severity.PROBLEM,
                Code.CA_BUNDLE_MISMATCH,
                f"{served.source} is not valid for {wanted}, the name the API server calls",
                evidence,
                remedy.fix,
                remedy.look_at,
            )
        ]
    findings = [
        Finding(
            "webhook",
            subject,
            Severity.OK,
            Code.CA_BUNDLE_OK,
            f"caBundle verifies {served.source}, valid until {leaf.not_valid_after_utc:%Y-%m-%d}",
        )
    ]
    left = leaf.not_valid_after_utc - context.now
    if left < EXPIRY_WARNING:  # (the API server refuses an expired certificate too)
        remedy = _reissue_remedy(snap, configuration, webhook, context, sorted(names) or [wanted or ""])
        expired = left <= dt.timedelta(0)
        findings.append(
            Finding(
                "webhook",
                subject,
                Severity.PROBLEM if expired else Severity.WARNING,
                Code.CERTIFICATE_EXPIRED if expired else Code.CERTIFICATE_EXPIRING,
                f"{served.source} expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
                if expired
                else f"{served.source} expires in {left.days} day(s)",
                fix=remedy.fix,
                look_at=remedy.look_at,
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
