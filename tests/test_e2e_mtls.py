"""Mutual TLS end to end: a real kube-apiserver that presents a client certificate to webhooks (through its
AdmissionConfiguration), and the webhook started with --client-ca-file. A webhook that trusts another CA
refuses the API server, which then applies `failurePolicy: Fail`."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from app.tls.issue import issue, new_ca
from tests.cluster import Cluster, start_cluster
from tests.servers import start_webhook
from tests.test_chart import sets
from tests.test_e2e import (
    dry_run_create,
    injected,
    labelled_namespace,
    probe,
    register,
    secret_tls,
    wait_until_injecting,
)

pytestmark = pytest.mark.e2e
LABEL = "e2e-mtls/inject"


@pytest.fixture(scope="module")
def mtls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Path]]:
    work = tmp_path_factory.mktemp("mtls")
    now = dt.datetime.now(dt.UTC)
    clients = new_ca("apiserver-clients", 2, now)
    pair = issue(clients, [], [], 2, now, client=True)
    (work / "client-ca.crt").write_bytes(clients.cert_pem)
    kubeconfig = work / "webhook-kubeconfig.yaml"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "users": [
                    {
                        "name": "*",
                        "user": {
                            "client-certificate-data": base64.b64encode(pair.cert_pem).decode(),
                            "client-key-data": base64.b64encode(pair.key_pem).decode(),
                        },
                    }
                ],
            }
        )
    )
    cluster = start_cluster(work / "cluster", webhook_kubeconfig=kubeconfig)
    yield cluster, work
    cluster.stop()


def test_the_api_server_is_served_only_with_its_client_certificate(mtls: tuple[Cluster, Path]) -> None:
    cluster, work = mtls
    trusting = start_webhook(work / "trusting", extra_args=["--client-ca-file", str(work / "client-ca.crt")])
    ca_bundle = base64.b64encode((trusting.cert_dir / "ca.crt").read_bytes()).decode()
    fail = sets("webhook.failurePolicy=Fail")
    try:
        register(cluster, "amw-mtls", "amw-mtls", LABEL, *secret_tls(ca_bundle, trusting.url), *fail)
        labelled_namespace(cluster, "mtls", LABEL)
        wait_until_injecting(cluster, "mtls")
        assert injected(json.loads(dry_run_create(cluster, probe("mtls", "with-cert")).stdout))
    finally:
        assert trusting.stop() == 0

    other_ca = work / "other-ca.crt"
    other_ca.write_bytes(new_ca("someone-else", 2, dt.datetime.now(dt.UTC)).cert_pem)
    (work / "strict").mkdir()
    strict = start_webhook(
        work / "strict", cert_dir=trusting.cert_dir, extra_args=["--client-ca-file", str(other_ca)]
    )
    try:
        register(cluster, "amw-mtls", "amw-mtls", LABEL, *secret_tls(ca_bundle, strict.url), *fail)
        port = f":{strict.port}/"
        for _ in range(100):  # the API server picks up the new URL asynchronously
            refused = dry_run_create(cluster, probe("mtls", "cert-not-trusted"), check=False)
            if port in refused.stderr:
                break
            time.sleep(0.2)
        assert refused.returncode != 0
        assert "failed calling webhook" in refused.stderr and port in refused.stderr, refused.stderr
        assert "connection refused" not in refused.stderr  # the server is up: the TLS handshake is refused
    finally:
        assert strict.stop() == 0
