"""A real kube-apiserver and Debian's etcd on free loopback ports, for one test module.

Which kube-apiserver: scripts/kube-apiserver.sh chooses ($AMW_KUBE_APISERVER, else the v1.32.13 binary from
../shared/tools, else v1.20.2 built from Debian's source) and the tier reports it. No controllers, scheduler
or kubelet run: nothing creates pods, and namespaces get no default ServiceAccount. Kubernetes 1.20 also
lacks matchConditions, `policy/v1` and the automatic `kubernetes.io/metadata.name` namespace label; the
tests that need them say so where they run on 1.20."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import functools
import ipaddress
import re
import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.servers import free_port
from tests.support import REPO

ETCD = "/usr/bin/etcd"
SERVERS_USED: list[str] = []  # printed in the test session's summary (tests/conftest.py)


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert(
    subject: x509.Name,
    key: rsa.RSAPrivateKey,
    issuer: x509.Name,
    signer: rsa.RSAPrivateKey,
    *,
    ca: bool = False,
    usage: x509.ObjectIdentifier | None = None,
    sans: list[x509.GeneralName] | None = None,
) -> bytes:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(signer, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@dataclass
class Cluster:
    kubeconfig: Path
    server: str
    pki: Path
    processes: list[subprocess.Popen[bytes]]
    logs: Path
    version: tuple[int, int]

    @property
    def modern(self) -> bool:
        """Serves what current clusters have: matchConditions (GA in 1.30), policy/v1, the namespace name
        label; the chart's defaults then apply unchanged."""
        return self.version >= (1, 30)

    @property
    def kube_version(self) -> str:
        return f"{self.version[0]}.{self.version[1]}.0"

    def run_tool(
        self, tool: str, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """kubectl or helm (.cache/bin, scripts/install-helm.sh) against this cluster."""
        binary = shutil.which(tool, path=str(REPO / ".cache" / "bin")) or tool
        result = subprocess.run(
            [binary, "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{tool} {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}"
            )
        return result

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.run_tool("kubectl", *args, input=input, check=check)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@functools.cache
def apiserver() -> tuple[Path, tuple[int, int]]:
    """The chosen kube-apiserver binary and its version (printed once, so the test output says which)."""
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "kube-apiserver.sh")],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if result.returncode != 0:
        raise RuntimeError(f"choosing or building kube-apiserver failed:\n{result.stderr[-4000:]}")
    binary = Path(result.stdout.strip().splitlines()[-1])
    reported = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True).stdout
    found = re.search(r"v(\d+)\.(\d+)", reported)
    if found is None:
        raise RuntimeError(f"{binary} --version said {reported!r}")
    SERVERS_USED.append(f"end-to-end tier: {reported.strip()} ({binary})")
    return binary, (int(found.group(1)), int(found.group(2)))


def routes_out() -> list[str]:
    """This process's routes through any link but `lo`, e.g. "default via 192.0.2.1 dev eth0" (/proc/net is
    the process's own network namespace; the IPv6 table includes the local routes)."""
    found = []
    with contextlib.suppress(FileNotFoundError):
        for row in [line.split() for line in Path("/proc/net/route").read_text().splitlines()[1:]]:
            if row and row[0] != "lo":
                dest, gateway, mask = (socket.inet_ntoa(bytes.fromhex(v)[::-1]) for v in row[1:3] + row[7:8])
                prefix = ipaddress.ip_network(f"{dest}/{mask}", strict=False)
                via = f" via {gateway}" if gateway != "0.0.0.0" else ""
                found.append(f"{'default' if prefix.prefixlen == 0 else prefix}{via} dev {row[0]}")
    with contextlib.suppress(FileNotFoundError):  # no such file: IPv6 disabled
        for row in [line.split() for line in Path("/proc/net/ipv6_route").read_text().splitlines()]:
            if row and row[-1] != "lo":
                dest6, gateway6 = (ipaddress.IPv6Address(bytes.fromhex(v)) for v in (row[0], row[4]))
                length = int(row[1], 16)
                via = f" via {gateway6}" if int(gateway6) else ""
                found.append(f"{'default' if length == 0 else f'{dest6}/{length}'}{via} dev {row[-1]}")
    return found


def require_isolated_network() -> None:
    """The API server dials webhooks registered by Service at their ClusterIP (10.0.0.x here): with a route
    out, that traffic would leave the machine. Inside scripts/isolated.sh only `lo` exists and it fails at
    once with "network unreachable"."""
    found = routes_out()
    if found:
        raise RuntimeError(
            "the end-to-end tier runs only inside an isolated network namespace: run it through "
            "scripts/test.sh (scripts/isolated.sh); routes out of this one: " + "; ".join(found[:10])
        )


