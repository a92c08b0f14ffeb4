"""Container images for the node tier, written as OCI image archives in pure Python: no Docker, no registry.

An OCI image archive is a tar of `oci-layout`, `index.json`, a manifest, a config and the layer blobs.
`ctr -n k8s.io images import FILE` registers it under the full reference the index's manifest descriptor
carries. Verified on containerd 1.6.20 (tests/test_images.py): its importer takes
`io.containerd.image.name` first, as it is; without it, `org.opencontainers.image.ref.name` as it is when
it is a full reference (`localhost/x:1`), but a bare tag there (`1`, the OCI layout convention) becomes
`import-DATE:1`. Both annotations carry the full reference, so any importer finds it.

The images (`python -m tests.images` builds them all and prints `REF PATH` lines):
- `localhost/pause:3.10`: `/pause`, a static C program (tests/image_assets/pause.c) that sleeps until
  SIGTERM or SIGINT (exit 0) and reaps children, as the pod sandbox's PID 1.
- `localhost/busybox:1.35`: Debian's busybox-static with its applet links (`nslookup`, `sh`, ...); its
  `wget -T` segfaults (use `timeout 5 wget`).
- `localhost/amw-airflow:<version>`: a stand-in for `apache/airflow:<version>` where the official chart
  relies on it. A Debian bookworm userland (mmdebstrap, Debian's python3 3.11, bash, coreutils, dumb-init,
  CA certificates), the repository's Airflow venv (scripts/setup-airflow.sh, made with Python 3.11.7; cp311
  wheels load in Debian's 3.11.2) relocated to `/home/airflow/.local` like the official image's, user
  `airflow` (uid 50000, gid 0, home /home/airflow; /etc/passwd group-writable), AIRFLOW_HOME=/opt/airflow
  (with dags/ and logs/, owned 50000:0, group-writable), the official ENV (PATH with the venv first,
  VIRTUAL_ENV, AIRFLOW_USER_HOME_DIR, AIRFLOW_UID, DUMB_INIT_SETSID=1, C.UTF-8 locale, ...), USER 50000,
  WORKDIR /opt/airflow, `ENTRYPOINT ["/usr/bin/dumb-init", "--", "/entrypoint"]`, `CMD []`, and the
  documented `/entrypoint` and `/clean-logs` (tests/image_assets/; their headers say what they do).
  Not reproduced: the providers and extras the official image bundles (only what the venv has: FAB, Celery
  and Postgres on 3.0.2, Celery and Postgres on 2.10.5 and 2.6.3), the MySQL/MSSQL/Postgres client tools, the
  python.org Python build under /usr/python, sudo and its secure_path, `/root/bin/pip`'s guard, the
  `airflow-scheduler-autorestart` helper, `_PIP_ADDITIONAL_REQUIREMENTS` (refused), the labels but the
  version and uid ones; `pyvenv.cfg` still says `version = 3.11.7`.
- `localhost/amw-bitnami-airflow:3.0.2`: a stand-in for Bitnami's Airflow 3 image as its chart 24.1.0 runs it
  (tests/fixtures/node-values/bitnami-airflow-24.1.0.yaml), laid out as tests/bitnami_pod.py emulates it.
  The same Debian base layer; the same Airflow 3.0.2 venv (FAB, Celery and Postgres providers) relocated to
  `/opt/bitnami/airflow/venv` (root's, read-only to the user); Bitnami's real shell libraries
  (tests/fixtures/bitnami: the common ones, then the airflow3 line's) in `/opt/bitnami/scripts/`;
  tests/bitnami_pod.py's `ini-file` emulation at `/opt/bitnami/common/bin/ini-file`; user `airflow` uid/gid
  1001 (in /etc/passwd, home /opt/bitnami/airflow); AIRFLOW_HOME=/opt/bitnami/airflow as airflow-env.sh sets
  it (owned 1001:1001, with dags/ and Airflow's default webserver_config.py, as the image's build leaves it);
  ENV PATH (`/opt/bitnami/common/bin`, the venv's bin first: tests/bitnami_pod.py's), HOME=/, LANG=C.UTF-8,
  AIRFLOW_HOME; USER 1001, WORKDIR AIRFLOW_HOME; procps (the chart's `pgrep` probes) and bash from the base.
  The venv's compiled modules appear a second time (hard links, no bytes) under airflow-env.sh's
  PYTHONPYCACHEPREFIX default, where the chart's init containers look for them (`_pycache_links`).
  No entrypoint: Bitnami's entrypoint.sh, run.sh and setup.sh are not in the repository, so the CMD refuses
  (exit 64, saying why) and the node values start each component with `airflow <component>`.
  Not reproduced: those scripts and what they do at start, nss_wrapper and `wait-for-port` (the fixtures'
  README lists them), `ini-file` beyond `set`, the airflow.cfg the image's build generates (the chart mounts
  its own in every container), Bitnami's own Python build and whatever else the image ships beyond Debian's
  packages and the venv, its ENV and labels beyond the ones above; Airflow is 3.0.2 where chart 24.1.0
  ships 3.0.1. The prefix holds the venv's modules only: init containers still compile the Debian stdlib
  modules they import at each `airflow` call.

Determinism: entries in a fixed order (sorted, or the base tarball's own order), owners and modes set
explicitly, no user or group names, gzip without name or time, JSON with sorted keys. Every entry the writer
makes itself gets mtime 0; trees copied in (the Debian base, the venv) keep their files' own mtimes, because
Python checks each `.pyc` against its source's mtime and clamping them would make every start recompile.
So the same inputs give the same digests.

Cache: `${AMW_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/airflow-migration-webhook}/node-images/`, one archive per
image named by a hash of its inputs (this file, the assets, the compiler or busybox binary, the Debian sources
and package list, the venv's pins stamp, Bitnami's scripts and `ini-file`); an archive is rebuilt only when
they change, and older ones for the same image are removed. Building needs Debian's mirror (mmdebstrap) the
first time; a test finds everything cached and needs no network; when the cache is missing and a build fails,
the error says to run `python -m tests.images` (scripts/test.sh does).
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import gzip
import hashlib
import io
import json
import os
import platform
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any, cast

from tests.bitnami_pod import IMAGE_PATH, INI_FILE, UID
from tests.support import BITNAMI_SCRIPTS

REPO = Path(__file__).resolve().parent.parent
ASSETS = Path(__file__).resolve().parent / "image_assets"
SOURCES = Path("/etc/apt/sources.list.d/debian.sources")

PAUSE_REF = "localhost/pause:3.10"
BUSYBOX_REF = "localhost/busybox:1.35"
AIRFLOW_REPOSITORY = "localhost/amw-airflow"
AIRFLOW_VERSIONS = ("3.0.2", "2.10.5", "2.6.3")  # what the node tier runs
AIRFLOW_UID = 50000
AIRFLOW_HOME = "/opt/airflow"
AIRFLOW_USER_HOME_DIR = "/home/airflow"
VENV = f"{AIRFLOW_USER_HOME_DIR}/.local"  # where the official image keeps its (venv-like) install
# the Debian userland of the Airflow images: Python for the venv, what /entrypoint and the chart's
# commands use (bash, coreutils, `hostname`, `ps`), tzdata for zoneinfo, libstdc++ for the preload
BASE_PACKAGES = (
    "python3",
    "python3-distutils",
    "dumb-init",
    "ca-certificates",
    "libstdc++6",
    "tzdata",
    "procps",
)

BITNAMI_VERSION = "3.0.2"  # the venv standing for Bitnami's 3.0.x image (chart 24.1.0 ships 3.0.1)
BITNAMI_REF = f"localhost/amw-bitnami-airflow:{BITNAMI_VERSION}"
BITNAMI_LINE = "airflow3"  # which of Bitnami's libraries (tests/fixtures/bitnami)
BITNAMI_UID = UID
BITNAMI_PATH = IMAGE_PATH
BITNAMI_AIRFLOW_HOME = "/opt/bitnami/airflow"  # airflow-env.sh: AIRFLOW_HOME=AIRFLOW_BASE_DIR
BITNAMI_VENV = f"{BITNAMI_AIRFLOW_HOME}/venv"  # airflow-env.sh: AIRFLOW_BIN_DIR=.../venv/bin
BITNAMI_PYCACHE_PREFIX = f"{BITNAMI_VENV}/tmp"  # airflow-env.sh's PYTHONPYCACHEPREFIX default
PYC_TAG = "cpython-311"  # the venvs' and Debian's Python: 3.11
BITNAMI_NO_ENTRYPOINT = (
    "localhost/amw-bitnami-airflow has no entrypoint (Bitnami's entrypoint.sh and run.sh are not "
    "reproduced): give the container a command, e.g. airflow scheduler"
)

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
CREATED = "1970-01-01T00:00:00Z"
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
GZIP_LEVEL = 1  # on a 345 MiB venv layer: 7 s for 115 MiB; level 6 takes 23 s for 101 MiB
HINT = (
    "the node tier's images are built before the tests, while Debian's mirror is reachable: "
    "run `python -m tests.images` (scripts/test.sh does)"
)


class ImageBuildError(RuntimeError):
    """An image is neither cached nor buildable here."""


@dataclass(frozen=True)
class ImageArchive:
    """An OCI image archive on disk and the full reference `ctr images import` registers it under."""

    ref: str
    path: Path


def cache_root() -> Path:
    """The project's cache folder, as the scripts compute it."""
    explicit = os.environ.get("AMW_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "airflow-migration-webhook"


def cache_dir() -> Path:
    return cache_root() / "node-images"


def _log(message: str) -> None:
    print(f"images: [{time.strftime('%H:%M:%S', time.gmtime())}] {message}", file=sys.stderr, flush=True)


def _key(*parts: object) -> str:
    """A short hash of the inputs; this module's own source is always one of them."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for part in parts:
        digest.update(b"\0" + (part if isinstance(part, bytes) else repr(part).encode()))
    return digest.hexdigest()[:16]


def _run(argv: list[str], what: str, timeout: float = 1800, env: dict[str, str] | None = None) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ImageBuildError(f"{what} failed: {exc}; {HINT}") from exc
    if result.returncode != 0:
        tail = (result.stderr or result.stdout)[-3000:]
        raise ImageBuildError(f"{what} failed (exit {result.returncode}):\n{tail}\n{HINT}")
    return result.stdout


def _apt_install(*packages: str) -> None:
    """Install Debian packages the build needs (the test script runs as root, as for etcd or PostgreSQL)."""
    _log(f"installing {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update", "-qq"], "apt-get update", env=env)
    _run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], "apt-get install", env=env
    )


@contextlib.contextmanager
def _locked() -> Iterator[Path]:
    """One builder at a time per cache folder (the CLI and a test session may overlap)."""
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield folder


# ---------------------------------------------------------------------------------------------------------
# Layers

Data = bytes | Path | Callable[[], IO[bytes] | None] | None


@dataclass(frozen=True)
class Member:
    """One layer entry: its header and, for a regular file, where its bytes come from."""

    info: tarfile.TarInfo
    data: Data = None


def _info(name: str, kind: bytes, mode: int, uid: int = 0, gid: int = 0, mtime: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, uid, gid, mtime
    info.uname = info.gname = ""
    return info


def directory(name: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> Member:
    return Member(_info(name, tarfile.DIRTYPE, mode, uid, gid))


def regular(name: str, data: bytes | Path, mode: int = 0o644, uid: int = 0, gid: int = 0) -> Member:
    return Member(_info(name, tarfile.REGTYPE, mode, uid, gid), data)


def symlink(name: str, target: str) -> Member:
    info = _info(name, tarfile.SYMTYPE, 0o777)
    info.linkname = target
    return Member(info)


def tree(
    source: Path,
    dest: str,
    uid: int,
    gid: int,
    group_writable: bool = False,
    as_of: int | None = None,
) -> Iterator[Member]:
    """`source`'s entries under `dest`, each folder's sorted, with their modes and mtimes, owned by uid:gid.

    `group_writable` gives the group the owner's rights, as the official image's `chmod -R g+rw` plus
    `g+x` on executables does for group 0. `as_of` (an mtime in ns) takes the tree as it was then: entries
    modified later are left out (a folder only when it holds nothing older) and folder mtimes are clamped to
    it, so that what programs add afterwards (a `__pycache__` written at run time, a scratch folder) changes
    nothing.
    """
    entries: list[tuple[str, Path, os.stat_result]] = [(dest, source, source.lstat())]
    for root, dirs, files in os.walk(source):
        dirs.sort()  # os.walk descends in this order: a folder's contents follow its own entry
        base = Path(root)
        prefix = dest if base == source else f"{dest}/{base.relative_to(source)}"
        entries += [(f"{prefix}/{name}", base / name, (base / name).lstat()) for name in sorted(dirs + files)]
    if as_of is not None:
        kept: set[str] = set()
        for name, _, status in entries:
            if status.st_mtime_ns <= as_of:
                while name not in kept and (name == dest or name.startswith(dest + "/")):
                    kept.add(name)
                    name = name.rpartition("/")[0]
        entries = [entry for entry in entries if entry[0] in kept]
    for name, path, status in entries:
        mode = status.st_mode & 0o7777
        if group_writable:
            mode |= 0o060 | (0o010 if mode & 0o100 else 0)
        mtime = int(status.st_mtime)
        if stat.S_ISLNK(status.st_mode):
            info = _info(name, tarfile.SYMTYPE, 0o777, uid, gid, mtime)
            info.linkname = os.readlink(path)
            yield Member(info)
        elif stat.S_ISDIR(status.st_mode):
            clamped = min(status.st_mtime_ns, as_of) // 10**9 if as_of is not None else mtime
            yield Member(_info(name, tarfile.DIRTYPE, mode, uid, gid, clamped))
        elif stat.S_ISREG(status.st_mode):
            yield Member(_info(name, tarfile.REGTYPE, mode, uid, gid, mtime), path)
        else:
            raise ImageBuildError(f"{path}: only files, folders and symbolic links go into an image")


def tarball_members(tarball: Path, keep: Callable[[str], bool] = lambda name: True) -> Iterator[Member]:
    """An uncompressed tarball's entries in its order, normalised: no `./`, no user names, no PAX extras.

    The PAX extras dropped include xattrs (file capabilities): none of the base's packages needs them.
    """
    with tarfile.open(tarball, "r:") as source:
        for original in source:
            name = _clean(original.name)
            if not name or not keep(name):
                continue
            info = copy.copy(original)
            info.name = name
            if info.islnk():
                info.linkname = _clean(info.linkname)
            info.uname = info.gname = ""
            info.pax_headers = {}
            info.mtime = int(info.mtime)
            yield Member(info, partial(source.extractfile, original) if info.isreg() else None)


def _clean(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return "" if name in (".", "/") else name.lstrip("/").rstrip("/")


class _Digesting:
    """A write-only stream that hashes and counts what passes through to `sink`."""

    def __init__(self, sink: IO[bytes] | gzip.GzipFile | None) -> None:
        self.sink = sink
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        if self.sink is not None:
            self.sink.write(data)
        return len(data)

    def flush(self) -> None:
        if self.sink is not None:
            self.sink.flush()

    @property
    def digest(self) -> str:
        return f"sha256:{self.hash.hexdigest()}"


@dataclass(frozen=True)
class Blob:
    """A content-addressed file of the image and its descriptor fields."""

    media_type: str
    digest: str
    size: int
    path: Path
    diff_id: str = ""  # for layers: the digest of the uncompressed tar
    comment: str = ""  # for layers: the history entry

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


def write_layer(members: Iterable[Member], folder: Path, compress: bool, comment: str) -> Blob:
    """Write a layer tar (gzip or not) into `folder`, hashing as it goes."""
    handle, name = tempfile.mkstemp(dir=folder, prefix="layer-", suffix=".partial")
    os.close(handle)
    partial_path = Path(name)
    with partial_path.open("wb") as raw:
        outer = _Digesting(raw)
        zipped = gzip.GzipFile(filename="", mode="wb", fileobj=cast(IO[bytes], outer), mtime=0,
                               compresslevel=GZIP_LEVEL) if compress else None  # fmt: skip
        inner = _Digesting(zipped) if zipped is not None else outer
        with tarfile.open(fileobj=cast(IO[bytes], inner), mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for member in members:
                _add(tar, member)
        if zipped is not None:
            zipped.close()
    path = folder / outer.digest.removeprefix("sha256:")
    partial_path.replace(path)
    media_type = MEDIA_LAYER_GZIP if compress else MEDIA_LAYER
    return Blob(media_type, outer.digest, outer.size, path, diff_id=inner.digest, comment=comment)


def _add(tar: tarfile.TarFile, member: Member) -> None:
    info, data = member.info, member.data
    if info.name.startswith("/") or not info.name:
        raise ValueError(f"layer entries are relative paths: {info.name!r}")
    if not info.isreg():
        tar.addfile(info)
    elif isinstance(data, bytes):
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    elif isinstance(data, Path):
        with data.open("rb") as stream:
            info.size = os.fstat(stream.fileno()).st_size
            tar.addfile(info, stream)
    elif data is not None:
        opened = data()
        if opened is None:
            raise ImageBuildError(f"no content for {info.name}")
        with opened:
            tar.addfile(info, opened)
    else:
        info.size = 0
        tar.addfile(info)


# ---------------------------------------------------------------------------------------------------------
# Images


def _canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _blob(folder: Path, media_type: str, content: bytes) -> Blob:
    digest = hashlib.sha256(content).hexdigest()
    path = folder / digest
    path.write_bytes(content)
    return Blob(media_type, f"sha256:{digest}", len(content), path)


def _architecture() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def write_archive(ref: str, layers: list[Blob], config: dict[str, Any], folder: Path, dest: Path) -> None:
    """Assemble an OCI image archive at `dest` from layer blobs in `folder` (removed as they are copied)."""
    image_config = {
        "architecture": _architecture(),
        "os": "linux",
        "created": CREATED,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [{"created": CREATED, "created_by": layer.comment} for layer in layers],
    }
    config_blob = _blob(folder, MEDIA_CONFIG, _canonical(image_config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": config_blob.descriptor(),
        "layers": [layer.descriptor() for layer in layers],
    }
    manifest_blob = _blob(folder, MEDIA_MANIFEST, _canonical(manifest))
    index = {
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [
            {
                **manifest_blob.descriptor(),
                "platform": {"architecture": _architecture(), "os": "linux"},
                "annotations": {ANNOTATION_CONTAINERD_NAME: ref, ANNOTATION_REF_NAME: ref},
            }
        ],
    }
    blobs = {blob.digest: blob for blob in [*layers, config_blob, manifest_blob]}
    partial_path = folder / "archive.partial"  # the build folder, removed even when this fails
    with tarfile.open(partial_path, "w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, directory("blobs"))
        _add(tar, directory("blobs/sha256"))
        for digest in sorted(blobs):
            _add(tar, regular(f"blobs/sha256/{digest.removeprefix('sha256:')}", blobs[digest].path))
            blobs[digest].path.unlink()
        _add(tar, regular("index.json", _canonical(index)))
        _add(tar, regular("oci-layout", _canonical({"imageLayoutVersion": "1.0.0"})))
    partial_path.replace(dest)


def _cached(name: str, key: str, build: Callable[[Path, Path], None]) -> Path:
    """The archive `name-key.tar`, built by `build(workdir, dest)` unless present; older keys removed."""
    with _locked() as folder:
        dest = folder / f"{name}-{key}.tar"
        if dest.exists():
            return dest
        workdir = Path(tempfile.mkdtemp(dir=folder, prefix=".build-"))
        try:
            started = time.monotonic()
            build(workdir, dest)
            _log(f"{dest.name}: {dest.stat().st_size / 2**20:.1f} MiB in {time.monotonic() - started:.1f} s")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        for old in folder.glob(f"{name}-*.tar"):
            if old != dest and re.fullmatch(rf"{re.escape(name)}-[0-9a-f]{{16}}\.tar", old.name):
                old.unlink()
        return dest


def pause_image() -> ImageArchive:
    """`localhost/pause:3.10`: the sandbox image the node's containerd is configured with."""
    source = ASSETS / "pause.c"
    compiler = _run(["gcc", "--version"], "gcc --version").splitlines()[0]

    def build(workdir: Path, dest: Path) -> None:
        binary = workdir / "pause"
        _run(["gcc", "-static", "-Os", "-s", "-o", str(binary), str(source)], "compiling pause.c")
        layer = write_layer([regular("pause", binary, 0o755)], workdir, compress=False, comment="pause.c")
        config = {"User": "65535:65535", "Entrypoint": ["/pause"], "Env": [f"PATH={_PATH}"]}
        write_archive(PAUSE_REF, [layer], config, workdir, dest)

    return ImageArchive(PAUSE_REF, _cached("pause-3.10", _key(source.read_bytes(), compiler), build))


def busybox_image() -> ImageArchive:
    """`localhost/busybox:1.35`: Debian's busybox-static and its applet links, for DNS checks and shells."""
    binary = Path("/usr/bin/busybox")
    if not _is_static_busybox(binary):
        _apt_install("busybox-static")
    applets = _run([str(binary), "--list-full"], "busybox --list-full").split()
    content = binary.read_bytes()

    def build(workdir: Path, dest: Path) -> None:
        members = [
            *(directory(name) for name in ("bin", "dev", "etc", "proc", "sbin", "sys", "usr", "usr/bin")),
            *(directory(name) for name in ("usr/sbin", "var")),
            directory("root", 0o700),
            directory("tmp", 0o1777),
            regular("bin/busybox", content, 0o755),
            regular(
                "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
            ),
            regular("etc/group", b"root:x:0:\nnogroup:x:65534:\n"),
            *(symlink(name, "/bin/busybox") for name in applets if name != "bin/busybox"),
        ]
        members.sort(key=lambda member: member.info.name)
        layer = write_layer(members, workdir, compress=True, comment="Debian busybox-static")
        write_archive(BUSYBOX_REF, [layer], {"Env": [f"PATH={_PATH}"], "Cmd": ["sh"]}, workdir, dest)

    return ImageArchive(BUSYBOX_REF, _cached("busybox-1.35", _key(content, applets), build))


def _is_static_busybox(binary: Path) -> bool:
    """Debian's busybox-static installed (the dynamically linked `busybox` package would not run alone)."""
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", "busybox-static"], capture_output=True, text=True, check=False
    )
    return binary.exists() and result.stdout.strip() == "install ok installed"


