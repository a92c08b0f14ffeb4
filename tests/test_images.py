"""The node tier's images (tests/images.py): valid, deterministic OCI archives that run on a real containerd.

The archives are read back blob by blob (digests, sizes, diff_ids, configs). Then Debian's containerd 1.6
and runc run them, privately: the daemon has its own root, state, socket and config in a scratch folder
and runs in a mount namespace of its own with a tmpfs over /run (containerd 1.6 hard-codes its shim
sockets and ctr its FIFOs under /run/containerd; nothing is created on the host's /run); `ctr` joins that
namespace with `nsenter -m`. The CRI plugin is configured as the node tier needs it
(`restrict_oom_score_adj`: this machine lacks CAP_SYS_RESOURCE; cgroupfs: cgroup v1 here). Containers get
cgroups under one parent of this module's own (`--cgroup /amw-images-PID/ID`), so that teardown can check
and remove them. Network: containers have only their own loopback, or the host's with `--net-host` to reach
a private PostgreSQL on 127.0.0.1. The last test stops containerd and checks that no process, cgroup,
mount or state is left.

Images run as Kubernetes runs them: the process is the image's Entrypoint followed by the container's args.
The Bitnami stand-in runs the init containers of a real render of Bitnami's chart with the node tier's values
(`ChartPod`: their exact command, env, volume mounts and read-only root) against a private PostgreSQL.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import gzip
import hashlib
import io
import itertools
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
import yaml

from tests import images
from tests.bitnami_pod import INI_FILE
from tests.images import ImageArchive
from tests.node import render_bitnami
from tests.postgres import Postgres
from tests.support import BITNAMI_SCRIPTS, render_objects

pytestmark = pytest.mark.image
CGROUPS = Path("/sys/fs/cgroup")


# ---------------------------------------------------------------------------------------------------------
# Reading archives back


@dataclass(frozen=True)
class OciImage:
    """An archive's documents, every blob checked against its descriptor (blobs are not kept in memory)."""

    path: Path
    names: list[str]
    index: dict[str, Any]
    manifest: dict[str, Any]
    config: dict[str, Any]

    @contextlib.contextmanager
    def layer(self, position: int) -> Iterator[tarfile.TarFile]:
        """Layer `position` as a stream: read members in order, extract each while it is current."""
        descriptor = self.manifest["layers"][position]
        with tarfile.open(self.path, "r:") as archive:
            stream = archive.extractfile(f"blobs/sha256/{descriptor['digest'].removeprefix('sha256:')}")
            assert stream is not None
            if descriptor["mediaType"].endswith("+gzip"):
                stream = gzip.GzipFile(fileobj=stream)  # type: ignore[assignment]
            with tarfile.open(fileobj=stream, mode="r|") as layer:
                yield layer


