"""A real single-node Kubernetes cluster in a network namespace of its own, for the node tier.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet on containerd (runc, Debian's CNI
bridge plugin), kube-proxy (iptables) and CoreDNS as cluster DNS, all real (binaries from
scripts/kube-node.sh: ../shared/tools v1.32.13, sha256-checked, or $AMW_KUBE_BIN_DIR). What
../shared/notes/real-node.md found it takes on these machines is applied here:

- One holder process owns a new network namespace and a private mount namespace (`unshare --net --mount`).
  The network namespace holds `lo`, a port-less bridge `node0` carrying the node IP, the CNI bridge and the
  pods' veths: no link out and no default route, so no packet to a pod IP, a ClusterIP or anything else can
  leave the machine. A route for the Service range on `node0` lets the API server dial a webhook's ClusterIP.
- The mount namespace gets a fresh sysfs (with the cgroup hierarchies moved back under it) and private
  mounts over the paths containerd, runc, CNI and kubelet hard-code (/run, /var/log, /var/lib/kubelet,
  /var/lib/cni). Every component is started with `nsenter -t HOLDER -m -n`, so their mounts vanish with it.
- Pods' cgroups live under a cgroup root of the run's own (`kubelet --cgroup-root`), removed at teardown;
  the machine-wide sysctls kubelet sets are saved before and restored after.
- The tests reach the API server through tests/netns_forward.py: a loopback port of the test run's own
  namespace, forwarded by a process that moved itself into the cluster's namespace.

No registry is reached: images are OCI archives built by the run (tests/images.py, scripts/build-image.sh)
and imported with `ctr -n k8s.io images import`; pods use `imagePullPolicy: Never`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import os
import signal
import ssl
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.cluster import (
    Cluster,
    _cert,
    _key,
    _pem_key,
    _wait,
    client_certificate_user,
    write_kubeconfig,
    write_service_account_keys,
)
from tests.servers import free_port
from tests.support import REPO
from tests.test_chart import CHART, helm

AIRFLOW_NODE_VERSION = "3.0.2"  # the Airflow stand-in image the releases run (tests/images.py)
# the upgrade scenario: a release of the first, then the second (Airflow 2.6 -> 2.10: pending migrations)
AIRFLOW_UPGRADE = ("2.6.3", "2.10.5")
WEBHOOK_IMAGE = ("localhost/airflow-migration-webhook", "test")  # scripts/build-image.sh
WEBHOOK_NAMESPACE = "airflow-migration-webhook"
WEBHOOK_RELEASE = "amw"
OPT_IN_LABEL = "airflow-migration-webhook/inject=enabled"
NODE_NAME = "amw-node"
TIMELINES: list[str] = []  # what the node tier's scenarios saw, printed in the session's summary
NODE_IP = "10.200.0.1"
POD_CIDR = "10.244.0.0/24"
SERVICE_CIDR = "10.96.0.0/24"
KUBERNETES_SERVICE_IP = "10.96.0.1"
DNS_SERVICE_IP = "10.96.0.10"
API_PORT = 6443
ETCD_PORT = 2379
CNI_BIN_DIR = "/usr/lib/cni"
# what kubelet sets machine-wide when it starts (protectKernelDefaults: false): saved and restored
KUBELET_SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)


# what containerd, CNI and kubelet create on the host by default; the cluster's configuration moves them
HOST_PATHS_NEVER_CREATED = (
    Path("/opt/containerd"),
    Path("/etc/cni"),
    Path("/opt/cni"),
    Path("/usr/libexec/kubernetes"),
    Path("/etc/kubernetes"),
    Path("/var/lib/containerd"),
)


class NodeUnavailable(Exception):
    """The node tier cannot run on this clone (no binaries): the tier skips with this reason."""


def node_binaries() -> Path:
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "kube-node.sh")], capture_output=True, text=True, timeout=900
    )
    if result.returncode == 3:
        raise NodeUnavailable(result.stderr.strip().splitlines()[-1])
    if result.returncode != 0:
        raise RuntimeError(f"scripts/kube-node.sh failed:\n{result.stderr[-4000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


def read_sysctls(names: Iterable[str] = KUBELET_SYSCTLS) -> dict[str, str]:
    return {name: Path("/proc/sys", name).read_text().strip() for name in names}


def cgroup_hierarchies() -> list[Path]:
    """Every mounted cgroup hierarchy (v1 controllers, name=systemd, and the unified v2 tree)."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.split()[0] in ("cgroup", "cgroup2"):
            found.append(Path(left.split()[4]))
    return found