# ---------------------------------------------------------------------------------------------------------
# The Airflow stand-in


def debian_base() -> Path:
    """A Debian bookworm minbase tarball with BASE_PACKAGES, made once with mmdebstrap (needs the mirror).

    The same recipe as scripts/build-image.sh's base (merged /usr; docs, man pages and locales left out),
    with this tier's packages; cached under the node-images folder, keyed by the sources and packages.
    """
    include = ",".join(BASE_PACKAGES)
    key = hashlib.sha256(SOURCES.read_bytes() + include.encode()).hexdigest()[:12]
    tarball = cache_dir() / "base" / f"bookworm-{key}.tar"
    if tarball.exists():
        return tarball
    if shutil.which("mmdebstrap") is None:
        _apt_install("mmdebstrap")
    tarball.parent.mkdir(parents=True, exist_ok=True)
    partial_path = tarball.with_name(tarball.stem + ".partial.tar")  # the .tar suffix makes it a tarball
    _log("making the Debian base with mmdebstrap (about a minute, once)")
    _run(
        [
            "mmdebstrap", "--quiet", "--variant=minbase", f"--include={include}",
            "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
            "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-include=/usr/share/doc/*/copyright", "--dpkgopt=path-exclude=/usr/share/locale/*",
            "--dpkgopt=path-exclude=/usr/share/info/*",
            "bookworm", str(partial_path), str(SOURCES),
        ],
        "mmdebstrap",
    )  # fmt: skip
    partial_path.replace(tarball)
    return tarball