@functools.cache
def read_archive(path: Path) -> OciImage:
    """Parse an OCI archive, asserting every digest, size and diff_id on the way (once per archive)."""
    sizes: dict[str, int] = {}
    diff_ids: dict[str, str] = {}  # a gzip blob's uncompressed digest; else its digest
    documents: dict[str, bytes] = {}
    with tarfile.open(path, "r:") as tar:
        names = []
        for member in tar:
            names.append(member.name)
            assert (member.mtime, member.uid, member.gid, member.uname) == (0, 0, 0, ""), member.name
            stream = tar.extractfile(member) if member.isreg() else None
            if stream is None:
                continue
            if not member.name.startswith("blobs/sha256/"):
                documents[member.name] = stream.read()
                continue
            digest = "sha256:" + member.name.removeprefix("blobs/sha256/")
            whole, unzipped = hashlib.sha256(), hashlib.sha256()
            head = stream.read(2)
            inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if head == b"\x1f\x8b" else None
            chunk = head
            while chunk:
                whole.update(chunk)
                if inflate is not None:
                    unzipped.update(inflate.decompress(chunk))
                if member.size <= 1 << 20:
                    documents.setdefault(digest, b"")
                    documents[digest] += chunk
                chunk = stream.read(1 << 20)
            assert f"sha256:{whole.hexdigest()}" == digest, member.name
            sizes[digest] = member.size
            diff_ids[digest] = f"sha256:{unzipped.hexdigest()}" if inflate is not None else digest
    assert json.loads(documents["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(documents["index.json"])
    assert index["schemaVersion"] == 2 and index["mediaType"] == images.MEDIA_INDEX
    [descriptor] = index["manifests"]

    def fetch(descriptor: dict[str, Any]) -> dict[str, Any]:
        assert sizes[descriptor["digest"]] == descriptor["size"], descriptor
        document: dict[str, Any] = json.loads(documents[descriptor["digest"]])
        return document

    manifest = fetch(descriptor)
    assert manifest["mediaType"] == descriptor["mediaType"] == images.MEDIA_MANIFEST
    assert manifest["config"]["mediaType"] == images.MEDIA_CONFIG
    config = fetch(manifest["config"])
    for layer in manifest["layers"]:
        assert layer["mediaType"] in (images.MEDIA_LAYER, images.MEDIA_LAYER_GZIP)
        assert sizes[layer["digest"]] == layer["size"], layer
        assert (diff_ids[layer["digest"]] != layer["digest"]) == layer["mediaType"].endswith("+gzip")
    assert config["rootfs"] == {
        "type": "layers",
        "diff_ids": [diff_ids[x["digest"]] for x in manifest["layers"]],
    }
    referenced = {
        descriptor["digest"],
        manifest["config"]["digest"],
        *(x["digest"] for x in manifest["layers"]),
    }
    assert set(sizes) == referenced, "blobs nothing refers to"
    return OciImage(path, names, index, manifest, config)


@pytest.fixture(scope="module")
def archives() -> dict[str, ImageArchive]:
    """Every node image, from the cache that `python -m tests.images` filled (built here when missing)."""
    return {archive.ref: archive for archive in images.node_images()}


AIRFLOW_REFS = [f"{images.AIRFLOW_REPOSITORY}:{version}" for version in images.AIRFLOW_VERSIONS]


def test_archives_are_valid_oci_layouts_named_for_containerd(archives: dict[str, ImageArchive]) -> None:
    assert set(archives) == {images.PAUSE_REF, images.BUSYBOX_REF, *AIRFLOW_REFS, images.BITNAMI_REF}
    for ref, archive in archives.items():
        image = read_archive(archive.path)
        assert image.names == sorted(image.names), "archive entries in a fixed order"
        [descriptor] = image.index["manifests"]
        assert descriptor["annotations"] == {
            "io.containerd.image.name": ref,
            "org.opencontainers.image.ref.name": ref,
        }
        assert descriptor["platform"] == {"architecture": "amd64", "os": "linux"}
        assert (image.config["architecture"], image.config["os"]) == ("amd64", "linux")


def test_configs_are_as_specified(archives: dict[str, ImageArchive]) -> None:
    pause = read_archive(archives[images.PAUSE_REF].path).config["config"]
    assert pause["Entrypoint"] == ["/pause"] and pause["User"] == "65535:65535"
    busybox = read_archive(archives[images.BUSYBOX_REF].path).config["config"]
    assert busybox["Cmd"] == ["sh"]
    for version in images.AIRFLOW_VERSIONS:
        config = read_archive(archives[f"{images.AIRFLOW_REPOSITORY}:{version}"].path).config["config"]
        env = dict(item.split("=", 1) for item in config["Env"])
        assert config["User"] == "50000"
        assert config["Entrypoint"] == ["/usr/bin/dumb-init", "--", "/entrypoint"]
        assert config["Cmd"] == []
        assert config["WorkingDir"] == "/opt/airflow"
        assert env["PATH"].startswith("/home/airflow/.local/bin:")
        assert env["AIRFLOW_HOME"] == "/opt/airflow"
        assert env["AIRFLOW_USER_HOME_DIR"] == "/home/airflow"
        assert env["AIRFLOW_VERSION"] == version
        assert env["DUMB_INIT_SETSID"] == "1"
    bitnami = read_archive(archives[images.BITNAMI_REF].path).config["config"]
    env = dict(item.split("=", 1) for item in bitnami["Env"])
    assert bitnami["User"] == "1001"
    assert "Entrypoint" not in bitnami  # Bitnami's entrypoint.sh is not reproduced: Cmd refuses
    assert env["PATH"].startswith("/opt/bitnami/common/bin:/opt/bitnami/airflow/venv/bin:")
    assert (env["HOME"], env["AIRFLOW_HOME"]) == ("/", "/opt/bitnami/airflow")


@pytest.mark.parametrize("version", images.AIRFLOW_VERSIONS)
def test_airflow_layers_hold_the_user_home_and_relocated_venv(
    archives: dict[str, ImageArchive], version: str
) -> None:
    image = read_archive(archives[f"{images.AIRFLOW_REPOSITORY}:{version}"].path)
    with image.layer(0) as base:
        assert not [member.name for member in base if member.name.startswith("dev/")], "no device nodes"
    files: dict[str, tarfile.TarInfo] = {}
    with image.layer(2) as top:
        for member in top:
            files[member.name] = member
            if member.name == "etc/passwd":
                stream = top.extractfile(member)
                assert stream is not None
                passwd = stream.read().decode().splitlines()
    airflow = [line.split(":") for line in passwd if line.startswith("airflow:")]
    assert [(fields[2], fields[3], fields[5]) for fields in airflow] == [("50000", "0", "/home/airflow")]
    assert files["etc/passwd"].mode == 0o664
    for name in ("opt/airflow", "opt/airflow/dags", "opt/airflow/logs"):
        assert (files[name].uid, files[name].gid, files[name].mode) == (50000, 0, 0o775)
    assert files["entrypoint"].mode == files["clean-logs"].mode == 0o755
    with image.layer(1) as venv:
        source = images.airflow_venv(version)[0]
        members = _assert_relocated(venv, source, "home/airflow/.local", (50000, 0), group_writable=True)
    assert {(member.uid, member.gid) for member in members.values()} == {(50000, 0)}


def _assert_relocated(
    venv: tarfile.TarFile, source: Path, dest: str, owner: tuple[int, int], group_writable: bool
) -> dict[str, tarfile.TarInfo]:
    """The venv layer holds `source` at `dest`, owned by `owner`, with no trace of its old path in bin/;
    returns the layer's entries."""
    old_venv = str(source.resolve()).encode()
    scripts = 0
    members = {}
    for member in venv:
        members[member.name] = member
        if not member.name.startswith(dest + "/"):
            continue
        assert (member.uid, member.gid) == owner, member.name
        if member.name == f"{dest}/pyvenv.cfg":
            stream = venv.extractfile(member)
            assert stream is not None and stream.read().startswith(b"home = /usr/bin\n")
        elif member.name.startswith(f"{dest}/bin/") and member.issym():
            assert not member.linkname.startswith("/") or member.linkname.startswith("/usr/bin/")
        elif member.name.startswith(f"{dest}/bin/") and member.isreg():
            stream = venv.extractfile(member)
            assert stream is not None and old_venv not in stream.read(), member.name
            scripts += 1
        if member.name == f"{dest}/bin/airflow":
            assert member.mode & 0o070 == (0o070 if group_writable else 0o050)  # as the owner's, or read-only
    assert scripts > 10
    return members


def test_bitnami_layers_hold_the_real_scripts_ini_file_and_relocated_venv(
    archives: dict[str, ImageArchive],
) -> None:
    image = read_archive(archives[images.BITNAMI_REF].path)
    files: dict[str, tarfile.TarInfo] = {}
    contents: dict[str, bytes] = {}
    with image.layer(2) as top:
        for member in top:
            files[member.name] = member
            stream = top.extractfile(member) if member.isreg() else None
            if stream is not None:
                contents[member.name] = stream.read()
    # Bitnami's real libraries as the image lays them out: the common ones, then the Airflow 3 line's
    line = BITNAMI_SCRIPTS / "airflow3" / "opt" / "bitnami" / "scripts"
    fixtures = sorted((BITNAMI_SCRIPTS / "common").glob("*.sh")) + sorted(line.glob("*.sh"))
    scripts = {name: content for name, content in contents.items() if name.startswith("opt/bitnami/scripts/")}
    assert scripts == {f"opt/bitnami/scripts/{path.name}": path.read_bytes() for path in fixtures}
    assert {"opt/bitnami/scripts/libairflow.sh", "opt/bitnami/scripts/airflow-env.sh"} <= set(scripts)
    assert {files[name].mode for name in scripts} == {0o755}
    # the emulated `ini-file`, the very one the Bitnami pod runner uses
    assert contents["opt/bitnami/common/bin/ini-file"] == INI_FILE.encode()
    assert files["opt/bitnami/common/bin/ini-file"].mode == 0o755
    passwd = contents["etc/passwd"].decode().splitlines()
    assert [line for line in passwd if line.startswith("airflow:")] == [
        "airflow:x:1001:1001::/opt/bitnami/airflow:/bin/bash"
    ]
    for name in ("opt/bitnami/airflow", "opt/bitnami/airflow/dags"):
        assert (files[name].uid, files[name].gid, files[name].mode) == (1001, 1001, 0o775)
    prefix = "opt/bitnami/airflow/venv/tmp/"
    with image.layer(1) as venv:
        source = images.airflow_venv(images.BITNAMI_VERSION)[0]
        members = _assert_relocated(venv, source, "opt/bitnami/airflow/venv", (0, 0), group_writable=False)
    pycs = {name for name, member in members.items() if member.isreg() and name.endswith(".cpython-311.pyc")}
    links = {name: member.linkname for name, member in members.items() if member.islnk()}
    # each compiled module again where PYTHONPYCACHEPREFIX (airflow-env.sh's default) makes Python look
    assert len(links) > 1000 and set(links.values()) <= pycs
    for name, target in links.items():
        folder, _, module = target.rpartition("/__pycache__/")
        assert name == f"{prefix}{folder}/{module}"


def test_the_same_inputs_give_the_same_digests(
    archives: dict[str, ImageArchive], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second cache folder built from the same inputs holds byte-identical archives."""
    real = images.cache_root()
    (tmp_path / "node-images").mkdir()
    (tmp_path / "airflow").symlink_to(real / "airflow")  # the same venvs
    (tmp_path / "node-images" / "base").symlink_to(images.debian_base().parent)  # the same Debian base
    monkeypatch.setenv("AMW_CACHE_DIR", str(tmp_path))
    again = [images.pause_image(), images.busybox_image(), images.airflow_image(images.AIRFLOW_VERSIONS[0])]
    for archive in again:
        assert archive.path.parent == tmp_path / "node-images"
        assert archive.path.read_bytes() == archives[archive.ref].path.read_bytes(), archive.ref
    started = time.monotonic()
    assert images.pause_image() == again[0]  # cached: found, not rebuilt
    assert time.monotonic() - started < 5


def test_layers_are_deterministic_and_follow_their_content(tmp_path: Path) -> None:
    installed = 1_700_000_000
    source = tmp_path / "tree"
    (source / "b").mkdir(parents=True)
    (source / "b" / "file").write_text("one")
    (source / "a").write_text("two")
    (source / "link").symlink_to("a")
    for path in (source / "b" / "file", source / "a", source / "link", source / "b", source):
        os.utime(path, (installed, installed), follow_symlinks=False)

    def layer(folder: str) -> images.Blob:
        (tmp_path / folder).mkdir(exist_ok=True)
        tree = images.tree(source, "x/tree", 50000, 0, group_writable=True, as_of=installed * 10**9)
        members = [images.directory("x"), *tree]
        return images.write_layer(members, tmp_path / folder, compress=True, comment="")

    first, second = layer("one"), layer("two")
    assert (first.digest, first.diff_id) == (second.digest, second.diff_id)
    assert first.path.read_bytes() == second.path.read_bytes()
    with tarfile.open(first.path) as tar:
        listed = [(m.name, m.mtime, m.uid, m.gid, oct(m.mode)) for m in tar]
    # each folder's entries sorted, then the folders' contents
    names = ["x", "x/tree", "x/tree/a", "x/tree/b", "x/tree/link", "x/tree/b/file"]
    assert [entry[0] for entry in listed] == names
    assert listed[2][1:] == (installed, 50000, 0, "0o664")  # the file's own mtime, group-writable
    assert listed[3][1:] == (installed, 50000, 0, "0o775")
    # what appears after `as_of` (a __pycache__ written at run time, a scratch folder) changes nothing
    (source / "b" / "__pycache__").mkdir()
    (source / "b" / "__pycache__" / "file.cpython-311.pyc").write_text("new")
    (source / "tmp").mkdir()
    assert layer("three").digest == first.digest
    # a change in what was there does
    (source / "a").write_text("changed")
    os.utime(source / "a", (installed, installed))
    assert layer("four").digest != first.digest


def test_without_cache_or_tools_the_error_says_what_to_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AMW_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))  # no gcc, as if the build could not run
    with pytest.raises(images.ImageBuildError, match=r"python -m tests\.images"):
        images.pause_image()


# ---------------------------------------------------------------------------------------------------------
# A private containerd


@dataclass(frozen=True)
class Mount:
    """A host path bound into a container (`ctr run --mount`), as a kubelet binds a volume."""

    source: Path
    target: str
    read_only: bool = False

    def flag(self) -> str:
        mode = "ro" if self.read_only else "rw"
        return f"--mount=type=bind,src={self.source},dst={self.target},options=rbind:{mode}"


@dataclass
class Containerd:
    folder: Path
    process: subprocess.Popen[bytes]
    mount_namespace: str
    cgroup_parent: str
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    imported: dict[str, str] = field(default_factory=dict)  # ref: what `ctr images import` printed
    ids: Iterator[int] = field(default_factory=itertools.count)
    leftovers: list[str] | None = None

    @property
    def address(self) -> Path:
        return self.folder / "containerd.sock"

    def ctr_argv(self, *args: str) -> list[str]:
        # setns() into the mount namespace resets the cwd: every path given to ctr is absolute
        return ["nsenter", "-t", str(self.process.pid), "-m", "--", "ctr", "--address", str(self.address),
                "--namespace", "k8s.io", *args]  # fmt: skip

    def ctr(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(self.ctr_argv(*args), capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(
                f"ctr {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}"
            )
        return result

    def new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self.ids)}"

    def run_argv(
        self,
        ref: str,
        args: list[str],
        env: dict[str, str],
        net_host: bool,
        cid: str,
        mounts: list[Mount] | None = None,
        read_only: bool = False,
    ) -> list[str]:
        """`ctr run` of `ref` as a kubelet would: the image's Entrypoint, then `args`; `mounts` bound in,
        the root file system read-only if asked (`readOnlyRootFilesystem`)."""
        flags = [
            "--rm",
            "--cgroup",
            f"/{self.cgroup_parent}/{cid}",
            *(f"--env={k}={v}" for k, v in env.items()),
            *(mount.flag() for mount in mounts or []),
            *(["--read-only"] if read_only else []),
            *(["--net-host"] if net_host else []),
        ]
        entrypoint = self.configs[ref]["config"].get("Entrypoint") or []
        return self.ctr_argv("run", *flags, ref, cid, *entrypoint, *args)

    def run(
        self,
        ref: str,
        args: list[str],
        env: dict[str, str] | None = None,
        net_host: bool = False,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[str]:
        argv = self.run_argv(ref, args, env or {}, net_host, self.new_id("run"))
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)

    def stop(self) -> list[str]:
        """Stop everything this containerd started and remove its state; what could not be removed."""
        if self.leftovers is not None:
            return self.leftovers
        if self.process.poll() is None:
            for task in self.ctr("tasks", "ls", "-q", check=False).stdout.split():
                self.ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
                self.ctr("tasks", "rm", "-f", task, check=False)
            for container in self.ctr("containers", "ls", "-q", check=False).stdout.split():
                self.ctr("containers", "rm", container, check=False)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        leftovers: list[str] = []
        # shims outlive containerd by design: any process still in its private namespace is one of ours
        assert self.mount_namespace != os.readlink("/proc/self/ns/mnt")
        deadline = time.monotonic() + 20
        while (members := _processes_in(self.mount_namespace)) and time.monotonic() < deadline:
            for pid in members:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
        leftovers += [f"process {pid}" for pid in _processes_in(self.mount_namespace)]
        for parent in sorted(CGROUPS.glob(f"*/{self.cgroup_parent}")):
            for folder in sorted(parent.glob("**/"), key=lambda path: len(path.parts), reverse=True):
                try:
                    folder.rmdir()
                except OSError as exc:
                    leftovers.append(f"cgroup {folder}: {exc}")
        leftovers += [f"cgroup {path}" for path in CGROUPS.glob(f"*/{self.cgroup_parent}")]
        mounts = Path("/proc/self/mountinfo").read_text()
        leftovers += [f"mount {line}" for line in mounts.splitlines() if str(self.folder) in line]
        shutil.rmtree(self.folder, ignore_errors=True)
        if self.folder.exists():
            leftovers.append(f"state {self.folder}")
        self.leftovers = leftovers
        return leftovers


def _processes_in(namespace: str) -> list[int]:
    if not namespace:
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "ns" / "mnt") == namespace:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


CONFIG = """\
version = 2
root = "{folder}/root"
state = "{folder}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{folder}/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "{folder}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
    SystemdCgroup = false
"""


def start_containerd(folder: Path) -> Containerd:
    if not (shutil.which("containerd") and shutil.which("ctr") and shutil.which("runc")):
        images._apt_install("containerd", "runc")
    (folder / "config.toml").write_text(CONFIG.format(folder=folder, pause=images.PAUSE_REF))
    log = (folder / "containerd.log").open("wb")
    script = 'mount -n -t tmpfs -o mode=0755 tmpfs /run && exec containerd --config "$1"'
    process = subprocess.Popen(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            script,
            "sh",
            str(folder / "config.toml"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    namespace = ""  # the daemon's own mount namespace, once unshare made it (never the host's)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(OSError):
            current = os.readlink(f"/proc/{process.pid}/ns/mnt")
            namespace = current if current != os.readlink("/proc/self/ns/mnt") else ""
        if namespace and (folder / "containerd.sock").exists():
            break
        time.sleep(0.2)
    handle = Containerd(folder, process, namespace, f"amw-images-{os.getpid()}")
    while time.monotonic() < deadline and process.poll() is None:
        if handle.ctr("version", check=False, timeout=10).returncode == 0:
            return handle
        time.sleep(0.2)
    handle.stop()
    raise AssertionError(f"containerd did not start:\n{(folder / 'containerd.log').read_text()[-3000:]}")


@pytest.fixture(scope="module")
def containerd(
    tmp_path_factory: pytest.TempPathFactory, archives: dict[str, ImageArchive]
) -> Iterator[Containerd]:
    """A private containerd with every node image imported (`ctr images import`, as the node tier does)."""
    handle = start_containerd(tmp_path_factory.mktemp("containerd"))
    try:
        for ref, archive in archives.items():
            handle.configs[ref] = read_archive(archive.path).config
            started = time.monotonic()
            handle.imported[ref] = handle.ctr("images", "import", str(archive.path), timeout=900).stdout
            handle.imported[ref] += f"({time.monotonic() - started:.1f} s)"
        yield handle
    finally:
        leftovers = handle.stop()
    assert not leftovers, leftovers


def test_ctr_import_registers_the_full_names(
    containerd: Containerd, archives: dict[str, ImageArchive], tmp_path: Path
) -> None:
    for ref, output in containerd.imported.items():
        assert f"unpacking {ref} (" in output, output
    listed = containerd.ctr("images", "ls", "-q").stdout.split()
    assert set(archives) <= set(listed)
    # which annotation containerd 1.6's importer honours: io.containerd.image.name first, then
    # org.opencontainers.image.ref.name as it is when it is a full reference; a bare tag gets a prefix
    containerd_name, ref_name = images.ANNOTATION_CONTAINERD_NAME, images.ANNOTATION_REF_NAME
    variants = [
        ({containerd_name: "localhost/by-containerd-name:1"}, "localhost/by-containerd-name:1"),
        ({containerd_name: "localhost/wins:1", ref_name: "localhost/loses:1"}, "localhost/wins:1"),
        ({ref_name: "localhost/by-ref-name:1"}, "localhost/by-ref-name:1"),
        ({ref_name: "1"}, "import-"),  # ctr's default prefix is import-DATE
    ]
    for number, (names, expected) in enumerate(variants):
        variant = tmp_path / f"variant-{number}.tar"
        _with_annotations(archives[images.PAUSE_REF].path, variant, names)
        containerd.ctr("images", "import", str(variant))
        new = set(containerd.ctr("images", "ls", "-q").stdout.split()) - set(listed)
        named = [ref for ref in new if not ref.startswith("sha256:")]
        assert len(named) == 1 and named[0].startswith(expected), (names, named)
        containerd.ctr("images", "rm", *named)


def _with_annotations(source: Path, dest: Path, annotations: dict[str, str]) -> None:
    with tarfile.open(source) as original, tarfile.open(dest, "w") as copy:
        for member in original:
            stream: IO[bytes] | None = original.extractfile(member) if member.isreg() else None
            if member.name == "index.json" and stream is not None:
                index = json.loads(stream.read())
                index["manifests"][0]["annotations"] = annotations
                content = json.dumps(index).encode()
                member.size = len(content)
                stream = io.BytesIO(content)
            copy.addfile(member, stream)


def test_pause_stays_up_until_sigterm_and_exits_0(containerd: Containerd) -> None:
    cid = containerd.new_id("pause")
    running = subprocess.Popen(
        containerd.run_argv(images.PAUSE_REF, [], {}, False, cid),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while cid not in containerd.ctr("tasks", "ls").stdout and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2)
        tasks = containerd.ctr("tasks", "ls").stdout
        assert any(line.split()[:1] == [cid] and "RUNNING" in line for line in tasks.splitlines()), tasks
        assert running.poll() is None, "pause exited on its own"
        containerd.ctr("tasks", "kill", "--signal", "SIGTERM", cid)
        assert running.wait(timeout=30) == 0
    finally:
        if running.poll() is None:
            running.kill()
            running.wait()
    assert cid not in containerd.ctr("containers", "ls", "-q").stdout.split()


def test_busybox_runs_its_applets(containerd: Containerd) -> None:
    result = containerd.run(images.BUSYBOX_REF, ["busybox", "echo", "ok"])
    assert (result.returncode, result.stdout) == (0, "ok\n"), result.stderr
    # the applet links: `nslookup` for the node tier's DNS checks, `sh` as the image's CMD
    result = containerd.run(images.BUSYBOX_REF, ["sh", "-c", "nslookup --help 2>&1 | grep Usage:; id -u"])
    assert result.returncode == 0, result
    usage = "Usage: nslookup [-type=QUERY_TYPE] [-debug] HOST [DNS_SERVER]"
    assert result.stdout.splitlines() == [usage, "0"]


NO_DB_WAIT = {"CONNECTION_CHECK_MAX_COUNT": "0"}
FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"


@pytest.mark.timeout(900)
@pytest.mark.parametrize("version", images.AIRFLOW_VERSIONS)
def test_airflow_image_follows_the_entrypoint_contract(containerd: Containerd, version: str) -> None:
    ref = f"{images.AIRFLOW_REPOSITORY}:{version}"
    script = (
        "id -u; id -g; id -un; echo $AIRFLOW_HOME; echo $HOME; pwd; tr '\\0' ' ' </proc/1/cmdline; echo;"
        " umask; touch /opt/airflow/probe && stat -c %a:%u:%g /opt/airflow/probe"
    )
    shell = containerd.run(ref, ["bash", "-c", script], NO_DB_WAIT)
    assert shell.returncode == 0, shell
    assert shell.stdout.splitlines() == [
        "50000", "0", "airflow", "/opt/airflow", "/home/airflow", "/opt/airflow",
        f"/usr/bin/dumb-init -- /entrypoint bash -c {script} ", "0002", "664:50000:0",
    ]  # fmt: skip
    assert "uid=50000(airflow) gid=0(root)" in containerd.run(ref, ["bash", "-c", "id"], NO_DB_WAIT).stdout

    python = containerd.run(
        ref, ["python", "-c", "import sys, airflow; print(sys.prefix, airflow.__version__)"], NO_DB_WAIT
    )
    assert (python.returncode, python.stdout.split()[-2:]) == (0, ["/home/airflow/.local", version]), python

    # an Airflow subcommand goes to `airflow`, after the default DB wait (20 x `airflow db check`; SQLite)
    subcommand = containerd.run(ref, ["version"])
    assert subcommand.returncode == 0 and subcommand.stdout.splitlines()[-1] == version, subcommand

    # the chart's exec probes call the entrypoint through `sh` (no image entrypoint), with a leading `airflow`
    cid = containerd.new_id("probe")
    probe_argv = containerd.ctr_argv(
        "run", "--rm", "--cgroup", f"/{containerd.cgroup_parent}/{cid}", ref, cid,
        "sh", "-c", "CONNECTION_CHECK_MAX_COUNT=0 exec /entrypoint airflow version",
    )  # fmt: skip
    probe = subprocess.run(probe_argv, capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0 and probe.stdout.splitlines()[-1] == version, probe

    # the DB wait is bounded: CONNECTION_CHECK_MAX_COUNT checks, CONNECTION_CHECK_SLEEP_TIME apart
    unreachable = {
        "CONNECTION_CHECK_MAX_COUNT": "2",
        "CONNECTION_CHECK_SLEEP_TIME": "1",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://postgres@127.0.0.1:9/none",  # the container's lo
    }
    waited = containerd.run(ref, ["version"], unreachable)
    assert waited.returncode == 1, waited
    assert "Maximum number of retries (2) reached" in waited.stdout
    assert version not in waited.stdout.splitlines()


def test_airflow_clean_logs_trims_old_logs(containerd: Containerd) -> None:
    script = (
        "mkdir -p logs/old/dag && touch -d '40 days ago' logs/old/dag/1.log && touch logs/new.log"
        " && timeout --preserve-status -s TERM 3 bash /clean-logs >/dev/null; echo rc=$?;"
        " cd logs && find . | sort"
    )
    ref = f"{images.AIRFLOW_REPOSITORY}:{images.AIRFLOW_VERSIONS[0]}"
    result = containerd.run(ref, ["bash", "-c", script], NO_DB_WAIT)
    assert result.stdout.split() == ["rc=0", ".", "./new.log"], result


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    server = Postgres()
    server.start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("version", images.AIRFLOW_VERSIONS)
def test_airflow_migrates_a_real_postgres(containerd: Containerd, postgres: Postgres, version: str) -> None:
    ref = f"{images.AIRFLOW_REPOSITORY}:{version}"
    database = f"af_{version.replace('.', '_')}"
    postgres.create_database(database)
    env = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql://postgres@127.0.0.1:{postgres.port}/{database}"
    }
    # as the chart's migration Job: bash through the entrypoint, after its `airflow db check` wait (the
    # official chart renders `db upgrade` for an airflowVersion before 2.7, which has no `db migrate`)
    subcommand = "migrate" if tuple(map(int, version.split(".")[:2])) >= (2, 7) else "upgrade"
    migrate = containerd.run(
        ref, ["bash", "-c", f"exec \\\nairflow db {subcommand}"], env, net_host=True, timeout=900
    )
    assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
    # as the chart's wait-for-airflow-migrations init container
    check = containerd.run(
        ref, ["airflow", "db", "check-migrations", "--migration-wait-timeout=60"], env, net_host=True
    )
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-3000:]
    assert postgres.psql(database, "select count(*) from alembic_version") == "1"

    # _AIRFLOW_DB_MIGRATE and _AIRFLOW_WWW_USER_CREATE: the entrypoint migrates and adds the admin user
    # (FAB's `airflow users`: core on Airflow 2, the FAB auth manager's on Airflow 3) before the command
    second = f"{database}_env"
    postgres.create_database(second)
    env = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql://postgres@127.0.0.1:{postgres.port}/{second}",
        "_AIRFLOW_DB_MIGRATE": "true",
        "_AIRFLOW_WWW_USER_CREATE": "true",
        "_AIRFLOW_WWW_USER_PASSWORD": "admin",
    }
    if version.startswith("3."):
        env["AIRFLOW__CORE__AUTH_MANAGER"] = FAB_AUTH_MANAGER
    result = containerd.run(ref, ["version"], env, net_host=True, timeout=900)
    assert result.returncode == 0 and result.stdout.splitlines()[-1] == version, result.stderr[-3000:]
    assert postgres.psql(second, "select count(*) from alembic_version") == "1"
    assert postgres.psql(second, "select username from ab_user") == "admin"


def test_bitnami_image_runs_as_1001_with_bitnamis_layout(containerd: Containerd) -> None:
    script = (
        "id -u; id -g; id -un; echo $HOME; echo $AIRFLOW_HOME; pwd;"
        " command -v airflow ini-file pgrep; python -c 'import sys; print(sys.prefix)'"
    )
    shell = containerd.run(images.BITNAMI_REF, ["bash", "-c", script])
    assert shell.returncode == 0, shell
    assert shell.stdout.splitlines() == [
        "1001", "1001", "airflow", "/", "/opt/bitnami/airflow", "/opt/bitnami/airflow",
        "/opt/bitnami/airflow/venv/bin/airflow", "/opt/bitnami/common/bin/ini-file", "/usr/bin/pgrep",
        "/opt/bitnami/airflow/venv",
    ]  # fmt: skip
    version = containerd.run(images.BITNAMI_REF, ["airflow", "version"])
    assert version.returncode == 0 and version.stdout.splitlines()[-1] == "3.0.2", version
    # no entrypoint: a container without a command is refused, saying why
    refused = containerd.run(images.BITNAMI_REF, [])
    assert (refused.returncode, refused.stderr.strip()) == (64, images.BITNAMI_NO_ENTRYPOINT)


def bitnami_docs(port: int, database: str) -> list[dict[str, Any]]:
    """Bitnami's chart 24.1.0 with the node tier's values, pointed at a PostgreSQL on 127.0.0.1."""
    return [doc for doc in yaml.safe_load_all(render_bitnami("airflow", "127.0.0.1", port, database)) if doc]


class ChartPod:
    """One pod of a render, its containers run on the private containerd as a kubelet runs them: command and
    args, literal env, the pod's volumes bound at each container's mounts (`subPath` included), a read-only
    root when the container asks for it. Volumes are host folders: emptyDir group 1001 and setgid (the
    chart's fsGroup), ConfigMap and projected Secret files from the render. Host network, to reach the
    private PostgreSQL."""

    def __init__(self, spec: dict[str, Any], docs: list[dict[str, Any]], folder: Path) -> None:
        self.spec = spec
        config_maps, secrets = render_objects(docs)
        self.volumes: dict[str, Path] = {}
        for volume in spec["volumes"]:
            path = folder / volume["name"]
            path.mkdir(parents=True)
            files: dict[str, str] = {}
            if "configMap" in volume:
                files = config_maps.get(volume["configMap"]["name"], {})
            elif "projected" in volume:
                for source in volume["projected"]["sources"]:
                    files.update(secrets[source["secret"]["name"]])
            else:
                assert "emptyDir" in volume, volume
                os.chown(path, 0, images.BITNAMI_UID)
                path.chmod(0o2777)
            for name, content in files.items():
                (path / name).write_text(content)
            self.volumes[volume["name"]] = path

    def container(self, name: str) -> dict[str, Any]:
        [container] = [
            c for c in self.spec.get("initContainers", []) + self.spec["containers"] if c["name"] == name
        ]
        return container

    def argv(self, containerd: Containerd, container: dict[str, Any], **env: str) -> list[str]:
        mounts = []
        for mount in container.get("volumeMounts", []):
            volume = self.volumes[mount["name"]]
            source = volume / mount.get("subPath", "")
            if not source.exists():  # a kubelet creates a missing subPath as a folder with the volume's mode
                source.mkdir(parents=True)
                source.chmod(volume.stat().st_mode & 0o7777)
            mounts.append(Mount(source, mount["mountPath"], mount.get("readOnly", False)))
        literal = {entry["name"]: entry["value"] for entry in container.get("env", [])}
        assert len(literal) == len(container.get("env", [])), "only literal env values are emulated"
        read_only = container.get("securityContext", {}).get("readOnlyRootFilesystem", False)
        cid = containerd.new_id(container["name"])
        args = [*container.get("command", []), *container.get("args", [])]
        return containerd.run_argv(images.BITNAMI_REF, args, {**literal, **env}, True, cid, mounts, read_only)

    def run(
        self, containerd: Containerd, container: dict[str, Any], **env: str
    ) -> subprocess.CompletedProcess[str]:
        argv = self.argv(containerd, container, **env)
        return subprocess.run(argv, capture_output=True, text=True, timeout=600)


@pytest.mark.timeout(900)
def test_bitnami_charts_init_containers_run_in_the_image(
    containerd: Containerd, postgres: Postgres, tmp_path: Path
) -> None:
    """The rendered `prepare-config` and `wait-for-db-migrations`, exactly, on a fresh database: the wait
    holds until Bitnami's step (`db migrate`, then `airflow_create_admin_user`) has run, then passes."""
    database = "bitnami"
    postgres.create_database(database)
    docs = bitnami_docs(postgres.port, database)
    workloads = {(doc["kind"], doc["metadata"]["name"]): doc["spec"]["template"]["spec"] for doc in docs
                 if doc["kind"] in ("StatefulSet", "Job")}  # fmt: skip
    scheduler = ChartPod(workloads["StatefulSet", "airflow-scheduler"], docs, tmp_path / "scheduler")
    assert [c["name"] for c in scheduler.spec["initContainers"]] == [
        "prepare-config",
        "wait-for-db-migrations",
    ]

    prepared = scheduler.run(containerd, scheduler.container("prepare-config"))
    assert prepared.returncode == 0, prepared.stdout + prepared.stderr
    assert "Airflow configuration ready" in prepared.stderr
    config = (scheduler.volumes["empty-dir"] / "app-base-dir" / "airflow.cfg").read_text()
    url = f"postgresql+psycopg2://postgres:postgres@127.0.0.1:{postgres.port}/{database}"
    assert f"sql_alchemy_conn = {url}" in config.splitlines()
    assert "auth_manager = airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager" in config

    log = tmp_path / "wait.log"
    with log.open("wb") as sink:
        waiting = subprocess.Popen(
            scheduler.argv(containerd, scheduler.container("wait-for-db-migrations")),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 300
        while "Waiting for db migrations" not in log.read_text() and waiting.poll() is None:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(1)
        time.sleep(5)
        assert waiting.poll() is None, log.read_text()  # a fresh database: it waits
        assert postgres.psql(database, "select to_regclass('alembic_version') is null") == "t"

        # Bitnami's step in the setup Job's pod (its own prepare-config first): the library's calls
        job = ChartPod(workloads["Job", "airflow-setup-db"], docs, tmp_path / "setup-db")
        assert job.run(containerd, job.container("prepare-config")).returncode == 0
        step = copy.deepcopy(job.container("setup-db"))
        step["args"] = ["-ec", ". /opt/bitnami/scripts/airflow-env.sh\n. /opt/bitnami/scripts/libairflow.sh\n"
                        "airflow_execute db migrate\nairflow_create_admin_user\n"]  # fmt: skip
        migrated = job.run(containerd, step, BITNAMI_DEBUG="true")  # the output, for a failure
        assert migrated.returncode == 0, migrated.stdout[-3000:] + migrated.stderr[-3000:]

        assert waiting.wait(timeout=300) == 0, log.read_text()[-3000:]
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()
    assert "Waiting for the admin user to exist" in log.read_text()
    assert postgres.psql(database, "select count(*) from alembic_version") == "1"
    assert postgres.psql(database, "select username from ab_user") == "user"


def test_stopping_containerd_leaves_nothing_behind(containerd: Containerd) -> None:
    """Last: no process in its namespace, no cgroup under its parent, no mount, no state folder."""
    assert containerd.ctr("tasks", "ls", "-q").stdout.split() == []
    assert containerd.stop() == []
    assert containerd.process.poll() is not None
    assert not list(CGROUPS.glob(f"*/{containerd.cgroup_parent}"))
    assert not containerd.folder.exists()
