"""Prometheus metrics, one registry per server instance (no process globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PREFIX = "airflow_migration_webhook"
# millisecond resolution where admission latency lives, up to the API server's 30 s ceiling
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.reviews = Counter(
            f"{PREFIX}_reviews_total",
            "AdmissionReviews by kind, operation, outcome (mutated|unchanged|skipped|error), reason",
            ["kind", "operation", "outcome", "reason"],
            registry=self.registry,
        )
        self.latency = Histogram(
            f"{PREFIX}_review_duration_seconds",
            "Time from request body received to response built",
            ["outcome"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.bad_requests = Counter(
            f"{PREFIX}_bad_requests_total",
            "Requests refused before review, by HTTP status",
            ["status"],
            registry=self.registry,
        )
        self.engine_errors = Counter(
            f"{PREFIX}_engine_errors_total",
            "Objects admitted unchanged because the engine failed or timed out",
            ["cause"],
            registry=self.registry,
        )
        self.cert_not_after = Gauge(
            f"{PREFIX}_certificate_not_after_timestamp_seconds",
            "notAfter of the serving certificate (Unix time)",
            registry=self.registry,
        )
        self.reconciled = Counter(
            f"{PREFIX}_reconcile_objects_total",
            "Workloads checked by the reconcile loop, by result and reason",
            ["result", "reason"],
            registry=self.registry,
        )
        self.cert_reloads = Counter(
            f"{PREFIX}_certificate_reloads_total",
            "Serving certificate reloads by result",
            ["result"],
            registry=self.registry,
        )
