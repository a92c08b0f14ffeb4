"""The pure part of self-managed TLS: what the Secret should hold at a given moment (no API calls; the
API side is proven in tests/test_e2e.py against a real kube-apiserver)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from kubernetes import client as k8s

from app.config import SelfManagedTLSConfig
from app.tls.selfmanaged import CertificateManager

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def manager(at: dt.datetime, dns: tuple[str, ...] = ("svc.ns.svc",)) -> CertificateManager:
    config = SelfManagedTLSConfig(
        namespace="ns",
        secret_name="s",
        lease_name="l",
        webhook_configuration_name="w",
        dns_names=dns,
        validity_days=30,
        ca_validity_days=90,
        renew_before_days=7,
        cert_dir=Path("/nonexistent"),
    )
    return CertificateManager(config, k8s.ApiClient(), "me", now=lambda: at)


def certs(pem: bytes) -> list[x509.Certificate]:
    return list(x509.load_pem_x509_certificates(pem))


def test_first_state_has_a_ca_a_bundle_and_a_pair_for_the_service() -> None:
    state = manager(START).desired_state({}, rotate=False)
    [ca] = certs(state["ca.crt"])
    assert certs(state["ca-bundle.crt"]) == [ca]
    [leaf] = certs(state["tls.crt"])
    leaf.verify_directly_issued_by(ca)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["svc.ns.svc"]


def test_a_fresh_state_is_kept_as_it_is() -> None:
    state = manager(START).desired_state({}, rotate=False)
    assert manager(START + dt.timedelta(days=10)).desired_state(state, rotate=False) == state


def test_the_pair_is_renewed_before_it_expires_and_the_ca_kept() -> None:
    state = manager(START).desired_state({}, rotate=False)
    later = manager(START + dt.timedelta(days=24)).desired_state(state, rotate=False)
    assert later["ca.crt"] == state["ca.crt"] and later["ca-bundle.crt"] == state["ca-bundle.crt"]
    assert later["tls.crt"] != state["tls.crt"]


def test_new_dns_names_get_a_new_pair() -> None:
    state = manager(START).desired_state({}, rotate=False)
    moved = manager(START, dns=("other.ns.svc",)).desired_state(state, rotate=False)
    assert moved["tls.crt"] != state["tls.crt"] and moved["ca.crt"] == state["ca.crt"]


def test_ca_rotation_keeps_the_previous_ca_in_the_bundle() -> None:
    state = manager(START).desired_state({}, rotate=False)
    [old_ca] = certs(state["ca.crt"])
    for rotated in (
        manager(START).desired_state(state, rotate=True),
        manager(START + dt.timedelta(days=85)).desired_state(state, rotate=False),
    ):
        [new_ca] = certs(rotated["ca.crt"])
        assert new_ca != old_ca
        assert certs(rotated["ca-bundle.crt"]) == [new_ca, old_ca]
        certs(rotated["tls.crt"])[0].verify_directly_issued_by(new_ca)


def test_an_expired_previous_ca_leaves_the_bundle() -> None:
    state = manager(START).desired_state({}, rotate=False)
    rotated = manager(START).desired_state(state, rotate=True)
    # day 91: both earlier CAs (90 days) have expired; only the CA made that day is trusted
    much_later = manager(START + dt.timedelta(days=91)).desired_state(rotated, rotate=False)
    assert certs(much_later["ca-bundle.crt"]) == certs(much_later["ca.crt"])
    assert certs(much_later["ca.crt"])[0] not in certs(rotated["ca-bundle.crt"])


def test_garbage_in_the_secret_is_replaced() -> None:
    state = manager(START).desired_state(
        {"ca.crt": b"junk", "tls.crt": b"junk", "tls.key": b"k"}, rotate=False
    )
    certs(state["tls.crt"])[0].verify_directly_issued_by(certs(state["ca.crt"])[0])