def airflow_venv(version: str) -> tuple[Path, Path]:
    """The venv scripts/setup-airflow.sh installed for `version` and its pins stamp (installed if missing)."""
    venv = cache_root() / "airflow" / f"af-{version}"
    stamps = sorted(venv.glob(".pins-*"))
    if not stamps:
        _log(f"Airflow {version} is not installed: running scripts/setup-airflow.sh")
        _run(["bash", str(REPO / "scripts" / "setup-airflow.sh")], "scripts/setup-airflow.sh", timeout=3600)
        stamps = sorted(venv.glob(".pins-*"))
        if not stamps:
            raise ImageBuildError(f"scripts/setup-airflow.sh did not install Airflow {version} in {venv}")
    return venv, stamps[-1]


def _read_member(tarball: Path, name: str) -> bytes:
    with tarfile.open(tarball, "r:") as source:
        for info in source:
            if _clean(info.name) == name:
                stream = source.extractfile(info)
                if stream is not None:
                    return stream.read()
    raise ImageBuildError(f"{name} missing from {tarball}")


def _venv_members(
    venv: Path, stamp: Path, dest: str, uid: int, gid: int, group_writable: bool
) -> Iterator[Member]:
    """The venv as setup-airflow.sh left it (at `stamp`), relocated to `dest`, owned by uid:gid.

    Relocation: `pyvenv.cfg` names Debian's python, the interpreter links point at /usr/bin, and every
    script in bin/ that names the venv's old path (shebangs, activate scripts) names `dest` instead.
    """
    config = dict(
        line.split(" = ", 1) for line in (venv / "pyvenv.cfg").read_text().splitlines() if " = " in line
    )
    old_home = config["home"].rstrip("/") + "/"
    old_path = str(venv.resolve()).encode()
    installed = stamp.stat().st_mtime_ns  # setup-airflow.sh touches the stamp after pip is done
    name = dest.lstrip("/")
    for member in tree(venv, name, uid, gid, group_writable=group_writable, as_of=installed):
        info, relative = member.info, member.info.name.removeprefix(name + "/")
        if relative.startswith(".pins-"):
            continue
        if relative == "pyvenv.cfg":
            text = (
                f"home = /usr/bin\ninclude-system-site-packages = {config['include-system-site-packages']}\n"
            )
            text += f"version = {config['version']}\nexecutable = /usr/bin/python3.11\n"
            text += f"command = /usr/bin/python3 -m venv {dest}\n"
            yield Member(info, text.encode())
        elif info.issym() and relative.startswith("bin/") and info.linkname.startswith(old_home):
            info.linkname = "/usr/bin/" + info.linkname.removeprefix(old_home)
            yield member
        elif info.isreg() and relative.startswith("bin/") and isinstance(member.data, Path):
            content = member.data.read_bytes()
            yield Member(info, content.replace(old_path, dest.encode())) if old_path in content else member
        else:
            yield member


