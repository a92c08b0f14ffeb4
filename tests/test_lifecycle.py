"""Operations of the real server process: mutual TLS, certificate rotation under load, SIGTERM under load,
and the fail-open paths of the review handler."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509

from app.admission.handler import ReviewHandler, parse_timeout
from app.engine import EngineConfig, MutationResult
from app.metrics import Metrics
from app.tls.issue import KeyPair, issue, new_ca, write_certificates
from tests.servers import WebhookProcess, start_webhook
from tests.test_http import HEADERS, review

SCHEDULER = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "s", "namespace": "a"},
    "spec": {
        "template": {
            "metadata": {"labels": {"tier": "airflow", "component": "scheduler"}},
            "spec": {
                "containers": [
                    {
                        "name": "scheduler",
                        "image": "apache/airflow:3.0.2",
                        "args": ["bash", "-c", "exec airflow scheduler"],
                    }
                ]
            },
        }
    },
}


def served_certificate(port: int, context: ssl.SSLContext) -> x509.Certificate:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


class Load:
    """Requests in a loop from several threads; every answer is checked, every failure kept."""

    def __init__(self, webhook: WebhookProcess, threads: int = 4, keep_alive: bool = True) -> None:
        self.webhook = webhook
        self.keep_alive = keep_alive
        self.stop = threading.Event()
        self.ok = 0
        self.refused: list[float] = []
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(30)

    def _one(self, client: httpx.Client) -> None:
        body = review(SCHEDULER)
        for attempt in range(2):
            try:
                response = client.post(self.webhook.url, content=json.dumps(body), headers=HEADERS)
            except httpx.ConnectError:
                with self._lock:
                    self.refused.append(time.monotonic())
                time.sleep(0.05)
                return
            except httpx.RemoteProtocolError as error:
                # the server closed an idle keep-alive connection as we reused it; like Go's
                # transport (errServerClosedIdle), retry once on a new connection
                if attempt == 0:
                    continue
                with self._lock:
                    self.failures.append(repr(error))
                return
            except httpx.HTTPError as error:
                with self._lock:
                    self.failures.append(repr(error))
                return
            answer = response.json() if response.status_code == 200 else {}
            good = (
                response.status_code == 200
                and answer["response"]["uid"] == body["request"]["uid"]
                and answer["response"].get("patchType") == "JSONPatch"
            )
            with self._lock:
                if good:
                    self.ok += 1
                else:
                    self.failures.append(f"{response.status_code} {response.text[:200]}")
            return

    def _run(self) -> None:
        client = self.webhook.client() if self.keep_alive else None
        while not self.stop.is_set():
            if client is None:
                with self.webhook.client() as fresh:
                    self._one(fresh)
            else:
                self._one(client)
        if client is not None:
            client.close()


# --- mutual TLS -------------------------------------------------------------------------------------


def test_mutual_tls_accepts_only_clients_of_the_given_ca(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    client_ca = new_ca("apiserver-clients", 30, now)
    (tmp_path / "client-ca.crt").write_bytes(client_ca.cert_pem)
    good, stranger = tmp_path / "good", tmp_path / "stranger"
    for folder, ca in ((good, client_ca), (stranger, new_ca("someone-else", 30, now))):
        folder.mkdir()
        pair = issue(ca, [], [], 30, now, client=True)
        (folder / "tls.crt").write_bytes(pair.cert_pem)
        (folder / "tls.key").write_bytes(pair.key_pem)
    webhook = start_webhook(tmp_path, extra_args=["--client-ca-file", str(tmp_path / "client-ca.crt")])
    try:
        with webhook.client(client_cert=good) as client:
            response = client.post(webhook.url, content=json.dumps(review(SCHEDULER)), headers=HEADERS)
            assert response.status_code == 200
        for credentials in (None, stranger):
            with (
                pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)),
                webhook.client(client_cert=credentials) as client,
            ):
                client.post(webhook.url, content=json.dumps(review(SCHEDULER)), headers=HEADERS)
    finally:
        assert webhook.stop() == 0


# --- certificate rotation while requests flow ----------------------------------------------------------


def test_certificate_rotation_under_load(tmp_path: Path) -> None:
    webhook = start_webhook(tmp_path, server={"cert_reload_interval_seconds": 0.2})
    cert_dir = webhook.cert_dir
    first = served_certificate(webhook.port, webhook.tls_context())
    try:
        with (
            Load(webhook, threads=2, keep_alive=True) as steady,
            Load(webhook, threads=2, keep_alive=False) as fresh,
        ):
            time.sleep(0.5)
            # a broken pair: a new certificate with a key that does not match it
            ca = KeyPair((cert_dir / "ca.crt").read_bytes(), (cert_dir / "ca.key").read_bytes())
            stray = issue(ca, ["localhost"], ["127.0.0.1"], 10, dt.datetime.now(dt.UTC))
            (cert_dir / "tls.key").write_bytes(stray.key_pem)
            time.sleep(1.0)
            assert (
                served_certificate(webhook.port, webhook.tls_context()).serial_number == first.serial_number
            )
            assert "certificate reload failed" in webhook.log()
            # a good new pair from the same CA (what cert-manager renewal does)
            write_certificates(cert_dir, ["localhost"], ["127.0.0.1"])
            deadline = time.monotonic() + 10
            while (
                served_certificate(webhook.port, webhook.tls_context()).serial_number == first.serial_number
            ):
                assert time.monotonic() < deadline, "the new certificate was never served"
                time.sleep(0.1)
            time.sleep(0.5)
        assert steady.failures == [] and fresh.failures == []
        assert steady.refused == [] and fresh.refused == []
        assert steady.ok > 20 and fresh.ok > 5
        metrics = httpx.get(f"{webhook.health}/metrics").text
        assert 'airflow_migration_webhook_certificate_reloads_total{result="reloaded"}' in metrics
        assert 'airflow_migration_webhook_certificate_reloads_total{result="failed"}' in metrics
    finally:
        assert webhook.stop() == 0


def test_server_refuses_to_start_without_a_valid_certificate(tmp_path: Path) -> None:
    write_certificates(tmp_path / "certs", ["localhost"], [])
    (tmp_path / "certs" / "tls.key").write_text("not a key")
    with pytest.raises(RuntimeError, match="cannot load certificate"):
        start_webhook(tmp_path)


# --- SIGTERM while requests flow ----------------------------------------------------------------------


def test_sigterm_drains_and_exits_zero_without_failing_requests(tmp_path: Path) -> None:
    drain = 1.0
    webhook = start_webhook(tmp_path, server={"drain_delay_seconds": drain, "shutdown_grace_seconds": 10})
    slow_result: dict[str, Any] = {}

    def slow_upload() -> None:
        """A big review uploaded slowly, still in flight when the listeners close."""
        body = json.dumps(review(SCHEDULER)).encode()
        padded = body[:-2] + b"," + b'"pad":"' + b"x" * 200_000 + b'"' + body[-2:]

        def chunks() -> Any:
            for start in range(0, len(padded), 20_000):
                yield padded[start : start + 20_000]
                time.sleep(0.2)

        with webhook.client() as client:
            slow_result["response"] = client.post(webhook.url, content=chunks(), headers=HEADERS, timeout=30)

    with Load(webhook, threads=3) as load:
        time.sleep(0.5)
        uploader = threading.Thread(target=slow_upload)
        uploader.start()
        time.sleep(drain)  # the upload takes ~2 s: it straddles the end of the drain
        signalled = time.monotonic()
        webhook.process.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        assert httpx.get(f"{webhook.health}/readyz").status_code == 503
        code = webhook.process.wait(drain + 15)
        exited = time.monotonic()
        uploader.join(30)
    assert code == 0
    assert exited - signalled < drain + 12
    assert load.failures == []
    assert load.ok > 20
    assert all(moment >= signalled + drain - 0.1 for moment in load.refused), "refused during the drain"
    assert slow_result["response"].status_code == 200


# --- fail-open paths of the handler (in process: the real engine cannot be made to fail) ---------------


def _handler(run_engine: Any, deadline: float = 1.0, inline: int = 0) -> tuple[ReviewHandler, Metrics]:
    metrics = Metrics()
    handler = ReviewHandler(EngineConfig(), metrics, deadline, ThreadPoolExecutor(1), run_engine, inline)
    return handler, metrics


@pytest.mark.parametrize("inline", [0, 1 << 20], ids=["in-a-thread", "on-the-event-loop"])
def test_an_engine_exception_is_admitted_with_a_warning(inline: int) -> None:
    def broken(*_: object) -> MutationResult:
        raise KeyError("bug")

    handler, metrics = _handler(broken, inline=inline)
    body = review(SCHEDULER)
    answer = asyncio.run(handler.handle(json.dumps(body).encode(), "5s"))
    assert answer.status == 200
    response = answer.body["response"]
    assert response["allowed"] is True and "patch" not in response
    assert response["warnings"][0].startswith("airflow-migration-webhook: engine_error:")
    assert metrics.engine_errors.labels(cause="exception")._value.get() == 1


def test_a_slow_engine_is_cut_off_inside_the_api_server_timeout() -> None:
    """Reviews above inline_engine_max_bytes run in a thread under the deadline (here every review does)."""

    def slow(*_: object) -> MutationResult:
        time.sleep(2)
        raise AssertionError("unreachable in time")

    handler, metrics = _handler(slow, deadline=4.0, inline=0)
    started = time.monotonic()
    answer = asyncio.run(handler.handle(json.dumps(review(SCHEDULER)).encode(), "1s"))
    assert time.monotonic() - started < 1.0
    assert answer.body["response"]["allowed"] is True
    assert "deadline exceeded" in answer.body["response"]["warnings"][0]
    assert metrics.engine_errors.labels(cause="deadline")._value.get() == 1


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("5s", 5.0), ("10s", 10.0), ("500ms", 0.5), ("1m", 60.0), ("", None), ("soon", None), ("xs", None)],
)
def test_parse_timeout(value: str, seconds: float | None) -> None:
    assert parse_timeout(value) == seconds


def test_an_idle_keep_alive_client_that_never_answers_does_not_hold_shutdown(tmp_path: Path) -> None:
    """A client that keeps an idle HTTPS connection and never reads (so never answers the TLS close) must
    not keep the process alive for the whole grace period: with nothing in flight it exits within the
    drain delay plus a second."""
    drain = 0.5
    webhook = start_webhook(tmp_path, server={"drain_delay_seconds": drain, "shutdown_grace_seconds": 20})
    context = webhook.tls_context()
    raw = socket.create_connection(("127.0.0.1", webhook.port))
    conn = context.wrap_socket(raw, server_hostname="localhost")
    body = json.dumps(review(SCHEDULER)).encode()
    conn.sendall(
        b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    response = b""
    while b"\r\n\r\n" not in response or not response.rstrip().endswith(b"}"):
        response += conn.recv(65536)
    assert response.startswith(b"HTTP/1.1 200")
    try:
        signalled = time.monotonic()
        webhook.process.send_signal(signal.SIGTERM)
        code = webhook.process.wait(30)
        elapsed = time.monotonic() - signalled
    finally:
        raw.close()
    assert code == 0
    assert elapsed < drain + 1, f"exit took {elapsed:.1f} s with one idle keep-alive connection"
    assert '"stopped"' in webhook.log()


@pytest.mark.parametrize("how", ["flag", "env"])
def test_health_host_flag_and_env_move_the_health_listener(tmp_path: Path, how: str) -> None:
    """The configuration file binds health to 127.0.0.2; `--health-host` (or AMW_HEALTH_HOST) moves it to
    127.0.0.1, where start_webhook waits for /readyz, and nothing is left on 127.0.0.2."""
    flags = ["--health-host", "127.0.0.1"] if how == "flag" else None
    env = {"AMW_HEALTH_HOST": "127.0.0.1"} if how == "env" else None
    webhook = start_webhook(tmp_path, server={"health_host": "127.0.0.2"}, env=env, extra_args=flags)
    try:
        assert httpx.get(f"http://127.0.0.1:{webhook.health_port}/readyz").text == "ok"
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.2:{webhook.health_port}/readyz", timeout=2)
    finally:
        assert webhook.stop() == 0
