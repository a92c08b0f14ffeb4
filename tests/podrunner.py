"""Run a pod spec's init containers in order as local processes, as a kubelet would, for the Airflow tier.

What it does: each container's command + args (args alone when there is no command: the image's
entrypoint is not emulated; the official image's entrypoint would run them as a command too), its env
(literal values with `$(VAR)` expansion, secretKeyRef / configMapKeyRef / fieldRef metadata.name and
metadata.namespace, envFrom with prefixes) from the Secrets and ConfigMaps given to it, its workingDir when
that exists here, a per-pod scratch directory as HOME, and the `airflow` of the virtual environment that
stands for the container's image first on PATH. It stops at the first failing container, like a kubelet.

What it does not emulate: volumes and volumeMounts (file mounts such as the chart's airflow.cfg are not
there: the DB connection comes from env), image entrypoints, users and security contexts, resource limits,
restarts (a kubelet would retry a failed init container; the tests assert on the first run), probes.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


@dataclass
class ContainerRun:
    name: str
    returncode: int
    output: str
    seconds: float  # wall time
    cpu_seconds: float  # user + system time of the container's processes (what a CPU limit meters)


def run_container(name: str, argv: list[str], timeout: float, **options: Any) -> ContainerRun:
    """Run one container's process to its end, as a kubelet waits for an init container."""
    started = time.monotonic()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **options)
    streams: dict[str, str] = {}
    ended: list[tuple[int, int, Any]] = []  # os.wait4's answer: this child's own rusage, thread-safe

    def read(key: str, stream: IO[str]) -> None:
        with stream:
            streams[key] = stream.read()

    threads = [
        threading.Thread(target=read, args=("out", process.stdout)),
        threading.Thread(target=read, args=("err", process.stderr)),
        threading.Thread(target=lambda: ended.append(os.wait4(process.pid, 0))),
    ]
    for thread in threads:
        thread.start()
    threads[2].join(timeout)
    if not ended:
        process.kill()
        for thread in threads:
            thread.join()
        raise subprocess.TimeoutExpired(argv, timeout)
    for thread in threads[:2]:
        thread.join()
    _, status, usage = ended[0]
    process.returncode = os.waitstatus_to_exitcode(status)
    return ContainerRun(
        name,
        process.returncode,
        streams["out"] + streams["err"],
        time.monotonic() - started,
        usage.ru_utime + usage.ru_stime,
    )


@dataclass
class PodRun:
    runs: list[ContainerRun] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return bool(self.runs) and all(run.returncode == 0 for run in self.runs)

    def of(self, name: str) -> ContainerRun:
        return next(run for run in self.runs if run.name == name)


@dataclass
class PodRunner:
    secrets: dict[str, dict[str, str]]
    config_maps: dict[str, dict[str, str]]
    image_bin: Callable[[str], Path]  # image -> folder with its `airflow`
    overrides: dict[str, str] = field(default_factory=dict)  # env applied last (AIRFLOW_HOME, ...)
    pod_name: str = "pod-0"
    namespace: str = "airflow"

    def _lookup(self, source: dict[str, dict[str, str]], ref: dict[str, Any], kind: str) -> str | None:
        value = source.get(ref["name"], {}).get(ref["key"])
        if value is None and not ref.get("optional"):
            raise KeyError(f"{kind} {ref['name']}/{ref['key']} not given to the harness")
        return value

    def env_of(self, container: dict[str, Any]) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            prefix = source.get("prefix", "")
            if "secretRef" in source:
                env.update({prefix + k: v for k, v in self.secrets[source["secretRef"]["name"]].items()})
            if "configMapRef" in source:
                env.update(
                    {prefix + k: v for k, v in self.config_maps[source["configMapRef"]["name"]].items()}
                )
        for entry in container.get("env", []):
            value: str | None
            if "value" in entry:
                value = _REFERENCE.sub(lambda m: env.get(m.group(1), m.group(0)), entry["value"])
            elif "valueFrom" in entry:
                source = entry["valueFrom"]
                if "secretKeyRef" in source:
                    value = self._lookup(self.secrets, source["secretKeyRef"], "Secret")
                elif "configMapKeyRef" in source:
                    value = self._lookup(self.config_maps, source["configMapKeyRef"], "ConfigMap")
                elif source.get("fieldRef", {}).get("fieldPath") == "metadata.name":
                    value = self.pod_name
                elif source.get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
                    value = self.namespace
                else:
                    raise NotImplementedError(f"env source {source} is not emulated")
            else:
                value = ""
            if value is not None:
                env[entry["name"]] = value
        return env

    def run(self, pod_spec: dict[str, Any], scratch: Path, timeout: float = 600) -> PodRun:
        scratch.mkdir(parents=True, exist_ok=True)
        result = PodRun()
        for container in pod_spec.get("initContainers", []):
            argv = [*container.get("command", []), *container.get("args", [])]
            env = {
                "PATH": f"{self.image_bin(container['image'])}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                "HOME": str(scratch),
                "LANG": "C.UTF-8",
                **self.env_of(container),
                **self.overrides,
            }
            working = container.get("workingDir")
            cwd = working if working and Path(working).is_dir() else str(scratch)
            run = run_container(container["name"], argv, timeout, env=env, cwd=cwd)
            result.runs.append(run)
            if run.returncode != 0:
                break
        return result