def _airflow_config(version: str) -> dict[str, Any]:
    env = {
        "PATH": f"{VENV}/bin:{_PATH}",
        "VIRTUAL_ENV": VENV,
        "DEBIAN_FRONTEND": "noninteractive",
        "LANGUAGE": "C.UTF-8",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "LC_CTYPE": "C.UTF-8",
        "LC_MESSAGES": "C.UTF-8",
        "PIP_CACHE_DIR": "/tmp/.cache/pip",
        "GUNICORN_CMD_ARGS": "--worker-tmp-dir /dev/shm",
        "AIRFLOW_UID": str(AIRFLOW_UID),
        "AIRFLOW_USER_HOME_DIR": AIRFLOW_USER_HOME_DIR,
        "AIRFLOW_HOME": AIRFLOW_HOME,
        "DUMB_INIT_SETSID": "1",
        "PS1": "(airflow)",
        "AIRFLOW_VERSION": version,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
    }
    return {
        "User": str(AIRFLOW_UID),
        "Env": [f"{name}={value}" for name, value in env.items()],
        "Entrypoint": ["/usr/bin/dumb-init", "--", "/entrypoint"],
        "Cmd": [],
        "WorkingDir": AIRFLOW_HOME,
        "ExposedPorts": {"8080/tcp": {}},
        "Labels": {"org.apache.airflow.version": version, "org.apache.airflow.uid": str(AIRFLOW_UID)},
    }


