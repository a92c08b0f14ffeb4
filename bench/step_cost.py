"""What the migrate step adds to every pod start when nothing is pending, per image line, beside its floor.

    .venv/bin/python -m bench.step_cost [--runs 5]

Needs the Airflow tier's installs (scripts/setup-airflow.sh) and root (the Bitnami pods run in a private
mount namespace). For each image line it migrates a fresh database once, then, `--runs` times in turn, starts
fresh pods on the up-to-date database (each with fresh volumes: on Bitnami the byte-code cache is an emptyDir)
and times, in the step's place with the step's env and mounts:

- the step itself, and the chart's own wait container after it in the same pod (what the pod pays anyway);
- one Airflow CLI start (`airflow version`), what the step's target is measured against;
- a bare start of the image's Python (`python3 -c pass`): the physical floor of any step;
- one Airflow CLI start right after the step, in the same pod: on Bitnami's images, whose byte-code cache is
  an emptyDir that the step and the main container share, what the step compiled the next process reuses.

It prints one table per image line (median wall time and median CPU time: user + system of the container's
processes, which is what a CPU limit meters and what noise from other processes on the machine leaves alone)
and the load average before and after. It exits 1 when a step does more than it should (anything but
`no migrations pending`) or a pod fails.
"""

from __future__ import annotations

import argparse
import copy
import functools
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.engine.names import STEP_CONTAINER_NAME
from app.engine.profiles import BITNAMI, OFFICIAL
from tests.podrunner import ContainerRun, PodRun
from tests.postgres import Postgres
from tests.test_airflow import official_scheduler, render_secrets, runner
from tests.test_bitnami import AIRFLOW2, AIRFLOW3, Line, make_pod

# What runs in the step's place besides the step (after the profile's preamble, as the step's own script).
CLI_START = "one Airflow CLI start (`airflow version`)"
REFERENCES = {
    CLI_START: "airflow version >/dev/null",
    "a bare interpreter start (`python3 -c pass`)": "python3 -c pass",
}
STEP = "the step on an up-to-date DB"
AFTER_STEP = "after-the-step"
# the next Python after the step in the same pod: on Bitnami's images what it finds in the byte-code cache
# (an emptyDir the step and the main container share) the step compiled
AFTER = "one Airflow CLI start right after the step, same pod"


@dataclass
class Timings:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def add(self, run: ContainerRun) -> None:
        self.wall.append(run.seconds)
        self.cpu.append(run.cpu_seconds)


def in_step_place(spec: dict[str, Any], body: str, preamble: tuple[str, ...]) -> dict[str, Any]:
    """The pod spec up to the step, with `body` as the step's script."""
    spec = copy.deepcopy(spec)
    names = [c["name"] for c in spec["initContainers"]]
    at = names.index(STEP_CONTAINER_NAME)
    spec["initContainers"] = spec["initContainers"][: at + 1]
    step = spec["initContainers"][at]
    argv = step["command"] if "command" in step else step["args"]
    argv[-1] = "\n".join([*preamble, body]) + "\n"
    return spec


def after_step(spec: dict[str, Any], body: str, preamble: tuple[str, ...]) -> dict[str, Any]:
    """The pod spec up to the step, then a copy of the step (its env and mounts) running `body`."""
    spec = copy.deepcopy(spec)
    names = [c["name"] for c in spec["initContainers"]]
    at = names.index(STEP_CONTAINER_NAME)
    follower = in_step_place(spec, body, preamble)["initContainers"][at]
    follower["name"] = AFTER_STEP
    spec["initContainers"] = [*spec["initContainers"][: at + 1], follower]
    return spec


@dataclass
class ImageLine:
    title: str
    wait_container: str
    preamble: tuple[str, ...]
    # (spec change or None, scratch) -> the pod's run
    run: Callable[[Callable[[dict[str, Any]], dict[str, Any]] | None, Path], PodRun]


def official(cache: Path, postgres: Postgres, database: str) -> ImageLine:
    secrets = render_secrets()
    secrets["airflow-metadata"] = {"connection": postgres.url(database)}
    spec = official_scheduler("3.0.2")

    def run(change: Callable[[dict[str, Any]], dict[str, Any]] | None, scratch: Path) -> PodRun:
        pod = change(spec) if change else spec
        return runner(cache, secrets, scratch / "airflow-home").run(pod, scratch)

    return ImageLine(
        "official chart 1.18.0, Airflow 3.0.2", "wait-for-airflow-migrations", OFFICIAL.step.preamble, run
    )


