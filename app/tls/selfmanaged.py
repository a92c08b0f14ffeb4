"""Self-managed TLS: the webhook keeps its own CA and serving certificate in a Secret and writes the CA
into its own MutatingWebhookConfiguration.

One replica at a time writes (it holds a coordination.k8s.io Lease); every replica copies the pair from
the Secret into its certificate folder, where the reloading listener picks it up. Across a CA rotation the
previous CA stays in the caBundle beside the new one, and the bundle is published before the new pair is,
so the API server trusts every certificate any replica may still serve. Annotating the Secret with
`airflow-migration-webhook/rotate=true` forces a CA rotation.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from app.clock import Clock, utc_now
from app.config import SelfManagedTLSConfig
from app.engine.names import ROTATE
from app.kube import Lease
from app.tls.issue import KeyPair, issue, new_ca, write_atomically

log = logging.getLogger("airflow_migration_webhook.selfmanaged")


def _certs_in(pem: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem) if pem.strip() else []
    except ValueError:
        return []


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


class CertificateManager:
    def __init__(
        self,
        config: SelfManagedTLSConfig,
        api: k8s.ApiClient,
        identity: str,
        now: Clock = utc_now,
    ) -> None:
        self.config = config
        self.identity = identity
        self.now = now
        self.core = k8s.CoreV1Api(api)
        self.admission = k8s.AdmissionregistrationV1Api(api)
        self.lease = Lease(
            api, config.namespace, config.lease_name, identity, config.lease_duration_seconds, now
        )

    # --- the Secret and the caBundle (leader only) --------------------------------------------------

    def _read_secret(self) -> Any | None:
        try:
            return self.core.read_namespaced_secret(self.config.secret_name, self.config.namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def _expiring(self, certificate: x509.Certificate) -> bool:
        return (
            certificate.not_valid_after_utc - dt.timedelta(days=self.config.renew_before_days) <= self.now()
        )

    def _leaf_fits(self, leaf_pem: bytes, ca: x509.Certificate) -> bool:
        found = _certs_in(leaf_pem)
        if not found:
            return False
        leaf = found[0]
        try:
            leaf.verify_directly_issued_by(ca)
            names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except Exception:  # any doubt about the stored leaf: issue a new one
            return False
        dns = set(names.get_values_for_type(x509.DNSName))
        ips = {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
        return (
            dns == set(self.config.dns_names)
            and ips == set(self.config.ip_addresses)
            and not self._expiring(leaf)
        )

    def desired_state(self, data: dict[str, bytes], rotate: bool) -> dict[str, bytes]:
        """What the Secret should hold: CA, bundle (current CA + previous CA), serving pair."""
        now = self.now()
        ca_certs = _certs_in(data.get("ca.crt", b""))
        ca = KeyPair(data["ca.crt"], data["ca.key"]) if ca_certs and data.get("ca.key") else None
        bundle = [c for c in _certs_in(data.get("ca-bundle.crt", b"")) if c.not_valid_after_utc > now]
        if ca is None or rotate or self._expiring(ca_certs[0]):
            previous = [ca_certs[0]] if ca is not None and ca_certs[0].not_valid_after_utc > now else []
            ca = new_ca(f"{self.config.webhook_configuration_name}-ca", self.config.ca_validity_days, now)
            ca_certs = _certs_in(ca.cert_pem)
            bundle = [ca_certs[0], *previous]
            log.info("new CA", extra={"fields": {"rotated": bool(previous), "rotate_requested": rotate}})
        elif not any(c == ca_certs[0] for c in bundle):
            bundle = [ca_certs[0], *bundle[:1]]
        bundle = bundle[:2]
        leaf = KeyPair(data.get("tls.crt", b""), data.get("tls.key", b""))
        if not self._leaf_fits(leaf.cert_pem, ca_certs[0]) or not leaf.key_pem:
            leaf = issue(
                ca,
                list(self.config.dns_names),
                list(self.config.ip_addresses),
                self.config.validity_days,
                now,
            )
            log.info("new serving certificate", extra={"fields": {"dns_names": list(self.config.dns_names)}})
        return {
            "ca.crt": ca.cert_pem,
            "ca.key": ca.key_pem,
            "ca-bundle.crt": b"".join(_pem(c) for c in bundle),
            "tls.crt": leaf.cert_pem,
            "tls.key": leaf.key_pem,
        }

    def publish_ca_bundle(self, bundle_pem: bytes) -> bool:
        """Patch caBundle of every webhook in our configuration, only where it differs."""
        wanted = base64.b64encode(bundle_pem).decode()
        configuration = self.admission.read_mutating_webhook_configuration(
            self.config.webhook_configuration_name
        )
        operations = []
        for index, webhook in enumerate(configuration.webhooks or []):
            current = webhook.client_config.ca_bundle if webhook.client_config else None
            if current != wanted:
                op = "replace" if current else "add"
                operations.append(
                    {"op": op, "path": f"/webhooks/{index}/clientConfig/caBundle", "value": wanted}
                )
        if not operations:
            return False
        self.admission.patch_mutating_webhook_configuration(
            self.config.webhook_configuration_name, operations
        )
        log.info("caBundle published", extra={"fields": {"webhooks": len(operations)}})
        return True

    def renew(self) -> None:
        """Leader only: make the Secret hold what `desired_state` says, trust published first."""
        secret = self._read_secret()
        data = {k: base64.b64decode(v) for k, v in ((secret.data or {}) if secret else {}).items()}
        annotations = dict((secret.metadata.annotations or {}) if secret else {})
        rotate = annotations.get(ROTATE, "").lower() == "true"
        wanted = self.desired_state(data, rotate)
        # trust first: the bundle must hold the new CA before any replica serves a certificate it signed
        self.publish_ca_bundle(wanted["ca-bundle.crt"])
        if wanted == data and not rotate:
            return
        annotations.pop(ROTATE, None)
        encoded = {k: base64.b64encode(v).decode() for k, v in wanted.items()}
        if not self.lease.hold():  # re-check right before writing
            return
        if secret is None:
            body = k8s.V1Secret(
                metadata=k8s.V1ObjectMeta(name=self.config.secret_name, annotations=annotations),
                type="kubernetes.io/tls",
                data=encoded,
            )
            self.core.create_namespaced_secret(self.config.namespace, body)
        else:
            secret.data = encoded
            secret.metadata.annotations = annotations
            self.core.replace_namespaced_secret(self.config.secret_name, self.config.namespace, secret)
        log.info("certificate secret written", extra={"fields": {"secret": self.config.secret_name}})

    # --- every replica ----------------------------------------------------------------------------

    def materialise(self) -> bool:
        """Copy the serving pair from the Secret into cert_dir; True when the files are in place."""
        secret = self._read_secret()
        data = (secret.data or {}) if secret else {}
        if "tls.crt" not in data or "tls.key" not in data:
            return False
        self.config.cert_dir.mkdir(parents=True, exist_ok=True)
        for key, mode in (("tls.key", 0o600), ("tls.crt", 0o644)):
            content = base64.b64decode(data[key])
            path = self.config.cert_dir / key
            if not path.exists() or path.read_bytes() != content:
                write_atomically(path, content, mode)
        return True

    def sync(self) -> bool:
        """One round: lead if we can, then materialise. Errors are logged, never raised."""
        try:
            if self.lease.hold():
                self.renew()
            return self.materialise()
        except (ApiException, OSError, ValueError) as error:
            log.error("self-managed TLS sync failed", extra={"fields": {"error": str(error)[:500]}})
            return False