def _airflow_members(base: Path) -> list[Member]:
    """The last, small layer: the airflow user, AIRFLOW_HOME and the entrypoint scripts."""
    passwd = _read_member(base, "etc/passwd").decode()
    gecos = "First Last,RoomNumber,WorkPhone,HomePhone"  # what the official image's adduser call leaves
    passwd += f"airflow:x:{AIRFLOW_UID}:0:{gecos}:{AIRFLOW_USER_HOME_DIR}:/bin/bash\n"
    group = re.sub(r"(?m)^root:x:0:$", "root:x:0:airflow", _read_member(base, "etc/group").decode())
    owned = {"uid": AIRFLOW_UID, "gid": 0}
    members = [
        regular("etc/passwd", passwd.encode(), 0o664),  # group-writable: an arbitrary uid adds itself
        regular("etc/group", group.encode()),
        regular("entrypoint", (ASSETS / "entrypoint").read_bytes(), 0o755),
        regular("clean-logs", (ASSETS / "clean-logs").read_bytes(), 0o755),
        directory("opt"),
        directory(AIRFLOW_HOME.lstrip("/"), 0o775, **owned),
        directory(f"{AIRFLOW_HOME.lstrip('/')}/dags", 0o775, **owned),
        directory(f"{AIRFLOW_HOME.lstrip('/')}/logs", 0o775, **owned),
    ]
    return sorted(members, key=lambda member: member.info.name)