def namespace_id(pid: int, kind: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def processes_in_namespace(kind: str, ident: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "ns" / kind) == ident:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@dataclasses.dataclass
class NodeCluster(Cluster):
    """A Cluster (same kubectl, kubeconfig and version) that also runs pods."""

    holder: subprocess.Popen[bytes] | None = None
    state: Path = Path()
    binaries: Path = Path()
    cgroup_root: str = ""
    saved_sysctls: dict[str, str] = dataclasses.field(default_factory=dict)
    net_namespace: str = ""
    mount_namespace: str = ""
    created_dirs: list[Path] = dataclasses.field(default_factory=list)
    host_paths: dict[Path, bool] = dataclasses.field(default_factory=dict)  # existed before the start?

    @property
    def enter_node(self) -> tuple[str, ...]:
        """A command prefix that runs a process in the cluster's network and mount namespaces."""
        assert self.holder is not None
        return ("nsenter", "-t", str(self.holder.pid), "-m", "-n", "--")

    def cgroup_dirs(self) -> list[Path]:
        """The run's cgroup root in every hierarchy: where the pods' cgroups live."""
        return [hierarchy / self.cgroup_root.lstrip("/") for hierarchy in cgroup_hierarchies()]

    def in_node(
        self, *argv: str, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run a command as a process of the node."""
        return subprocess.run(
            [*self.enter_node, *argv],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    @property
    def enter_network(self) -> tuple[str, ...]:
        """A command prefix that runs a process in the cluster's network namespace only."""
        assert self.holder is not None
        return ("nsenter", "-t", str(self.holder.pid), "-n", "--")

    def helm(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return self.run_tool("helm", *args, check=check, timeout=timeout)

    def pods(self, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        args = ["pods", "-n", namespace, *(["-l", selector] if selector else [])]
        return self.get_json(*args)["items"]  # type: ignore[no-any-return]

    def ctr(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        result = self.in_node(
            "ctr", "--address", str(self.state / "containerd.sock"), "-n", "k8s.io", *args, timeout=timeout
        )
        if result.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)} failed:\n{result.stderr[-3000:]}")
        return result

    def import_image(self, archive: Path) -> None:
        self.ctr("images", "import", "--no-unpack=false", str(archive))

    def wait_for(
        self, what: str, check: Callable[[], bool], timeout: float = 180, interval: float = 1
    ) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(interval)

    def get_json(self, *args: str) -> dict[str, object]:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)  # type: ignore[no-any-return]

    def stop(self) -> None:
        teardown(self)

    def leftovers(self) -> list[str]:
        """What the cluster left on the machine after stop(): empty when teardown was complete."""
        problems = []
        for kind, ident in (("net", self.net_namespace), ("mnt", self.mount_namespace)):
            pids = processes_in_namespace(kind, ident)
            if pids:
                problems.append(f"processes still in the cluster's {kind} namespace: {pids}")
        problems += [f"cgroup left: {path}" for path in self.cgroup_dirs() if path.exists()]
        mounts = Path("/proc/self/mountinfo").read_text()
        if str(self.state) in mounts:
            problems.append(f"mounts under {self.state} left in the test run's mount namespace")
        now = read_sysctls(self.saved_sysctls)
        for name, value in self.saved_sysctls.items():
            if now[name] != value:
                problems.append(f"sysctl {name} is {now[name]!r}, was {value!r}")
        for path in (
            *self.created_dirs,
            *(p for p in HOST_PATHS_NEVER_CREATED if not self.host_paths.get(p)),
        ):
            if path.exists():
                problems.append(f"directory left: {path}")
        return problems


def render_official(
    namespace: str, db_host: str, db_port: int, *values: str, database: str = "airflow"
) -> str:
    """The official chart 1.18.0 as `helm template` renders it with the node tier's values
    (tests/fixtures/node-values: local images, an external PostgreSQL, LocalExecutor, no volumes)."""
    return helm(
        "template",
        "airflow",
        str(REPO / "tests" / "fixtures" / "chart-sources" / "apache-airflow-1.18.0.tgz"),
        "--namespace",
        namespace,
        "--kube-version",
        "1.32.0",
        "-f",
        str(REPO / "tests" / "fixtures" / "node-values" / "apache-airflow-1.18.0.yaml"),
        "--set",
        f"data.metadataConnection.host={db_host}",
        "--set",
        f"data.metadataConnection.port={db_port}",
        "--set",
        f"data.metadataConnection.db={database}",
        *values,
    ).stdout


def render_bitnami(namespace: str, db_host: str, db_port: int, database: str = "airflow") -> str:
    """Bitnami's chart 24.1.0 as `helm template` renders it with the node tier's values
    (tests/fixtures/node-values: the Bitnami-style stand-in image, an external PostgreSQL, LocalExecutor)."""
    fixtures = REPO / "tests" / "fixtures"
    return helm(
        "template", "airflow", str(fixtures / "chart-sources" / "bitnami-airflow-24.1.0.tgz"),
        "--namespace", namespace, "--kube-version", "1.32.0",
        "-f", str(fixtures / "node-values" / "bitnami-airflow-24.1.0.yaml"),
        "--set", f"externalDatabase.host={db_host}", "--set", f"externalDatabase.port={db_port}",
        "--set", f"externalDatabase.database={database}",
    ).stdout  # fmt: skip


def install_webhook(cluster: NodeCluster, *values: str) -> str:
    """`helm install` of the webhook's chart with its image from the Dockerfile: defaults otherwise."""
    repository, tag = WEBHOOK_IMAGE
    cluster.helm(
        "install",
        WEBHOOK_RELEASE,
        str(CHART),
        "--namespace",
        WEBHOOK_NAMESPACE,
        "--create-namespace",
        "--set",
        f"image.repository={repository}",
        "--set",
        f"image.tag={tag}",
        "--set",
        "image.pullPolicy=Never",
        *values,
        "--wait",
        "--timeout",
        "5m",
    )
    return WEBHOOK_RELEASE


def _pki(pki: Path) -> None:
    """A CA and one certificate per component, each named as Kubernetes's RBAC defaults expect."""
    pki.mkdir(parents=True)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "amw-node-ca")])
    (pki / "ca.crt").write_bytes(_cert(ca_name, ca_key, ca_name, ca_key, ca=True))
    (pki / "ca.key").write_bytes(_pem_key(ca_key))

    def issue(name: str, common_name: str, org: str | None, usage: x509.ObjectIdentifier, sans=()) -> None:  # type: ignore[no-untyped-def]
        key = _key()
        attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        if org:
            attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
        (pki / f"{name}.key").write_bytes(_pem_key(key))
        (pki / f"{name}.crt").write_bytes(
            _cert(x509.Name(attributes), key, ca_name, ca_key, usage=usage, sans=list(sans) or None)
        )

    client = ExtendedKeyUsageOID.CLIENT_AUTH
    issue(
        "apiserver",
        "kube-apiserver",
        None,
        ExtendedKeyUsageOID.SERVER_AUTH,
        [
            x509.IPAddress(ipaddress.ip_address(address))
            for address in ("127.0.0.1", NODE_IP, KUBERNETES_SERVICE_IP)
        ]
        + [
            x509.DNSName(name)
            for name in (
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            )
        ],
    )
    issue("admin", "admin", "system:masters", client)
    issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters", client)
    issue("kubelet", f"system:node:{NODE_NAME}", "system:nodes", client)
    issue("controller-manager", "system:kube-controller-manager", None, client)
    issue("scheduler", "system:kube-scheduler", None, client)
    issue("proxy", "system:kube-proxy", None, client)
    issue("coredns", "system:coredns", None, client)
    write_service_account_keys(pki, _key())


