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

from app.admission.metrics import Metrics
from app.admission.patch import make_patch
from app.admission.review import BadReview, ReviewRequest, build_response, parse_review
from app.engine import Action, EngineConfig, MutationResult, Reason, mutate

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


def warnings_for(result: MutationResult) -> list[str]:
    decision = result.decision
    lines = [f"{WARNING_PREFIX}: {decision.reason.value}: {warning}" for warning in decision.warnings]
    if decision.action is Action.INJECT:
        lines.insert(0, f"{WARNING_PREFIX}: {decision.reason.value}: {decision.message}")
    return lines


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

    def _run_engine(self, request: ReviewRequest) -> tuple[MutationResult, list[dict[str, Any]] | None]:
        result = self._mutate(request.object, request.operation, self._engine)
        if not result.changed:
            return result, None
        return result, make_patch(request.object, result.object)

    async def handle(self, body: bytes, timeout_param: str | None) -> Answer:
        started = time.perf_counter()
        try:
            request = parse_review(body)
        except BadReview as error:
            self._metrics.bad_requests.labels(status="400").inc()
            log.warning("bad request", extra={"fields": {"status": 400, "error": str(error)}})
            return Answer(400, {"error": str(error)})

        outcome, reason, warnings, patch = "unchanged", Reason.ENGINE_ERROR.value, [], None
        decision = None
        try:
            if len(body) <= self._inline_max_bytes:
                result, patch = self._run_engine(request)
            else:
                loop = asyncio.get_running_loop()
                job = loop.run_in_executor(self._executor, self._run_engine, request)
                result, patch = await asyncio.wait_for(job, timeout=self._budget(timeout_param))
            decision = result.decision
            outcome = "mutated" if patch else "unchanged"
            reason = decision.reason.value
            warnings = warnings_for(result)
        except TimeoutError:
            outcome, patch = "error", None
            self._metrics.engine_errors.labels(cause="deadline").inc()
            warnings = [f"{WARNING_PREFIX}: {reason}: deadline exceeded; admitted unchanged"]
            log.error("engine deadline exceeded", extra={"fields": {"uid": request.uid}})
        except Exception as error:  # the webhook must answer whatever its engine does
            outcome, patch = "error", None
            self._metrics.engine_errors.labels(cause="exception").inc()
            warnings = [f"{WARNING_PREFIX}: {reason}: {Reason.ENGINE_ERROR.message}"]
            log.exception("engine failed", extra={"fields": {"uid": request.uid, "error": repr(error)}})

        elapsed = time.perf_counter() - started
        self._count(request.kind or "unknown", request.operation or "unknown", outcome, reason, elapsed)
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
                    "decision": decision.action.value if decision else "skip",
                    "reason": reason,
                    "outcome": outcome,
                    "patch_ops": len(patch or []),
                    "warnings": len(warnings),
                    "duration_ms": round(elapsed * 1000, 3),
                }
            },
        )
        return Answer(200, build_response(request.api_version, request.uid, patch, warnings))
