"""The real image, built from the Dockerfile and run as the chart runs it, without Docker or a registry.

scripts/build-image.sh builds it with buildah on a base made from Debian's packages and keeps it as an OCI
archive in the cache folder; scripts/test.sh runs it before pytest (which has no network:
scripts/isolated.sh), so here it only prints the cached archive's path. The module loads that archive into a
scratch podman storage (`podman load`), and podman runs it on runc with the chart's security settings:
uid/gid 65532, all capabilities dropped, no new privileges, a read-only root without even a tmpfs, 256 MiB of
memory. Storage, images and containers live in the scratch folder, which the module removes at the end.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonpatch
import pytest

from app.engine import EngineConfig, mutate
from app.tls.issue import write_certificates
from tests.servers import free_port
from tests.support import ADMISSION_FIXTURES, setup_script_path

pytestmark = pytest.mark.image
IMAGE = "localhost/airflow-migration-webhook:test"  # the name the archive carries (scripts/build-image.sh)
MEMORY_LIMIT = 256 * 1024 * 1024  # the chart's resources.limits.memory
DRAIN_SECONDS = 2.0  # the server's default drain delay
HEADERS = {"Content-Type": "application/json"}


class Podman:
    def __init__(self, env: dict[str, str], image: str) -> None:
        self.env, self.image = env, image

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["podman", *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed:\n{result.stderr[-3000:]}")
        return result


def image_archive() -> Path:
    """The image's OCI archive: scripts/build-image.sh prints its path last (cached: no build, no network)."""
    return setup_script_path("build-image.sh", timeout=240)


def scratch_podman(scratch: Path) -> dict[str, str]:
    """The environment that points podman at storage, run state and configuration inside `scratch`."""
    (scratch / "storage").mkdir()
    (scratch / "run").mkdir()
    # podman's default ulimits ask for more than this machine grants: explicit ones the chart's pod would see
    (scratch / "containers.conf").write_text(
        "[containers]\n"
        'default_ulimits = ["nofile=8192:8192", "nproc=4096:4096"]\n'
        "[engine]\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
    )
    (scratch / "storage.conf").write_text(
        f'[storage]\ndriver = "vfs"\ngraphroot = "{scratch / "storage"}"\nrunroot = "{scratch / "run"}"\n'
    )
    return {
        **os.environ,
        "CONTAINERS_CONF": str(scratch / "containers.conf"),
        "CONTAINERS_STORAGE_CONF": str(scratch / "storage.conf"),
    }


@pytest.fixture(scope="module")
def podman() -> Iterator[Podman]:
    archive = image_archive()
    scratch = Path(tempfile.mkdtemp(prefix="amw-image-"))
    try:
        handle = Podman(scratch_podman(scratch), IMAGE)
        loaded = handle("load", "--input", str(archive), timeout=300).stdout
        assert f"Loaded image: {IMAGE}" in loaded.splitlines(), loaded
        yield handle
        handle("rm", "--all", "--force", check=False)
        handle("rmi", "--all", "--force", check=False)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    folder = tmp_path / "certs"
    write_certificates(folder, ["localhost"], ["127.0.0.1"])
    for path in folder.iterdir():  # a Secret volume's files are readable by the pod's user
        path.chmod(0o644)
    return folder