def _kubeconfig(path: Path, pki: Path, user: str, server: str = f"https://{NODE_IP}:{API_PORT}") -> Path:
    write_kubeconfig(
        path,
        server,
        pki / "ca.crt",
        client_certificate_user(pki, user),
    )
    return path


HOLDER_INIT = """\
set -eu
state=$1
ip link set lo up
ip link add node0 type bridge
ip addr add {node_ip}/24 dev node0
ip link set node0 up
ip route add {service_cidr} dev node0 src {node_ip}
# a sysfs of this network namespace, with the machine's cgroup hierarchies moved back under it
mkdir -p "$state/cgroup-hold"
mount --rbind /sys/fs/cgroup "$state/cgroup-hold"
mount -t sysfs sysfs /sys
mount --move "$state/cgroup-hold" /sys/fs/cgroup
# private copies of the paths containerd, runc, CNI and kubelet hard-code
mount -t tmpfs -o mode=755 tmpfs /run
mount -t tmpfs -o mode=755 tmpfs /var/log
mount --bind "$state/kubelet" /var/lib/kubelet
mount --bind "$state/cni" /var/lib/cni
touch "$state/holder.ready"
exec sleep infinity
"""


def _containerd_config(state: Path) -> str:
    return textwrap.dedent(
        f"""\
        version = 2
        root = "{state}/containerd/root"
        state = "{state}/containerd/state"
        oom_score = 0
        [grpc]
          address = "{state}/containerd.sock"
        [plugins."io.containerd.internal.v1.opt"]
          path = "{state}/containerd/opt"
        [plugins."io.containerd.grpc.v1.cri"]
          sandbox_image = "localhost/pause:3.10"
          restrict_oom_score_adj = true
          netns_mounts_under_state_dir = true
          enable_selinux = false
          [plugins."io.containerd.grpc.v1.cri".containerd]
            snapshotter = "overlayfs"
            default_runtime_name = "runc"
            [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
              runtime_type = "io.containerd.runc.v2"
              [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
                SystemdCgroup = false
          [plugins."io.containerd.grpc.v1.cri".cni]
            bin_dir = "{CNI_BIN_DIR}"
            conf_dir = "{state}/cni/net.d"
        """
    )


