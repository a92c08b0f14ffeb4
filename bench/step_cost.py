"""What the migrate step adds to every pod start when nothing is pending, per flavour.

    .venv/bin/python -m bench.step_cost [--runs 3]

Needs the Airflow tier's installs (scripts/setup-airflow.sh) and root (the Bitnami pods run in a private
mount namespace). For each flavour it migrates a fresh database once, then runs the pod's init containers
again on the up-to-date database and reports the step's median wall time beside one bare Airflow CLI start
(`airflow version`) of the same install.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from tests.postgres import Postgres
from tests.test_airflow import run_official
from tests.test_bitnami import AIRFLOW2, AIRFLOW3, make_pod


def cli_start(venv: Path) -> float:
    started = time.perf_counter()
    subprocess.run([str(venv / "bin" / "airflow"), "version"], capture_output=True, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    cache = Path(
        subprocess.run(["bash", "scripts/setup-airflow.sh"], capture_output=True, text=True, check=True)
        .stdout.strip()
        .splitlines()[-1]
    )
    postgres = Postgres()
    postgres.start()
    work = Path(tempfile.mkdtemp(prefix="amw-step-cost-"))
    rows = []
    try:
        flavours = {
            "official chart (Airflow 3.0.2)": ("af-3.0.2", None),
            "Bitnami, Airflow 3 line (24.1.0)": ("af-3.0.2", AIRFLOW3),
            "Bitnami, Airflow 2 line (22.7.3)": ("af-2.10.5", AIRFLOW2),
        }
        for index, (name, (venv, line)) in enumerate(flavours.items()):
            database = f"cost{index}"
            postgres.create_database(database)
            timings = []
            for run in range(args.runs + 1):  # the first run migrates the fresh database
                scratch = work / f"{index}-{run}"
                if line is None:
                    pod = run_official(cache, postgres, database, "3.0.2", scratch)
                else:
                    pod = make_pod(line, "scheduler", cache, postgres.port, database, scratch).run()
                assert pod.succeeded, [r.output[-500:] for r in pod.runs]
                if run:
                    step = pod.of("airflow-db-migrate")
                    assert "no migrations pending" in step.output
                    timings.append(step.seconds)
            rows.append((name, statistics.median(timings), cli_start(cache / venv)))
    finally:
        postgres.stop()
    print("| flavour | step on an up-to-date DB (median) | one bare Airflow CLI start |")
    print("|---|---|---|")
    for name, step, bare in rows:
        print(f"| {name} | {step:.1f} s | {bare:.1f} s |")


if __name__ == "__main__":
    main()
