"""The one composition root of `serve`: from the settings it picks the TLS mode, builds the metrics, the
engine's thread pool, the handler, the listeners and the background work, and owns the process lifecycle
(SIGTERM: not ready -> drain -> finish in-flight -> exit 0).

Nothing else builds these objects; every dependency is passed down from here.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from app.admission.handler import Engine, ReviewHandler
from app.admission.server import Listeners, State
from app.config import Settings
from app.engine import mutate
from app.metrics import Metrics
from app.tls.source import CertificateError, CertificateSource, ReloadingCertificate

log = logging.getLogger("airflow_migration_webhook.serve")
ENGINE_THREADS = 4


@dataclass(frozen=True)
class Periodic:
    """Blocking work (self-managed TLS sync, reconcile) run off the event loop, now and every interval."""

    name: str
    work: Callable[[], object]
    interval_seconds: float


def reconcile_loop(settings: Settings, metrics: Metrics) -> Periodic:
    """One replica at a time (a Lease) reconciles every opted-in namespace, at start-up and on a period."""
    from app.kube import Lease, api_client, default_identity, own_namespace
    from app.reconcile import Reconciler

    config = settings.reconcile
    api = api_client(settings.kubeconfig)
    lease = Lease(
        api,
        config.lease_namespace or own_namespace(),
        config.lease_name,
        default_identity(),
        config.lease_duration_seconds,
    )
    reconciler = Reconciler(api, settings.engine, settings.namespace_label)

    def once() -> None:
        if not lease.hold():
            return
        for outcome in reconciler.run(reconciler.opted_in_namespaces(), dry_run=False):
            metrics.reconciled.labels(result=outcome.result.value, reason=outcome.reason).inc()

    return Periodic("reconcile", once, config.interval_seconds)


def self_managed_certificate(settings: Settings) -> Periodic | None:
    """Wait until the serving pair is in cert_dir (written by us or by another replica); then keep it synced.
    None: no pair within the start-up timeout."""
    from app.kube import api_client, default_identity
    from app.tls.selfmanaged import CertificateManager

    tls = settings.self_managed_tls
    assert tls is not None
    manager = CertificateManager(tls, api_client(settings.kubeconfig), default_identity())
    deadline = time.monotonic() + tls.startup_timeout_seconds
    while not manager.sync():
        if time.monotonic() > deadline:
            log.error(
                "no serving certificate after startup timeout", extra={"fields": {"secret": tls.secret_name}}
            )
            return None
        time.sleep(2)
    return Periodic("self-managed TLS", manager.sync, tls.sync_interval_seconds)


async def _watch_certificate(source: CertificateSource, metrics: Metrics, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        outcome = source.reload_if_changed()
        if outcome is True:
            metrics.cert_reloads.labels(result="reloaded").inc()
            metrics.cert_not_after.set(source.current.not_after.timestamp())
        elif outcome is None:
            metrics.cert_reloads.labels(result="failed").inc()


async def _periodically(periodic: Periodic) -> None:
    loop = asyncio.get_running_loop()
    while True:
        try:
            await loop.run_in_executor(None, periodic.work)
        except Exception:  # background work must never take the webhook down
            log.exception("background work failed", extra={"fields": {"work": periodic.name}})
        await asyncio.sleep(periodic.interval_seconds)


async def serve(
    settings: Settings,
    background: list[Periodic] | None = None,
    run_engine: Engine = mutate,
    metrics: Metrics | None = None,
) -> int:
    """Serve until SIGTERM or SIGINT; 0 after a clean stop, 1 when a listener or the certificate failed."""
    config = settings.server
    assert settings.serving_pair is not None  # the CLI refused to start without one
    cert_file, key_file = settings.serving_pair
    metrics = metrics or Metrics()
    state = State()
    try:
        source: CertificateSource = ReloadingCertificate(cert_file, key_file, config.client_ca_file)
    except CertificateError as error:
        log.error("cannot start", extra={"fields": {"error": str(error)}})
        return 1
    state.certificate_loaded = True
    metrics.cert_not_after.set(source.current.not_after.timestamp())

    executor = ThreadPoolExecutor(max_workers=ENGINE_THREADS, thread_name_prefix="engine")
    handler = ReviewHandler(
        settings.engine,
        metrics,
        config.deadline_seconds,
        executor,
        run_engine,
        config.inline_engine_max_bytes,
    )
    listeners = Listeners(config, handler, state, metrics, source.server_context)

    async def drain_then_stop(signum: int) -> None:
        if state.draining:
            return
        state.draining = True
        log.info(
            "signal received: not ready, draining",
            extra={
                "fields": {"signal": signal.Signals(signum).name, "drain_delay_s": config.drain_delay_seconds}
            },
        )
        await asyncio.sleep(config.drain_delay_seconds)
        await listeners.stop()

    pending: set[asyncio.Task[None]] = set()

    def on_signal(signum: int) -> None:
        task = asyncio.ensure_future(drain_then_stop(signum))
        pending.add(task)
        task.add_done_callback(pending.discard)

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    tasks = [asyncio.ensure_future(_watch_certificate(source, metrics, config.cert_reload_interval_seconds))]
    tasks += [asyncio.ensure_future(_periodically(periodic)) for periodic in background or []]
    # Everything loaded at start-up lives as long as the process: take it out of the collector's sight, so
    # that collections in the request path walk only what requests allocate (the long tail at c8).
    gc.collect()
    gc.freeze()
    log.info(
        "serving",
        extra={
            "fields": {
                "port": config.port,
                "health_port": config.health_port,
                "mtls": config.client_ca_file is not None,
            }
        },
    )
    try:
        started = await listeners.serve()
    finally:
        for task in tasks:
            task.cancel()
        executor.shutdown(wait=False, cancel_futures=True)
    log.info("stopped", extra={"fields": {"clean": started}})
    return 0 if started else 1


def run_async(main: Coroutine[Any, Any, int]) -> int:
    """On uvloop when installed (it is a dependency; plain asyncio is the fallback)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(main)
    return int(uvloop.run(main))


def run(settings: Settings) -> int:
    """`serve`: the TLS mode's certificate first, then background work, then the listeners until SIGTERM."""
    metrics = Metrics()
    background: list[Periodic] = []
    if settings.self_managed_tls is not None:
        certificate_sync = self_managed_certificate(settings)
        if certificate_sync is None:
            return 1
        background.append(certificate_sync)
    if settings.reconcile.enabled:
        background.append(reconcile_loop(settings, metrics))
    return run_async(serve(settings, background, metrics=metrics))