CNI_CONFIG = {
    "cniVersion": "0.4.0",
    "name": "amw-pods",
    "plugins": [
        {
            "type": "bridge",
            "bridge": "cni0",
            "isGateway": True,
            "ipMasq": False,
            "hairpinMode": True,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": POD_CIDR}]],
                "routes": [{"dst": "0.0.0.0/0"}],
            },
        },
        {"type": "portmap", "capabilities": {"portMappings": True}},
    ],
}


def _kubelet_config(state: Path, pki: Path, cgroup_root: str) -> dict[str, object]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "address": NODE_IP,
        "healthzBindAddress": "127.0.0.1",
        "readOnlyPort": 0,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": cgroup_root,
        "failCgroupV1": False,  # 1.32 still runs on cgroup v1, as these machines have; said explicitly
        "failSwapOn": False,
        "oomScoreAdj": 0,  # no CAP_SYS_RESOURCE in any bounding set here
        "imageGCHighThresholdPercent": 100,  # images cannot be pulled again: never collect them
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "resolvConf": str(state / "resolv.conf"),  # never the machine's resolvers
        "clusterDNS": [DNS_SERVICE_IP],
        "clusterDomain": "cluster.local",
        "volumePluginDir": str(state / "volume-plugins"),
        "containerRuntimeEndpoint": f"unix://{state}/containerd.sock",
        "serializeImagePulls": False,
        "protectKernelDefaults": False,
        "maxPods": 60,
    }


