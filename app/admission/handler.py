"""One AdmissionReview, end to end: decode, run the engine, diff, answer; log and count.

Every failure of the engine is answered `allowed` with a warning: the webhook never blocks a user's
deployment because of its own bug or slowness.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from app.admission.review import BadReview, ReviewRequest, build_response, parse_review
from app.engine import Decision, EngineConfig, MutationResult, Outcome, Reason, mutate
from app.metrics import Metrics
from app.patch import make_patch

log = logging.getLogger("airflow_migration_webhook.review")
WARNING_PREFIX = "airflow-migration-webhook"


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


def parse_timeout(value: str | None) -> float | None:
    """The API server's `timeout` query parameter (`5s`, `10s`, `1m`) in seconds."""
    if not value:
        return None
    units = {"ms": 0.001, "s": 1.0, "m": 60.0}
    for suffix in ("ms", "s", "m"):
        if value.endswith(suffix):
            try:
                return float(value[: -len(suffix)]) * units[suffix]
            except ValueError:
                return None
    return None


def warnings_for(decision: Decision) -> list[str]:
    """What `kubectl` prints: the decision when the object was mutated or the webhook failed, plus the
    engine's warnings; a skip adds nothing (every non-Airflow object would print one)."""
    lines = [f"{WARNING_PREFIX}: {decision.reason.value}: {warning}" for warning in decision.warnings]
    if decision.outcome in (Outcome.MUTATED, Outcome.ERROR):
        lines.insert(0, f"{WARNING_PREFIX}: {decision.reason.value}: {decision.message}")
    return lines


@dataclass(frozen=True)
class Reviewed:
    """One review's result: the engine's decision and the patch that applies it (None: no change)."""

    decision: Decision
    patch: list[dict[str, Any]] | None
    error_cause: str | None = None  # deadline | exception: the engine failed, the object passes unchanged


Engine = Callable[[Any, str, EngineConfig], MutationResult]


class ReviewHandler:
    def __init__(
        self,
        engine: EngineConfig,
        metrics: Metrics,
        deadline_seconds: float,
        executor: Executor,
        run_engine: Engine = mutate,
        inline_max_bytes: int = 0,
    ) -> None:
        self._mutate = run_engine
        self._engine = engine
        self._metrics = metrics
        self._deadline = deadline_seconds
        self._executor = executor
        # The engine is linear in the object's size: a review this small is answered in well under a
        # millisecond, so it runs on the event loop; a bigger one goes to the executor under the deadline.
        self._inline_max_bytes = inline_max_bytes
        self._review_counters: dict[tuple[str, str, str, str], Any] = {}
        self._latency_children: dict[str, Any] = {}

    def _count(self, kind: str, operation: str, outcome: str, reason: str, elapsed: float) -> None:
        """Metric children looked up once per label set, not on every review."""
        key = (kind, operation, outcome, reason)
        counter = self._review_counters.get(key)
        if counter is None:
            counter = self._review_counters[key] = self._metrics.reviews.labels(
                kind=kind, operation=operation, outcome=outcome, reason=reason
            )
        counter.inc()
        latency = self._latency_children.get(outcome)
        if latency is None:
            latency = self._latency_children[outcome] = self._metrics.latency.labels(outcome=outcome)
        latency.observe(elapsed)

    def _budget(self, timeout_param: str | None) -> float:
        """Answer well inside the API server's timeout: at most 80% of it, and never above our own cap."""
        api_timeout = parse_timeout(timeout_param)
        return self._deadline if api_timeout is None else max(0.05, min(self._deadline, api_timeout * 0.8))

    def _run_engine(self, request: ReviewRequest) -> Reviewed:
        result = self._mutate(request.object, request.operation, self._engine)
        if result.decision.reason is Reason.ENGINE_ERROR:  # the engine caught its own bug: still say so
            log.error(
                "engine failed", extra={"fields": {"uid": request.uid, "error": result.decision.detail}}
            )
            return Reviewed(result.decision, None, "exception")
        patch = make_patch(request.object, result.object) if result.changed else None
        return Reviewed(result.decision, patch)

    async def _review(self, request: ReviewRequest, size: int, timeout_param: str | None) -> Reviewed:
        """The engine's answer, inline or in the pool under the deadline; a failure is an `error` outcome."""
        try:
            if size <= self._inline_max_bytes:
                return self._run_engine(request)
            loop = asyncio.get_running_loop()
            job = loop.run_in_executor(self._executor, self._run_engine, request)
            return await asyncio.wait_for(job, timeout=self._budget(timeout_param))
        except TimeoutError:
            log.error("engine deadline exceeded", extra={"fields": {"uid": request.uid}})
            return Reviewed(Decision(Reason.ENGINE_ERROR, detail="deadline exceeded"), None, "deadline")
        except Exception as error:  # the webhook must answer whatever its engine (or the diff) does
            log.exception("engine failed", extra={"fields": {"uid": request.uid, "error": repr(error)}})
            return Reviewed(Decision(Reason.ENGINE_ERROR, detail=repr(error)), None, "exception")

    async def handle(self, body: bytes, timeout_param: str | None) -> Answer:
        started = time.perf_counter()
        try:
            request = parse_review(body)
        except BadReview as error:
            self._metrics.bad_requests.labels(status="400").inc()
            log.warning("bad request", extra={"fields": {"status": 400, "error": str(error)}})
            return Answer(400, {"error": str(error)})

        reviewed = await self._review(request, len(body), timeout_param)
        decision = reviewed.decision
        if reviewed.error_cause is not None:
            self._metrics.engine_errors.labels(cause=reviewed.error_cause).inc()
        warnings = warnings_for(decision)
        elapsed = time.perf_counter() - started
        outcome = decision.outcome.value
        self._count(
            request.kind or "unknown", request.operation or "unknown", outcome, decision.reason.value, elapsed
        )
        log.info(
            "review",
            extra={
                "fields": {
                    "uid": request.uid,
                    "kind": request.kind,
                    "namespace": request.namespace,
                    "name": request.name,
                    "operation": request.operation,
                    "dry_run": request.dry_run,
                    "outcome": outcome,
                    "reason": decision.reason.value,
                    "patch_ops": len(reviewed.patch or []),
                    "warnings": len(warnings),
                    "duration_ms": round(elapsed * 1000, 3),
                }
            },
        )
        return Answer(200, build_response(request.api_version, request.uid, reviewed.patch, warnings))