def run_as_the_chart_does(podman: Podman, certs: Path, name: str, *extra: str) -> tuple[int, int]:
    port, health = free_port(), free_port()
    podman(
        "run", "--detach", "--name", name, "--network", "host",
        "--user", "65532:65532", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--read-only", "--read-only-tmpfs=false", "--memory", str(MEMORY_LIMIT),
        "--volume", f"{certs}:/certs:ro", *extra, podman.image,
        "--cert-file", "/certs/tls.crt", "--key-file", "/certs/tls.key", "--host", "127.0.0.1",
        "--health-host", "127.0.0.1", "--port", str(port), "--health-port", str(health),
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{health}/readyz", timeout=1).status_code == 200:
                return port, health
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, podman("logs", name, check=False).stdout[-3000:]
        time.sleep(0.2)


def status_of(podman: Podman, name: str) -> dict[str, str]:
    text = podman("exec", name, "cat", "/proc/1/status").stdout
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def test_the_image_runs_and_answers_as_the_chart_runs_it(podman: Podman, certs: Path) -> None:
    port, _ = run_as_the_chart_does(podman, certs, "amw")
    status = status_of(podman, "amw")
    assert status["Uid"].split() == ["65532"] * 4 and status["Gid"].split() == ["65532"] * 4
    assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0
    assert status["NoNewPrivs"].strip() == "1"

    with httpx.Client(verify=ssl.create_default_context(cafile=str(certs / "ca.crt")), timeout=10) as client:
        real = json.loads((ADMISSION_FIXTURES / "bitnami-24.1.0-scheduler-create.json").read_text())
        answer = client.post(f"https://localhost:{port}/mutate?timeout=5s", json=real).json()["response"]
        assert answer["uid"] == real["request"]["uid"] and answer["allowed"] is True
        operations = json.loads(base64.b64decode(answer["patch"]))
        stored = jsonpatch.apply_patch(copy.deepcopy(real["request"]["object"]), operations)
        assert stored == mutate(real["request"]["object"], "CREATE", EngineConfig()).object
        for path in sorted(ADMISSION_FIXTURES.glob("*.json")):
            body: dict[str, Any] = json.loads(path.read_text())
            response = client.post(f"https://localhost:{port}/mutate?timeout=5s", json=body)
            assert response.status_code == 200, path.name
            assert response.json()["response"]["uid"] == body["request"]["uid"], path.name

    usage = podman("stats", "--no-stream", "--format", "json", "amw").stdout
    used = json.loads(usage)[0]["mem_usage"].split("/")[0].strip()
    assert (
        used.endswith(("kB", "MB"))
        and float(used[:-2]) * (1e3 if used.endswith("kB") else 1e6) < MEMORY_LIMIT
    )
    # nothing written outside the mounts podman itself adds (/certs, and /etc/hosts etc. under /etc)
    changes = {line.split()[1] for line in podman("diff", "amw").stdout.splitlines() if line.strip()}
    assert changes <= {"/certs", "/etc", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/run"}, changes

    started = time.monotonic()
    podman("stop", "--time", "20", "amw")
    elapsed = time.monotonic() - started
    state = json.loads(podman("inspect", "amw").stdout)[0]["State"]
    logs = podman("logs", "amw").stdout.splitlines()
    assert state["ExitCode"] == 0
    assert elapsed < DRAIN_SECONDS + 1, f"stopped in {elapsed:.1f} s"
    stopped = [json.loads(line) for line in logs if '"stopped"' in line]
    assert stopped and stopped[-1]["clean"] is True


def test_no_module_is_compiled_at_start(podman: Podman, certs: Path) -> None:
    """Bytecode checked by hash survives COPY --from: every module `serve` imports comes from its pyc."""
    serve = (
        "timeout 4 airflow-migration-webhook serve --cert-file /certs/tls.crt --key-file /certs/tls.key"
        f" --host 127.0.0.1 --health-host 127.0.0.1 --port {free_port()} --health-port {free_port()}"
    )
    result = podman(
        "run", "--rm", "--network", "host", "--user", "65532:65532", "--read-only", "--read-only-tmpfs=false",
        "--env", "PYTHONVERBOSE=1", "--volume", f"{certs}:/certs:ro", "--entrypoint", "/bin/sh", podman.image,
        "-c", f"{serve} 2>&1; true",
    )  # fmt: skip
    loads = [line for line in result.stdout.splitlines() if line.startswith("# code object from")]
    from_source = [line for line in loads if ".pyc" not in line]
    assert len(loads) > 300, "PYTHONVERBOSE showed no imports"
    assert from_source == [], f"{len(from_source)} modules compiled at start, e.g. {from_source[:3]}"


def test_build_tools_do_not_ship_and_the_size_is_known(podman: Podman) -> None:
    listing = podman(
        "run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", podman.image, "-c",
        "ls /opt/venv/bin /opt/venv/lib/python3*/site-packages",
    ).stdout.split()  # fmt: skip
    assert not [name for name in listing if name.lower().startswith(("pip", "setuptools", "wheel"))]
    size = int(json.loads(podman("image", "inspect", podman.image).stdout)[0]["Size"])
    assert size < 400 * 1024 * 1024, f"image is {size / 1e6:.0f} MB"