def _start(cluster: NodeCluster, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
    with (cluster.logs / f"{name}.log").open("wb") as log:
        process = subprocess.Popen(
            [*cluster.enter_node, *argv], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    cluster.processes.append(process)
    return process


def start_node_cluster(work: Path, images: Iterable[Path] = ()) -> NodeCluster:
    """Start the whole cluster; `images`: OCI archives imported into containerd before the kubelet starts."""
    binaries = node_binaries()
    started = time.monotonic()
    state = work / "state"
    for folder in ("kubelet", "cni/net.d", "volume-plugins", "flex", "containerd", "etcd", "kubelet-pki"):
        (state / folder).mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    pki = work / "pki"
    _pki(pki)
    run_id = work.name.replace("_", "-")[-24:]
    cgroup_root = f"/amw-node-{os.getpid()}-{run_id}"
    created_dirs = [path for path in (Path("/var/lib/kubelet"), Path("/var/lib/cni")) if not path.exists()]
    for path in created_dirs:
        path.mkdir(parents=True)
    cluster = NodeCluster(
        kubeconfig=work / "kubeconfig",
        server="",
        pki=pki,
        processes=[],
        logs=logs,
        version=(1, 32),
        state=state,
        binaries=binaries,
        cgroup_root=cgroup_root,
        saved_sysctls=read_sysctls(),
        created_dirs=created_dirs,
        host_paths={path: path.exists() for path in HOST_PATHS_NEVER_CREATED},
    )
    try:
        _boot(cluster, images)
    except BaseException:
        teardown(cluster)
        raise
    print(f"\nnode tier: cluster Ready in {time.monotonic() - started:.1f} s ({binaries})", file=sys.stderr)
    return cluster


def _boot(cluster: NodeCluster, images: Iterable[Path]) -> None:
    state, pki, binaries = cluster.state, cluster.pki, cluster.binaries
    (state / "holder-init.sh").write_text(HOLDER_INIT.format(node_ip=NODE_IP, service_cidr=SERVICE_CIDR))
    with (cluster.logs / "holder.log").open("wb") as log:
        cluster.holder = subprocess.Popen(
            [
                "unshare",
                "--net",
                "--mount",
                "--propagation",
                "private",
                "--",
                "bash",
                str(state / "holder-init.sh"),
                str(state),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    holder = cluster.holder
    _wait((state / "holder.ready").exists, holder, cluster.logs / "holder.log", timeout=20)
    cluster.net_namespace = namespace_id(holder.pid, "net")
    cluster.mount_namespace = namespace_id(holder.pid, "mnt")
    for path in cluster.cgroup_dirs():
        _make_cgroup(path)

    # etcd and the API server
    etcd = _start(
        cluster,
        "etcd",
        [
            "/usr/bin/etcd",
            "--name=amw-node",
            f"--data-dir={state / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{ETCD_PORT}",
            f"--advertise-client-urls=http://127.0.0.1:{ETCD_PORT}",
            "--listen-peer-urls=http://127.0.0.1:2380",
            "--initial-advertise-peer-urls=http://127.0.0.1:2380",
            "--initial-cluster=amw-node=http://127.0.0.1:2380",
            "--unsafe-no-fsync",
        ],
    )
    _wait(
        lambda: (
            '"health":"true"' in cluster.in_node("curl", "-s", f"http://127.0.0.1:{ETCD_PORT}/health").stdout
        ),
        etcd,
        cluster.logs / "etcd.log",
        timeout=60,
    )
    for name in ("controller-manager", "scheduler", "kubelet", "proxy", "coredns"):
        _kubeconfig(state / f"{name}.kubeconfig", pki, name)
    apiserver = _start(
        cluster,
        "kube-apiserver",
        [
            str(binaries / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{ETCD_PORT}",
            "--bind-address=0.0.0.0",
            f"--advertise-address={NODE_IP}",
            f"--secure-port={API_PORT}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            "--kubelet-preferred-address-types=InternalIP",
            "--allow-privileged=true",
        ],
    )
    # the tests, helm and kubectl reach it through a loopback port of the test run's own namespace
    port = free_port()
    forwarder = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.netns_forward",
            f"/proc/{holder.pid}/ns/net",
            str(port),
            "127.0.0.1",
            str(API_PORT),
        ],
        stdout=subprocess.PIPE,
        stderr=(cluster.logs / "forwarder.log").open("wb"),
        cwd=REPO,
    )
    assert forwarder.stdout is not None and forwarder.stdout.readline().strip() == b"ready"
    cluster.processes.insert(0, forwarder)
    cluster.server = f"https://127.0.0.1:{port}"
    _kubeconfig(cluster.kubeconfig, pki, "admin", cluster.server)
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.load_cert_chain(pki / "admin.crt", pki / "admin.key")
    admin = httpx.Client(verify=context)
    _wait(
        lambda: admin.get(f"{cluster.server}/readyz", timeout=2).text == "ok",
        apiserver,
        cluster.logs / "kube-apiserver.log",
        timeout=120,
    )

    _start(
        cluster,
        "kube-controller-manager",
        [
            str(binaries / "kube-controller-manager"),
            f"--kubeconfig={state / 'controller-manager.kubeconfig'}",
            f"--authentication-kubeconfig={state / 'controller-manager.kubeconfig'}",
            f"--authorization-kubeconfig={state / 'controller-manager.kubeconfig'}",
            "--bind-address=127.0.0.1",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            "--use-service-account-credentials=true",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--flex-volume-plugin-dir={state / 'flex'}",
            f"--cert-dir={state / 'controller-manager-pki'}",
            "--leader-elect=false",
        ],
    )
    _start(
        cluster,
        "kube-scheduler",
        [
            str(binaries / "kube-scheduler"),
            f"--kubeconfig={state / 'scheduler.kubeconfig'}",
            f"--authentication-kubeconfig={state / 'scheduler.kubeconfig'}",
            f"--authorization-kubeconfig={state / 'scheduler.kubeconfig'}",
            "--bind-address=127.0.0.1",
            "--leader-elect=false",
        ],
    )

    # containerd with the run's images, then the kubelet
    (state / "cni" / "net.d" / "10-amw.conflist").write_text(json.dumps(CNI_CONFIG, indent=2))
    (state / "containerd.toml").write_text(_containerd_config(state))
    (state / "resolv.conf").write_text(f"nameserver {NODE_IP}\n")
    containerd = _start(cluster, "containerd", ["containerd", "--config", str(state / "containerd.toml")])
    _wait((state / "containerd.sock").exists, containerd, cluster.logs / "containerd.log")
    for archive in images:
        cluster.import_image(archive)
    (state / "kubelet.yaml").write_text(yaml.safe_dump(_kubelet_config(state, pki, cluster.cgroup_root)))
    _start(
        cluster,
        "kubelet",
        [
            str(binaries / "kubelet"),
            f"--config={state / 'kubelet.yaml'}",
            f"--kubeconfig={state / 'kubelet.kubeconfig'}",
            f"--cert-dir={state / 'kubelet-pki'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={NODE_IP}",
            "--root-dir=/var/lib/kubelet",
        ],
    )
    (state / "kube-proxy.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
                "kind": "KubeProxyConfiguration",
                "clientConnection": {"kubeconfig": str(state / "proxy.kubeconfig")},
                "mode": "iptables",
                "hostnameOverride": NODE_NAME,
                "clusterCIDR": POD_CIDR,
                "oomScoreAdj": 0,
                # leave the machine's conntrack table and timeouts alone
                "conntrack": {
                    "maxPerCore": 0,
                    "min": 0,
                    "tcpEstablishedTimeout": "0s",
                    "tcpCloseWaitTimeout": "0s",
                },
                "metricsBindAddress": "127.0.0.1:10249",
                "healthzBindAddress": "127.0.0.1:10256",
            }
        )
    )
    _start(cluster, "kube-proxy", [str(binaries / "kube-proxy"), f"--config={state / 'kube-proxy.yaml'}"])
    _cluster_dns(cluster)
    cluster.wait_for("the node to be Ready", lambda: _node_ready(cluster), timeout=120)
    cluster.wait_for(
        "the default ServiceAccount",
        lambda: cluster.kubectl("get", "sa", "default", check=False).returncode == 0,
        60,
    )


def _cluster_dns(cluster: NodeCluster) -> None:
    """CoreDNS as a process of the node on the node IP, published as the kube-dns Service (clusterDNS)."""
    state = cluster.state
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=yaml.safe_dump_all(
            [
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRole",
                    "metadata": {"name": "system:coredns"},
                    "rules": [
                        {
                            "apiGroups": [""],
                            "resources": ["endpoints", "services", "pods", "namespaces"],
                            "verbs": ["list", "watch"],
                        },
                        {
                            "apiGroups": ["discovery.k8s.io"],
                            "resources": ["endpointslices"],
                            "verbs": ["list", "watch"],
                        },
                    ],
                },
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRoleBinding",
                    "metadata": {"name": "system:coredns"},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": "system:coredns",
                    },
                    "subjects": [
                        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:coredns"}
                    ],
                },
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {
                        "name": "kube-dns",
                        "namespace": "kube-system",
                        "labels": {"k8s-app": "kube-dns"},
                    },
                    "spec": {
                        "clusterIP": DNS_SERVICE_IP,
                        "ports": [
                            {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                            {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                        ],
                    },
                },
                {
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "metadata": {
                        "name": "kube-dns-node",
                        "namespace": "kube-system",
                        "labels": {"kubernetes.io/service-name": "kube-dns"},
                    },
                    "addressType": "IPv4",
                    "endpoints": [{"addresses": [NODE_IP], "conditions": {"ready": True}}],
                    "ports": [
                        {"name": "dns", "port": 53, "protocol": "UDP"},
                        {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                    ],
                },
            ]
        ),
    )
    (state / "Corefile").write_text(
        textwrap.dedent(
            f"""\
            .:53 {{
                bind {NODE_IP}
                errors
                health 127.0.0.1:8181
                ready 127.0.0.1:8182
                kubernetes cluster.local in-addr.arpa ip6.arpa {{
                    kubeconfig {state / "coredns.kubeconfig"}
                    pods insecure
                    fallthrough in-addr.arpa ip6.arpa
                }}
                cache 30
            }}
            """
        )
    )
    coredns = _start(
        cluster, "coredns", [str(cluster.binaries / "coredns"), "-conf", str(state / "Corefile")]
    )
    _wait(
        lambda: cluster.in_node("curl", "-sf", "http://127.0.0.1:8182/ready").returncode == 0,
        coredns,
        cluster.logs / "coredns.log",
        timeout=60,
    )