def _base_layer(base: Path, workdir: Path) -> Blob:
    """The Debian base as the first layer: the same bytes (and digest) in every image built on it."""
    everything_but_devices = tarball_members(base, keep=lambda name: not name.startswith("dev/"))
    return write_layer(
        everything_but_devices, workdir, compress=True, comment=f"Debian bookworm: {','.join(BASE_PACKAGES)}"
    )


def airflow_image(version: str) -> ImageArchive:
    """`localhost/amw-airflow:<version>`: the official image's contract over the repository's venv."""
    ref = f"{AIRFLOW_REPOSITORY}:{version}"
    venv, stamp = airflow_venv(version)
    include = ",".join(BASE_PACKAGES)
    assets = [(ASSETS / name).read_bytes() for name in ("entrypoint", "clean-logs")]
    key = _key(
        version, SOURCES.read_bytes(), include, str(venv), stamp.name, stamp.stat().st_mtime_ns, *assets
    )

    def build(workdir: Path, dest: Path) -> None:
        base = debian_base()
        _log(f"writing {ref} (about 20 s)")
        venv_layer = [
            directory(AIRFLOW_USER_HOME_DIR.lstrip("/"), 0o775, uid=AIRFLOW_UID, gid=0),
            *_venv_members(venv, stamp, VENV, AIRFLOW_UID, 0, group_writable=True),
        ]
        layers = [
            _base_layer(base, workdir),
            write_layer(venv_layer, workdir, compress=True, comment=f"Airflow {version} venv at {VENV}"),
            write_layer(
                _airflow_members(base), workdir, compress=False, comment="user, AIRFLOW_HOME, /entrypoint"
            ),
        ]
        write_archive(ref, layers, _airflow_config(version), workdir, dest)

    return ImageArchive(ref, _cached(f"amw-airflow-{version}", key, build))


