"""Certificates for the webhook: a CA and a serving certificate, in memory or written to a folder.

Used by `airflow-migration-webhook certs` (local runs, tests, manual installs) and by the self-managed
TLS mode. ECDSA P-256: fast to generate, accepted by every kube-apiserver since 1.x.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from app.clock import Clock, utc_now


@dataclass(frozen=True)
class KeyPair:
    cert_pem: bytes
    key_pem: bytes


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def new_ca(common_name: str, days: int, now: dt.datetime) -> KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def issue(
    ca: KeyPair,
    dns_names: list[str],
    ip_addresses: list[str],
    days: int,
    now: dt.datetime,
    *,
    client: bool = False,
) -> KeyPair:
    """A leaf certificate signed by `ca`: serving (SANs required) or, with `client`, for client auth."""
    if not client and not dns_names and not ip_addresses:
        raise ValueError("a serving certificate needs at least one DNS name or IP address")
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key must be an ECDSA key")
    key = ec.generate_private_key(ec.SECP256R1())
    common_name = (dns_names or ip_addresses or ["client"])[0]
    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    try:
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    except ValueError as error:
        raise ValueError(f"invalid IP address: {error}") from error
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


@dataclass(frozen=True)
class WrittenBundle:
    ca_bundle_b64: str
    written: list[Path]
    reused: list[Path]  # the existing CA, kept so that a registered caBundle stays valid


def write_certificates(
    out_dir: Path,
    dns_names: list[str],
    ip_addresses: list[str],
    days: int = 365,
    ca_days: int = 3650,
    overwrite: bool = False,
    now: Clock = utc_now,
) -> WrittenBundle:
    """Reuse the CA in `out_dir` (the caBundle stays valid) unless `overwrite`; always issue a new leaf."""
    if not dns_names and not ip_addresses:
        dns_names, ip_addresses = ["localhost"], ["127.0.0.1"]
    at = now()
    out_dir.mkdir(parents=True, exist_ok=True)
    ca_crt, ca_key = out_dir / "ca.crt", out_dir / "ca.key"
    reused = ca_crt.exists() and ca_key.exists() and not overwrite
    if reused:
        ca = KeyPair(ca_crt.read_bytes(), ca_key.read_bytes())
    else:
        ca = new_ca("airflow-migration-webhook-ca", ca_days, at)
        write_atomically(ca_key, ca.key_pem, 0o600)
        write_atomically(ca_crt, ca.cert_pem, 0o644)
    leaf = issue(ca, dns_names, ip_addresses, days, at)
    write_atomically(out_dir / "tls.key", leaf.key_pem, 0o600)
    write_atomically(out_dir / "tls.crt", leaf.cert_pem, 0o644)
    ca_files = [ca_crt, ca_key]
    leaf_files = [out_dir / "tls.crt", out_dir / "tls.key"]
    return WrittenBundle(
        ca_bundle_b64=base64.b64encode(ca.cert_pem).decode(),
        written=leaf_files if reused else ca_files + leaf_files,
        reused=ca_files if reused else [],
    )


def write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write next to the target, then rename: a reader never sees half a file."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    temporary.chmod(mode)
    temporary.replace(path)
