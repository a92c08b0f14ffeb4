"""A private PostgreSQL server (Debian's package) on a free loopback port, started and stopped by tests."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.servers import free_port


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: run scripts/setup-airflow.sh")
    return found[-1]


class Postgres:
    """`host`/`port`: where it listens; `enter`: a command prefix that starts it elsewhere (the node tier
    starts it inside the cluster's network namespace with nsenter: pods reach it as an external database)."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, enter: tuple[str, ...] = ()) -> None:
        # pytest's tmp folders are private to root; the server runs as `postgres` and must reach its files
        root = Path(tempfile.mkdtemp(prefix="amw-postgres-"))
        self.root = root
        self.data = root / "pgdata"
        self.sockets = root / "pgsock"
        self.host = host
        self.port = port or free_port()
        self.enter = enter
        self.sockets.mkdir(parents=True)
        self._as_postgres = os.geteuid() == 0  # the server refuses to run as root
        if self._as_postgres:
            shutil.chown(root, "postgres")
            shutil.chown(self.sockets, "postgres")
        self._run(_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def _run(self, *argv: str, enter: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        return subprocess.run(
            [*enter, *prefix, *argv], capture_output=True, text=True, check=True, timeout=120
        )

    def start(self) -> None:
        if self.host != "127.0.0.1":
            with (self.data / "pg_hba.conf").open("a") as hba:
                hba.write("host all all 0.0.0.0/0 trust\n")
        self._run(
            _bin("pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.data / "server.log"),
            "-w",
            "start",
            "-o",
            f"-p {self.port} -k {self.sockets} -c listen_addresses={self.host} -c fsync=off",
            enter=self.enter,
        )

    def stop(self) -> None:
        subprocess.run(
            (["runuser", "-u", "postgres", "--"] if self._as_postgres else [])
            + [_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"],
            capture_output=True,
            text=True,
            timeout=120,
        )

    def psql(self, database: str, sql: str) -> str:
        return self._run(
            "psql",
            "-h",
            str(self.sockets),
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            database,
            "-tAc",
            sql,
        ).stdout.strip()

    def create_database(self, name: str) -> str:
        self.psql("postgres", f'CREATE DATABASE "{name}"')
        return self.url(name)

    def url(self, name: str) -> str:
        return f"postgresql+psycopg2://postgres@{self.host}:{self.port}/{name}"

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.psql("postgres", "select 1")
                return
            except subprocess.CalledProcessError:
                time.sleep(0.2)
        raise RuntimeError("PostgreSQL did not come up")