# ---------------------------------------------------------------------------------------------------------
# The Bitnami-style image


def _bitnami_scripts() -> list[tuple[str, bytes]]:
    """`/opt/bitnami/scripts/` as the image lays it out: the common libraries, then the image line's."""
    scripts: dict[str, bytes] = {}
    for folder in (
        BITNAMI_SCRIPTS / "common",
        BITNAMI_SCRIPTS / BITNAMI_LINE / "opt" / "bitnami" / "scripts",
    ):
        scripts.update((path.name, path.read_bytes()) for path in sorted(folder.glob("*.sh")))
    return sorted(scripts.items())


def _pycache_links(venv_members: Iterable[Member], prefix: str) -> Iterator[Member]:
    """The venv's entries, then each of its `__pycache__/X.cpython-311.pyc` again (a hard link, no bytes)
    where Python looks for it under PYTHONPYCACHEPREFIX=`prefix`: `prefix/<source folder>/X.cpython-311.pyc`.

    Without them, every `airflow` call of a container that sources airflow-env.sh (which sets that prefix)
    and does not mount a folder there (the init containers) compiles Airflow afresh: in the image,
    `airflow version` then takes 4.7 s of CPU instead of 2.7 s.
    """
    links: dict[str, str] = {}
    for member in venv_members:
        yield member
        folder, _, name = member.info.name.rpartition("/__pycache__/")
        if folder and member.info.isreg() and name.endswith(f".{PYC_TAG}.pyc"):
            links[f"{prefix.lstrip('/')}/{folder}/{name}"] = member.info.name
    folders = {prefix.lstrip("/")}
    for link in links:
        parent = link.rpartition("/")[0]
        while parent not in folders and parent.startswith(prefix.lstrip("/")):
            folders.add(parent)
            parent = parent.rpartition("/")[0]
    for folder in sorted(folders):
        yield directory(folder)
    for link, target in sorted(links.items()):
        info = _info(link, tarfile.LNKTYPE, 0o644)
        info.linkname = target
        yield Member(info)


