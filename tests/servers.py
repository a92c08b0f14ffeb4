"""Start the real webhook process (uvicorn, real TLS) for the HTTP tiers."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from app.tls.issue import write_certificates
from tests.support import REPO


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class WebhookProcess:
    process: subprocess.Popen[bytes]
    port: int
    health_port: int
    cert_dir: Path
    log_path: Path
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/mutate"

    @property
    def health(self) -> str:
        return f"http://127.0.0.1:{self.health_port}"

    def tls_context(self, client_cert: Path | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.cert_dir / "ca.crt"))
        if client_cert is not None:
            context.load_cert_chain(client_cert / "tls.crt", client_cert / "tls.key")
        return context

    def client(self, client_cert: Path | None = None, **kwargs: object) -> httpx.Client:
        return httpx.Client(verify=self.tls_context(client_cert), timeout=10, **kwargs)  # type: ignore[arg-type]

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


def start_webhook(
    tmp: Path,
    *,
    server: dict[str, object] | None = None,
    engine: dict[str, object] | None = None,
    extra_args: list[str] | None = None,
    cert_dir: Path | None = None,
    port: int | None = None,
    self_managed: dict[str, object] | None = None,
    env: dict[str, str] | None = None,
    reconcile: dict[str, object] | None = None,
    top_level: dict[str, object] | None = None,
) -> WebhookProcess:
    """`serve` as users run it; `top_level` adds settings beside the sections (kubeconfig, namespace_label).
    With self-managed TLS no --cert-file is passed: the server serves the pair it writes to its cert_dir."""
    cert_dir = cert_dir or tmp / "certs"
    if not (cert_dir / "tls.crt").exists():
        write_certificates(cert_dir, ["localhost"], ["127.0.0.1"])
    port, health_port = port or free_port(), free_port()
    config = tmp / f"config-{port}.yaml"
    base = {"drain_delay_seconds": 0.5, "health_host": "127.0.0.1"}
    settings: dict[str, object] = {"server": {**base, **(server or {})}, "engine": engine or {}}
    if self_managed is not None:
        settings["self_managed_tls"] = self_managed
    if reconcile is not None:
        settings["reconcile"] = reconcile
    settings.update(top_level or {})
    config.write_text(yaml.safe_dump(settings))
    log_path = tmp / f"webhook-{port}.log"
    args = [
        sys.executable,
        "-m",
        "app",
        "serve",
        *(
            []
            if self_managed
            else ["--cert-file", str(cert_dir / "tls.crt"), "--key-file", str(cert_dir / "tls.key")]
        ),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--health-port",
        str(health_port),
        "--config",
        str(config),
        *(extra_args or []),
    ]
    environment = {**{k: v for k, v in os.environ.items() if not k.startswith("AMW_")}, **(env or {})}
    with log_path.open("wb") as log:
        process = subprocess.Popen(args, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=environment)
    handle = WebhookProcess(process, port, health_port, cert_dir, log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"webhook exited with {process.returncode}:\n{handle.log()}")
        try:
            if httpx.get(f"{handle.health}/readyz", timeout=1).status_code == 200:
                return handle
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    handle.stop()
    raise RuntimeError(f"webhook not ready after 30 s:\n{handle.log()}")