def start_cluster(work: Path, webhook_kubeconfig: Path | None = None) -> Cluster:
    """`webhook_kubeconfig`: credentials the API server presents to webhooks (its AdmissionConfiguration).
    Refuses to start where the network namespace has a route out (require_isolated_network)."""
    require_isolated_network()
    binary, version = apiserver()
    pki = work / "pki"
    pki.mkdir(parents=True)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "k8s-test-ca")])
    (pki / "ca.crt").write_bytes(_cert(ca_name, ca_key, ca_name, ca_key, ca=True))
    server_key, admin_key, sa_key = _key(), _key(), _key()
    (pki / "apiserver.key").write_bytes(_pem_key(server_key))
    (pki / "apiserver.crt").write_bytes(
        _cert(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
            server_key,
            ca_name,
            ca_key,
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
            sans=[x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")],
        )
    )
    (pki / "admin.key").write_bytes(_pem_key(admin_key))
    (pki / "admin.crt").write_bytes(
        _cert(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "admin"),
                ]
            ),
            admin_key,
            ca_name,
            ca_key,
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        )
    )
    write_service_account_keys(pki, sa_key)

    logs = work / "logs"
    logs.mkdir()
    etcd_client, etcd_peer, secure = free_port(), free_port(), free_port()
    processes: list[subprocess.Popen[bytes]] = []
    with (logs / "etcd.log").open("wb") as log:
        processes.append(
            subprocess.Popen(
                [
                    ETCD,
                    "--name",
                    "amw-test",
                    "--data-dir",
                    str(work / "etcd-data"),
                    "--listen-client-urls",
                    f"http://127.0.0.1:{etcd_client}",
                    "--advertise-client-urls",
                    f"http://127.0.0.1:{etcd_client}",
                    "--listen-peer-urls",
                    f"http://127.0.0.1:{etcd_peer}",
                    "--initial-advertise-peer-urls",
                    f"http://127.0.0.1:{etcd_peer}",
                    "--initial-cluster",
                    f"amw-test=http://127.0.0.1:{etcd_peer}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    _wait(
        lambda: httpx.get(f"http://127.0.0.1:{etcd_client}/health", timeout=1).json().get("health") == "true",
        processes[-1],
        logs / "etcd.log",
    )
    with (logs / "kube-apiserver.log").open("wb") as log:
        processes.append(
            subprocess.Popen(
                [
                    str(binary),
                    f"--etcd-servers=http://127.0.0.1:{etcd_client}",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={secure}",
                    *(["--insecure-port=0"] if version < (1, 24) else []),  # removed in 1.24
                    "--advertise-address=127.0.0.1",
                    f"--tls-cert-file={pki / 'apiserver.crt'}",
                    f"--tls-private-key-file={pki / 'apiserver.key'}",
                    f"--client-ca-file={pki / 'ca.crt'}",
                    "--service-cluster-ip-range=10.0.0.0/24",
                    "--service-account-issuer=https://kubernetes.default.svc",
                    f"--service-account-key-file={pki / 'sa.pub'}",
                    f"--service-account-signing-key-file={pki / 'sa.key'}",
                    "--authorization-mode=RBAC",
                    "--endpoint-reconciler-type=none",
                    "--enable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
                    *(
                        [f"--admission-control-config-file={_admission_config(work, webhook_kubeconfig)}"]
                        if webhook_kubeconfig
                        else []
                    ),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    server = f"https://127.0.0.1:{secure}"
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.load_cert_chain(pki / "admin.crt", pki / "admin.key")
    admin = httpx.Client(verify=context)
    _wait(
        lambda: admin.get(f"{server}/readyz", timeout=2).text == "ok",
        processes[-1],
        logs / "kube-apiserver.log",
        timeout=120,
    )
    kubeconfig = work / "kubeconfig"
    write_kubeconfig(
        kubeconfig,
        server,
        pki / "ca.crt",
        client_certificate_user(pki, "admin"),
    )
    return Cluster(kubeconfig, server, pki, processes, logs, version)


def _admission_config(work: Path, webhook_kubeconfig: Path) -> Path:
    path = work / "admission-config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "apiserver.config.k8s.io/v1",
                "kind": "AdmissionConfiguration",
                "plugins": [
                    {
                        "name": "MutatingAdmissionWebhook",
                        "configuration": {
                            "apiVersion": "apiserver.config.k8s.io/v1",
                            "kind": "WebhookAdmissionConfiguration",
                            "kubeConfigFile": str(webhook_kubeconfig),
                        },
                    }
                ],
            }
        )
    )
    return path


def write_service_account_keys(pki: Path, key: rsa.RSAPrivateKey) -> None:
    """sa.key and sa.pub: the API server's service-account token signing pair."""
    (pki / "sa.key").write_bytes(_pem_key(key))
    (pki / "sa.pub").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def client_certificate_user(pki: Path, name: str) -> dict[str, str]:
    """A kubeconfig user authenticating with pki/NAME.crt and NAME.key."""
    return {
        "client-certificate-data": base64.b64encode((pki / f"{name}.crt").read_bytes()).decode(),
        "client-key-data": base64.b64encode((pki / f"{name}.key").read_bytes()).decode(),
    }


def write_kubeconfig(path: Path, server: str, ca_file: Path, user: dict[str, str]) -> None:
    """A kubeconfig for `server` with the given user credentials (client certificate or token)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "test",
        "clusters": [
            {
                "name": "test",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_file.read_bytes()).decode(),
                },
            }
        ],
        "users": [{"name": "user", "user": user}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "user"}}],
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)


def _wait(ready: object, process: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    """Until `ready()` is true; fails with the log's tail if the process exits or the time runs out. The
    component is named after its log file (etcd.log: etcd)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{log.stem} exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if ready():  # type: ignore[operator]
                return
        except (httpx.HTTPError, OSError, ValueError, subprocess.SubprocessError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{log.stem} not ready after {timeout} s:\n{log.read_text()[-3000:]}")
