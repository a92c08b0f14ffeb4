"""Where the webhook's p99 at concurrency 8 comes from: the webhook with one suspect taken out at a time,
beside the bare stack, in the same run, and what each review's time is made of inside the process.

    .venv/bin/python -m bench.tail [--duration 8] [--rounds 3]

Every variant is `serve` with its defaults but for one thing, pinned to core 0 with wrk on core 1 (as in
`bench.run`), driven with the mutated review (the scheduler CREATE a kube-apiserver sent) at concurrency 8:

- `webhook`: as `bench.run` measures it, after the same 2 s warm-up;
- `cold`: no warm-up: the level starts on a fresh process (its first requests);
- `no review log`: `--log-level warning`, so the per-review JSON line is neither built nor written;
- `log to /dev/null`: the line is built and written, to /dev/null instead of a file;
- `log to a pipe`: written to a pipe that `cat` copies to a file, as a container runtime reads a container's
  stdout (`bench.run` gives the server a file);
- `no metrics`: the review counter and latency histogram are not touched;
- `no GC`: the cyclic garbage collector disabled after start-up;
- `engine in the pool`: `server.inline_engine_max_bytes: 0`, the engine in the thread pool as before it ran
  inline.

Inside each webhook process, from its first review on, the harness times every review's handling (wall and
thread CPU time: preemption by other processes shows in the first only), its log line, its metrics and every
garbage collection (`gc.callbacks`). Rounds interleave the variants so that the
machine's noise spreads over them alike; the first table shows each variant's median over the rounds and its
p99's ratio to the bare stack's, the second the spans of the last round. The load average is printed with
each round: on a busy machine the absolute numbers move with it, the ratios less.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

VARIANTS: dict[str, list[str]] = {
    "webhook": [],
    "cold": [],
    "no review log": ["--log-level", "warning"],
    "log to /dev/null": [],
    "log to a pipe": [],
    "no metrics": [],
    "no GC": [],
    "engine in the pool": [],
}
SPANS = ("review", "review CPU", "log line", "metrics", "gen0", "gen1", "gen2")


def serve_variant(variant: str, report: Path, serve_args: list[str]) -> int:
    """The server side: `serve` with `variant` applied; the spans it times are written to `report` at exit."""
    import logging

    from app import cli
    from app.admission.handler import ReviewHandler

    spans: dict[str, list[float]] = {name: [] for name in SPANS}
    recording = [False]  # from the first review on: start-up's own collection is not a review's
    collecting: list[float] = []

    def collection(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collecting.append(time.perf_counter())
        elif collecting:
            elapsed = (time.perf_counter() - collecting.pop()) * 1000
            if recording[0]:
                spans[f"gen{info['generation']}"].append(elapsed)

    def timed(name: str, function: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            begin = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                if recording[0]:
                    spans[name].append((time.perf_counter() - begin) * 1000)

        return wrapper

    handle = ReviewHandler.handle

    async def timed_handle(self: ReviewHandler, body: bytes, timeout: str | None) -> Any:
        recording[0] = True
        begin, cpu = time.perf_counter(), time.thread_time()
        answer = await handle(self, body, timeout)  # inline: no await inside gives the loop away
        spans["review CPU"].append((time.thread_time() - cpu) * 1000)
        spans["review"].append((time.perf_counter() - begin) * 1000)
        return answer

    gc.callbacks.append(collection)
    ReviewHandler.handle = timed_handle  # type: ignore[method-assign]
    count = (lambda *args: None) if variant == "no metrics" else ReviewHandler._count
    ReviewHandler._count = timed("metrics", count)  # type: ignore[method-assign]
    logging.StreamHandler.emit = timed("log line", logging.StreamHandler.emit)  # type: ignore[method-assign]
    if variant == "no GC":
        gc.disable()
    if variant == "engine in the pool":
        config = report.with_suffix(".yaml")
        config.write_text("server:\n  inline_engine_max_bytes: 0\n")
        os.environ["AMW_CONFIG"] = str(config)
    try:
        return cli.main(["serve", *serve_args])
    finally:
        report.write_text(json.dumps(spans))


def breakdown(path: Path) -> dict[str, str]:
    """Per span: how many, then median / p99 / largest in ms."""
    if not path.exists():
        return {}
    found = {}
    for name, values in json.loads(path.read_text()).items():
        if values:
            values.sort()
            p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
            found[name] = f"{len(values)}x {statistics.median(values):.2f} / {p99:.2f} / {values[-1]:.1f}"
    return found


def measure(variant: str | None, certs: Path, work: Path, duration: int, tag: str) -> dict[str, Any]:
    from bench.run import Server, cpu_seconds, listing, wrk

    report = work / f"spans-{tag}.json"
    wrapper = None
    if variant is not None:
        wrapper = ["-m", "bench.tail", "--serve", variant, "--report", str(report), "--"]
    log = Path(os.devnull) if variant == "log to /dev/null" else work / f"{tag}.log"
    reader = None
    if variant == "log to a pipe":
        fifo, log = log, work / f"{tag}.fifo"
        os.mkfifo(log)
        reader = subprocess.Popen(["sh", "-c", 'exec cat "$0" > "$1"', str(log), str(fifo)])
    kind = "bare" if variant is None else "webhook"
    server = Server(kind, certs, log, wrapper, VARIANTS.get(variant or "", []))
    try:
        bodies = listing(work, "mutated")
        if variant != "cold":
            wrk(server.url, bodies, 8, 2)  # the warm-up of bench.run
        before = cpu_seconds(server.process.pid)
        row = wrk(server.url, bodies, 8, duration)
        row["cpu_ms_per_1000"] = (cpu_seconds(server.process.pid) - before) / row["requests"] * 1e6
    finally:
        server.stop()
        if reader is not None:
            reader.wait(30)
    row["spans"] = breakdown(report)
    return row


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--duration", type=int, default=8, help="seconds per level")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="*", help="these variants only (besides the bare stack)")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--report", type=Path, help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.serve:
        return serve_variant(args.serve, args.report, [a for a in rest if a != "--"])

    from app.tls.issue import write_certificates

    work = Path(tempfile.mkdtemp(prefix="amw-tail-"))
    certs = work / "certs"
    write_certificates(certs, ["localhost"], ["127.0.0.1"])
    names = [name for name in VARIANTS if not args.only or name in args.only]
    rows: dict[str, list[dict[str, Any]]] = {"bare stack": [], **{name: [] for name in names}}
    for round_ in range(args.rounds):
        print(f"round {round_ + 1}/{args.rounds}, load average {load()}", file=sys.stderr, flush=True)
        for name, runs in rows.items():
            variant = None if name == "bare stack" else name
            runs.append(measure(variant, certs, work, args.duration, f"{round_}-{name.replace(' ', '-')}"))
    bare_p99 = statistics.median(r["p99_ms"] for r in rows["bare stack"])
    print(f"mutated review, concurrency 8, {args.duration} s per level, median of {args.rounds} rounds\n")
    print("| server | reviews/s | p50 ms | p99 ms | p99 / bare | max ms | CPU ms/1000 |")
    print("|---|---|---|---|---|---|---|")
    for name, runs in rows.items():
        p99 = statistics.median(r["p99_ms"] for r in runs)
        print(
            f"| {name} | {statistics.median(r['throughput'] for r in runs):.0f} "
            f"| {statistics.median(r['p50_ms'] for r in runs):.2f} | {p99:.2f} | {p99 / bare_p99:.2f}x "
            f"| {statistics.median(r['max_ms'] for r in runs):.1f} "
            f"| {statistics.median(r['cpu_ms_per_1000'] for r in runs):.0f} |"
        )
    print("\ninside the process, last round: count, then median / p99 / max in ms\n")
    print("| server | " + " | ".join(SPANS) + " |")
    print("|---|" + "---|" * len(SPANS))
    for name, runs in rows.items():
        if runs[-1]["spans"]:
            print(f"| {name} | " + " | ".join(runs[-1]["spans"].get(span, "-") for span in SPANS) + " |")
    print(f"\nload average after: {load()}; {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