def _bitnami_members(base: Path, venv: Path) -> list[Member]:
    """The last, small layer: the `airflow` user, AIRFLOW_HOME, Bitnami's scripts and `ini-file`."""
    passwd = _read_member(base, "etc/passwd").decode()
    passwd += f"airflow:x:{BITNAMI_UID}:{BITNAMI_UID}::{BITNAMI_AIRFLOW_HOME}:/bin/bash\n"
    group = _read_member(base, "etc/group").decode() + f"airflow:x:{BITNAMI_UID}:\n"
    home = BITNAMI_AIRFLOW_HOME.lstrip("/")
    owned = {"uid": BITNAMI_UID, "gid": BITNAMI_UID}
    # what the image's build leaves in AIRFLOW_HOME (`airflow_generate_config` copies Airflow's default)
    [webserver_config] = venv.glob(
        "lib/python*/site-packages/airflow/config_templates/default_webserver_config.py"
    )
    members = [
        regular("etc/passwd", passwd.encode()),
        regular("etc/group", group.encode()),
        directory("opt/bitnami/scripts"),
        *(regular(f"opt/bitnami/scripts/{name}", content, 0o755) for name, content in _bitnami_scripts()),
        directory("opt/bitnami/common"),
        directory("opt/bitnami/common/bin"),
        regular("opt/bitnami/common/bin/ini-file", INI_FILE.encode(), 0o755),
        directory(home, 0o775, **owned),
        directory(f"{home}/dags", 0o775, **owned),
        regular(f"{home}/webserver_config.py", webserver_config, 0o664, **owned),
    ]
    return sorted(members, key=lambda member: member.info.name)


def _bitnami_config() -> dict[str, Any]:
    env = {
        "PATH": BITNAMI_PATH,
        "HOME": "/",
        "LANG": "C.UTF-8",
        "AIRFLOW_HOME": BITNAMI_AIRFLOW_HOME,
    }
    return {
        "User": str(BITNAMI_UID),
        "Env": [f"{name}={value}" for name, value in env.items()],
        # no Entrypoint: Bitnami's entrypoint.sh and run.sh are not in the repository; a container without a
        # command is refused with a message instead of starting something else
        "Cmd": ["/bin/sh", "-c", 'echo "$0" >&2; exit 64', BITNAMI_NO_ENTRYPOINT],
        "WorkingDir": BITNAMI_AIRFLOW_HOME,
        "ExposedPorts": {"8080/tcp": {}},
        "Labels": {"org.opencontainers.image.version": BITNAMI_VERSION},
    }


def bitnami_image() -> ImageArchive:
    """`localhost/amw-bitnami-airflow:3.0.2`: Bitnami's layout and shell libraries over the repo's venv."""
    venv, stamp = airflow_venv(BITNAMI_VERSION)
    scripts = _bitnami_scripts()
    key = _key(
        BITNAMI_VERSION, SOURCES.read_bytes(), BASE_PACKAGES, str(venv), stamp.name, stamp.stat().st_mtime_ns,
        scripts, INI_FILE, BITNAMI_PATH,
    )  # fmt: skip

    def build(workdir: Path, dest: Path) -> None:
        base = debian_base()
        _log(f"writing {BITNAMI_REF} (about 20 s)")
        venv_layer = [
            directory("opt/bitnami"),
            directory(BITNAMI_AIRFLOW_HOME.lstrip("/"), 0o775, uid=BITNAMI_UID, gid=BITNAMI_UID),
            *_pycache_links(
                _venv_members(venv, stamp, BITNAMI_VENV, 0, 0, group_writable=False), BITNAMI_PYCACHE_PREFIX
            ),
        ]
        layers = [
            _base_layer(base, workdir),
            write_layer(
                venv_layer,
                workdir,
                compress=True,
                comment=f"Airflow {BITNAMI_VERSION} venv at {BITNAMI_VENV}",
            ),
            write_layer(
                _bitnami_members(base, venv),
                workdir,
                compress=False,
                comment="user, AIRFLOW_HOME, /opt/bitnami/scripts, ini-file",
            ),
        ]
        write_archive(BITNAMI_REF, layers, _bitnami_config(), workdir, dest)

    return ImageArchive(BITNAMI_REF, _cached(f"amw-bitnami-airflow-{BITNAMI_VERSION}", key, build))


def node_images() -> list[ImageArchive]:
    """Every image the node tier runs, built or found in the cache."""
    return [
        pause_image(),
        busybox_image(),
        *(airflow_image(version) for version in AIRFLOW_VERSIONS),
        bitnami_image(),
    ]


def main() -> int:
    try:
        images = node_images()
    except ImageBuildError as exc:
        print(f"images: {exc}", file=sys.stderr)
        return 1
    for image in images:
        print(f"{image.ref} {image.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
