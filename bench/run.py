"""Benchmark: the real webhook server against its own baseline, driven by wrk over keep-alive HTTPS.

    .venv/bin/python bench/run.py [--duration 10] [--soak 100000]

Server pinned to core 0, wrk to core 1. Writes bench/results/<UTC time>.json and .md and exits 1 when a
target (ratios to the baseline measured in the same run) is missed.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from app.certs import write_certificates  # noqa: E402
from app.engine import EngineConfig, mutate  # noqa: E402
from tests.servers import free_port  # noqa: E402
from tests.support import ADMISSION_FIXTURES, CHART_RENDERS  # noqa: E402

CONCURRENCY = (1, 8, 32)
TARGETS = {
    "throughput_c32_ratio_min": 0.75,
    "p99_c8_ratio_max": 1.5,
    "cpu_per_review_ratio_max": 1.3,
    "rss_mib_max": 100.0,
    "big_object_ms_max": 100.0,
}


def review(obj: dict[str, Any], operation: str = "CREATE") -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "operation": operation,
            "kind": {"group": "", "version": "v1", "kind": obj["kind"]},
            "namespace": "airflow",
            "name": obj["metadata"]["name"],
            "object": obj,
            "oldObject": obj if operation == "UPDATE" else None,
        },
    }


def bodies(folder: Path) -> tuple[Path, dict[str, int]]:
    """Real API-server bodies plus a mix from the chart renders; returns the list file and the mix."""
    files: list[Path] = []
    mix = {"real": 0, "airflow_to_mutate": 0, "already_mutated": 0, "not_airflow": 0, "jobs": 0}
    for path in sorted(ADMISSION_FIXTURES.glob("*.json")):
        files.append(path)
        mix["real"] += 1
    config = EngineConfig()
    for render in sorted(CHART_RENDERS.glob("*.yaml")):
        for doc in (d for d in yaml.safe_load_all(render.read_text()) if d):
            result = mutate(doc, "CREATE", config)
            cases = [("airflow_to_mutate" if result.changed else "not_airflow", review(doc))]
            if doc["kind"] == "Job":
                cases = [("jobs", review(doc))]
            elif result.changed:
                cases.append(("already_mutated", review(result.object, "UPDATE")))
            for name, body in cases:
                path = folder / f"{len(files):04d}.json"
                path.write_text(json.dumps(body))
                files.append(path)
                mix[name] += 1
    listing = folder / "bodies.txt"
    listing.write_text("\n".join(str(p) for p in files) + "\n")
    return listing, mix


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kib(pid: int, key: str) -> int:
    found = re.search(rf"^{key}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.MULTILINE)
    return int(found.group(1)) if found else 0


def wrk(url: str, listing: Path, connections: int, duration: int) -> dict[str, float]:
    out = subprocess.run(
        [
            "taskset",
            "-c",
            "1",
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "-s",
            str(REPO / "bench" / "reviews.lua"),
            url,
            "--",
            str(listing),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def millis(text: str) -> float:
        value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    percentiles = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)", out, re.MULTILINE))
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests": requests,
        "throughput": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": millis(percentiles["50"]),
        "p90_ms": millis(percentiles["90"]),
        "p99_ms": millis(percentiles["99"]),
        "max_ms": millis(re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", out).group(1)),  # type: ignore[union-attr]
        "errors": errors + (int(non_2xx.group(1)) if non_2xx else 0),
    }


class Server:
    def __init__(self, mode: str, certs: Path, log: Path) -> None:
        self.port, self.health = free_port(), free_port()
        self.process = subprocess.Popen(
            [
                "taskset",
                "-c",
                "0",
                sys.executable,
                str(REPO / "bench" / "server.py"),
                "--mode",
                mode,
                "--cert-dir",
                str(certs),
                "--port",
                str(self.port),
                "--health-port",
                str(self.health),
            ],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.health}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(log.read_text())

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/mutate"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def measure(mode: str, certs: Path, listing: Path, duration: int, work: Path) -> dict[str, Any]:
    server = Server(mode, certs, work / f"{mode}.log")
    try:
        wrk(server.url, listing, 8, 2)  # warm-up
        rows = {}
        for connections in CONCURRENCY:
            before = cpu_seconds(server.process.pid)
            row = wrk(server.url, listing, connections, duration)
            row["cpu_ms_per_1000"] = (cpu_seconds(server.process.pid) - before) / row["requests"] * 1e6
            rows[str(connections)] = row
        return {"rows": rows, "peak_rss_mib": memory_kib(server.process.pid, "VmHWM") / 1024}
    finally:
        server.stop()


def soak(certs: Path, listing: Path, total: int, work: Path) -> dict[str, float]:
    """RSS after the first 10% of `total` reviews and after all of them: it must not keep growing."""
    server = Server("webhook", certs, work / "soak.log")
    try:
        rate = wrk(server.url, listing, 8, 3)["throughput"]
        warm = memory_kib(server.process.pid, "VmRSS") / 1024
        done = 0
        while done < total:
            done += int(wrk(server.url, listing, 8, max(1, int((total - done) / rate)))["requests"])
        return {
            "reviews": done,
            "rss_after_warmup_mib": warm,
            "rss_after_all_mib": memory_kib(server.process.pid, "VmRSS") / 1024,
        }
    finally:
        server.stop()


def big_object(certs: Path, work: Path) -> dict[str, float]:
    """A ~1 MiB Airflow Deployment (thousands of env entries), answered one at a time."""
    doc = next(
        d
        for d in yaml.safe_load_all((CHART_RENDERS / "bitnami-airflow-24.1.0-defaults.yaml").read_text())
        if d and d["kind"] == "Deployment" and d["metadata"]["name"] == "airflow-scheduler"
    )
    doc = copy.deepcopy(doc)
    env = doc["spec"]["template"]["spec"]["containers"][0]["env"]
    env += [{"name": f"EXTRA_SETTING_{i}", "value": "x" * 200} for i in range(4500)]
    body = json.dumps(review(doc)).encode()
    server = Server("webhook", certs, work / "big.log")
    try:
        with httpx.Client(verify=str(certs / "ca.crt")) as client:
            timings = []
            for _ in range(20):
                started = time.perf_counter()
                response = client.post(server.url, content=body, headers={"Content-Type": "application/json"})
                timings.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200 and response.json()["response"]["patchType"] == "JSONPatch"
        return {
            "body_mib": len(body) / 2**20,
            "median_ms": statistics.median(timings),
            "max_ms": max(timings),
        }
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10, help="seconds per concurrency level")
    parser.add_argument("--soak", type=int, default=100_000, help="reviews for the memory soak")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    work = Path(tempfile.mkdtemp(prefix="amw-bench-"))
    certs = work / "certs"
    write_certificates(certs, ["localhost"], ["127.0.0.1"])
    listing, mix = bodies(work)
    results: dict[str, Any] = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "mix": mix,
        "cores": os.cpu_count(),
        "duration_s": args.duration,
    }
    for mode in ("baseline", "webhook"):
        results[mode] = measure(mode, certs, listing, args.duration, work)
    results["soak"] = soak(certs, listing, args.soak, work)
    results["big_object"] = big_object(certs, work)
    base, hook = results["baseline"]["rows"], results["webhook"]["rows"]
    checks = {
        "throughput_c32_ratio_min": hook["32"]["throughput"] / base["32"]["throughput"],
        "p99_c8_ratio_max": hook["8"]["p99_ms"] / base["8"]["p99_ms"],
        "cpu_per_review_ratio_max": statistics.mean(
            hook[c]["cpu_ms_per_1000"] / base[c]["cpu_ms_per_1000"] for c in base
        ),
        "rss_mib_max": max(results["webhook"]["peak_rss_mib"], results["soak"]["rss_after_all_mib"]),
        "big_object_ms_max": results["big_object"]["median_ms"],
    }
    verdicts = {
        name: (value >= TARGETS[name] if name.endswith("_min") else value <= TARGETS[name])
        for name, value in checks.items()
    }
    results["checks"] = {
        name: {"value": round(value, 3), "target": TARGETS[name], "ok": verdicts[name]}
        for name, value in checks.items()
    }
    results["errors"] = sum(
        row["errors"] for mode in ("baseline", "webhook") for row in results[mode]["rows"].values()
    )
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = results["when"].replace(":", "").replace("+0000", "Z")
    (out / f"{stamp}.json").write_text(json.dumps(results, indent=2))
    lines = [
        f"# Benchmark {results['when']} ({results['cores']} cores, {args.duration} s per level)",
        "",
        f"mix: {mix}",
        "",
        "| server | conc. | reviews/s | p50 ms | p90 ms | p99 ms | max ms | CPU ms/1000 | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for mode in ("baseline", "webhook"):
        for connections, row in results[mode]["rows"].items():
            lines.append(
                f"| {mode} | {connections} | {row['throughput']:.0f} | {row['p50_ms']:.2f} | "
                f"{row['p90_ms']:.2f} | {row['p99_ms']:.2f} | {row['max_ms']:.1f} | "
                f"{row['cpu_ms_per_1000']:.0f} | {row['errors']:.0f} |"
            )
    lines += [
        "",
        f"peak RSS: baseline {results['baseline']['peak_rss_mib']:.1f} MiB, "
        f"webhook {results['webhook']['peak_rss_mib']:.1f} MiB; soak {results['soak']}",
        f"1 MiB object: {results['big_object']}",
        "",
        "| check | value | target | ok |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {n} | {c['value']} | {c['target']} | {'yes' if c['ok'] else 'NO'} |"
        for n, c in results["checks"].items()
    ]
    (out / f"{stamp}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(verdicts.values()) and results["errors"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