def bitnami(title: str, line: Line, cache: Path, postgres: Postgres, database: str) -> ImageLine:
    def run(change: Callable[[dict[str, Any]], dict[str, Any]] | None, scratch: Path) -> PodRun:
        pod = make_pod(line, "scheduler", cache, postgres.port, database, scratch)
        if change:
            pod.spec = change(pod.spec)
        return pod.run()

    return ImageLine(title, "wait-for-db-migrations", BITNAMI.step.preamble, run)


def measure(line: ImageLine, runs: int, work: Path) -> dict[str, Timings]:
    first = line.run(None, work / "migrate")  # migrates the fresh database (and creates the admin user)
    if not first.succeeded:
        sys.exit(f"{line.title}: the first pod failed:\n" + "\n".join(r.output[-2000:] for r in first.runs))
    wait = f"the chart's wait container (`{line.wait_container}`), same pod"
    rows = {STEP: Timings(), wait: Timings(), **{name: Timings() for name in REFERENCES}, AFTER: Timings()}
    for index in range(runs):  # in turn, so that the machine's noise spreads over every row alike
        pod = line.run(None, work / f"{index}-step")
        if not pod.succeeded:
            sys.exit(f"{line.title}: a pod failed:\n" + "\n".join(r.output[-2000:] for r in pod.runs))
        step = pod.of(STEP_CONTAINER_NAME)
        if step.output.strip().splitlines() != ["airflow-db-migrate: no migrations pending"]:
            sys.exit(f"{line.title}: the step did more than check:\n{step.output}")
        rows[STEP].add(step)
        rows[wait].add(pod.of(line.wait_container))
        for number, (name, body) in enumerate(REFERENCES.items()):
            change = functools.partial(in_step_place, body=body, preamble=line.preamble)
            reference = line.run(change, work / f"{index}-reference-{number}")
            if not reference.succeeded:
                sys.exit(f"{line.title}: {name} failed:\n{reference.runs[-1].output[-2000:]}")
            rows[name].add(reference.of(STEP_CONTAINER_NAME))
        change = functools.partial(after_step, body=REFERENCES[CLI_START], preamble=line.preamble)
        following = line.run(change, work / f"{index}-after")
        if not following.succeeded:
            sys.exit(f"{line.title}: {AFTER} failed:\n{following.runs[-1].output[-2000:]}")
        rows[AFTER].add(following.of(AFTER_STEP))
    return rows


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    cache = Path(
        subprocess.run(["bash", "scripts/setup-airflow.sh"], capture_output=True, text=True, check=True)
        .stdout.strip()
        .splitlines()[-1]
    )
    postgres = Postgres()
    postgres.start()
    work = Path(tempfile.mkdtemp(prefix="amw-step-cost-"))
    before = load()
    tables = []
    try:
        for database in ("official", "bitnami3", "bitnami2"):
            postgres.create_database(database)
        lines = [
            official(cache, postgres, "official"),
            bitnami("Bitnami chart 24.1.0, Airflow 3 line (3.0.2)", AIRFLOW3, cache, postgres, "bitnami3"),
            bitnami("Bitnami chart 22.7.3, Airflow 2 line (2.10.5)", AIRFLOW2, cache, postgres, "bitnami2"),
        ]
        for index, line in enumerate(lines):
            rows = measure(line, args.runs, work / str(index))
            table = [
                f"{line.title}",
                "",
                f"| in the step's place, fresh pod | wall (median of {args.runs}) | CPU (median) |",
                "|---|---|---|",
            ]
            table += [
                f"| {name} | {statistics.median(t.wall):.1f} s | {statistics.median(t.cpu):.1f} s |"
                for name, t in rows.items()
            ]
            tables.append("\n".join(table))
            print(tables[-1] + "\n", flush=True)
    finally:
        postgres.stop()
    print(f"load average (1, 5, 15 min) before: {before}; after: {load()}; {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