def _node_ready(cluster: NodeCluster) -> bool:
    result = cluster.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
    if result.returncode != 0:
        return False
    conditions = json.loads(result.stdout)["status"].get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _make_cgroup(path: Path) -> None:
    path.mkdir(exist_ok=True)
    if (path.parent / "cpuset.cpus").exists():  # cgroup v1 cpuset: a child starts empty
        for name in ("cpuset.cpus", "cpuset.mems"):
            (path / name).write_text((path.parent / name).read_text())


def _kill_cgroup_tree(root: Path) -> None:
    for _ in range(50):
        pids = {int(pid) for procs in root.rglob("cgroup.procs") for pid in procs.read_text().split()}
        if not pids:
            return
        _kill(pids)
        time.sleep(0.1)


def _kill(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _remove_cgroup_tree(root: Path) -> None:
    """Deepest first: a cgroup can go only once its children have (each may take a moment to empty)."""
    if not root.exists():
        return
    tree = [root, *(path for path in root.rglob("*") if path.is_dir())]
    for path in sorted(tree, key=lambda p: len(p.parts), reverse=True):
        for _ in range(50):
            try:
                path.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.1)


def teardown(cluster: NodeCluster) -> None:
    """Stop everything and leave nothing behind: processes, mounts, cgroups, namespaces, sysctls, folders."""
    # the node's agents first, so nothing restarts what the next steps stop
    for process in reversed(cluster.processes):
        if process.poll() is None:
            process.terminate()
    for process in cluster.processes:
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    # the pods' containers (in the run's cgroup root) and containerd's shims (in the holder's namespaces)
    for path in cluster.cgroup_dirs():
        _kill_cgroup_tree(path)
    if cluster.holder is not None:
        for kind, ident in (("mnt", cluster.mount_namespace), ("net", cluster.net_namespace)):
            for _ in range(50):
                pids = [pid for pid in processes_in_namespace(kind, ident) if pid != cluster.holder.pid]
                if not pids:
                    break
                _kill(pids)
                time.sleep(0.1)
        cluster.holder.kill()
        cluster.holder.wait()
    for path in cluster.cgroup_dirs():
        _kill_cgroup_tree(path)
        _remove_cgroup_tree(path)
    for name, value in cluster.saved_sysctls.items():
        current = Path("/proc/sys", name)
        if current.read_text().strip() != value:
            current.write_text(value)
    for path in cluster.created_dirs:
        with contextlib.suppress(OSError):
            path.rmdir()
