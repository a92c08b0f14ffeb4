"""TLS for the webhook port: a certificate source that re-reads its files when they change.

The listener gets one long-lived SSLContext whose SNI callback hands every new handshake the context
built from the newest valid pair, so a rotation (cert-manager, Secret volume update) needs no restart,
never disturbs connections in flight, and a broken new pair leaves the old one serving.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography import x509

log = logging.getLogger("airflow_migration_webhook.tls")


class CertificateError(RuntimeError):
    """The certificate files cannot be used; the message says which and why."""


@dataclass(frozen=True)
class LoadedPair:
    context: ssl.SSLContext
    fingerprint: str
    not_after: dt.datetime
    subject: str


class CertificateSource(Protocol):
    """What the listener and the certificate watcher need, wherever the pair comes from (files that a
    Secret volume or cert-manager updates, or files that self-managed TLS writes)."""

    server_context: ssl.SSLContext

    @property
    def current(self) -> LoadedPair: ...

    def reload_if_changed(self) -> bool | None: ...


class ReloadingCertificate:
    """A CertificateSource over a certificate and key file (and an optional client CA for mTLS)."""

    def __init__(self, cert_file: Path, key_file: Path, client_ca_file: Path | None = None) -> None:
        self._cert_file = cert_file
        self._key_file = key_file
        self._client_ca_file = client_ca_file
        self._current = self._load()  # raises CertificateError: no serving without a valid pair
        self.server_context = self._new_context()
        self.server_context.load_cert_chain(cert_file, key_file)
        self.server_context.sni_callback = self._select_context
        log.info("certificate loaded", extra={"fields": self._describe(self._current)})

    @property
    def current(self) -> LoadedPair:
        return self._current

    def _new_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_alpn_protocols(["http/1.1"])
        if self._client_ca_file is not None:
            # must be set on the listener's context too: verify mode is fixed when a connection starts
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cafile=str(self._client_ca_file))
        return context

    def _fingerprint(self) -> str:
        digest = hashlib.sha256()
        for path in (self._cert_file, self._key_file, self._client_ca_file):
            if path is not None:
                digest.update(path.read_bytes())
        return digest.hexdigest()

    def _load(self) -> LoadedPair:
        try:
            fingerprint = self._fingerprint()
            context = self._new_context()
            context.load_cert_chain(self._cert_file, self._key_file)
            certificate = x509.load_pem_x509_certificate(self._cert_file.read_bytes())
        except (OSError, ssl.SSLError, ValueError) as error:
            raise CertificateError(
                f"cannot load certificate {self._cert_file} / key {self._key_file}: {error}"
            ) from error
        return LoadedPair(
            context=context,
            fingerprint=fingerprint,
            not_after=certificate.not_valid_after_utc,
            subject=certificate.subject.rfc4514_string(),
        )

    def _select_context(
        self, connection: ssl.SSLObject | ssl.SSLSocket, _name: str | None, _ctx: object
    ) -> None:
        connection.context = self._current.context

    def reload_if_changed(self) -> bool | None:
        """True: new pair loaded; False: files unchanged; None: the new pair is broken (old one kept)."""
        try:
            if self._fingerprint() == self._current.fingerprint:
                return False
            candidate = self._load()
        except (OSError, CertificateError) as error:
            log.error(
                "certificate reload failed; still serving the previous certificate",
                extra={"fields": {"error": str(error), **self._describe(self._current)}},
            )
            return None
        self._current = candidate
        log.info("certificate reloaded", extra={"fields": self._describe(candidate)})
        return True

    @staticmethod
    def _describe(pair: LoadedPair) -> dict[str, str]:
        return {
            "subject": pair.subject,
            "not_after": pair.not_after.isoformat(),
            "sha256": pair.fingerprint[:16],
        }
