"""The webhook process: HTTPS `/mutate` on one port, plain-HTTP health and metrics on another.

Thin: reads the body within limits, hands it to ReviewHandler, returns its answer. Owns the lifecycle:
certificate reloads, readiness, and a graceful SIGTERM (not ready -> drain -> finish in-flight -> exit 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.admission.handler import Engine, ReviewHandler
from app.admission.metrics import Metrics
from app.config import ServerConfig, Settings
from app.engine import mutate
from app.tls import CertificateError, ReloadingCertificate

log = logging.getLogger("airflow_migration_webhook.server")
JSON_TYPES = ("application/json",)


class BodyTooLarge(Exception):
    pass


async def read_capped(request: Request, limit: int) -> bytes:
    """The body, refusing to hold more than `limit` bytes in memory."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


class State:
    """What readiness reports: certificate loaded, configuration valid, not draining."""

    def __init__(self) -> None:
        self.certificate_loaded = False
        self.draining = False

    @property
    def ready(self) -> bool:
        return self.certificate_loaded and not self.draining


def webhook_app(handler: ReviewHandler, config: ServerConfig, metrics: Metrics) -> FastAPI:
    app = FastAPI(
        title="airflow-migration-webhook", docs_url=None, redoc_url=None, openapi_url="/openapi.json"
    )

    def json_response(body: object, status: int) -> Response:
        return Response(orjson.dumps(body), status_code=status, media_type="application/json")

    def refuse(status: int, message: str) -> Response:
        """A request refused before the handler (415, 413): counted and logged like the handler's 400s."""
        metrics.bad_requests.labels(status=str(status)).inc()
        log.warning("bad request", extra={"fields": {"status": status, "error": message}})
        return json_response({"error": message}, status)

    async def mutate_endpoint(request: Request) -> Response:
        content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type not in JSON_TYPES:
            return refuse(415, f"Content-Type must be application/json, got {content_type or 'none'!r}")
        try:
            body = await read_capped(request, config.max_body_bytes)
        except BodyTooLarge:
            return refuse(413, f"request body exceeds {config.max_body_bytes} bytes")
        answer = await handler.handle(body, request.query_params.get("timeout"))
        return json_response(answer.body, answer.status)

    # A plain Starlette route: FastAPI's parameter and dependency resolution has nothing to do here and
    # cost a fifth of a skipped review's time.
    app.router.add_route("/mutate", mutate_endpoint, methods=["POST"], include_in_schema=False)

    def openapi() -> dict[str, Any]:
        """The published description keeps naming the route that the plain Starlette route serves."""
        schema = {
            "openapi": "3.1.0",
            "info": {"title": app.title, "version": app.version},
            "paths": {
                "/mutate": {
                    "post": {
                        "summary": "Mutating admission webhook (AdmissionReview v1 and v1beta1)",
                        "requestBody": {"required": True, "content": {"application/json": {}}},
                        "responses": {"200": {"description": "AdmissionReview with the response"}},
                    }
                }
            },
        }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def health_app(state: State, metrics: Metrics) -> FastAPI:
    app = FastAPI(title="airflow-migration-webhook health", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    async def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    @app.get("/readyz")
    async def readyz() -> PlainTextResponse:
        if state.ready:
            return PlainTextResponse("ok")
        why = "draining" if state.draining else "certificate not loaded"
        return PlainTextResponse(f"not ready: {why}", status_code=503)

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the process owns SIGTERM for both listeners."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def abort_idle_connections(self) -> None:
        """Close at once the connections with no request in flight and nothing left to send.

        uvicorn closes an idle connection gracefully, and over TLS that waits for the client's close_notify:
        a client that never reads keeps the process alive for the whole grace period. Nothing is lost by
        aborting such a connection; a connection in the middle of a request is left to finish.
        """
        for connection in list(self.server_state.connections):
            cycle = getattr(connection, "cycle", None)
            transport = getattr(connection, "transport", None)
            idle = cycle is None or getattr(cycle, "response_complete", False)
            if transport is not None and idle and transport.get_write_buffer_size() == 0:
                transport.abort()


async def _watch_certificate(certificate: ReloadingCertificate, metrics: Metrics, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        outcome = certificate.reload_if_changed()
        if outcome is True:
            metrics.cert_reloads.labels(result="reloaded").inc()
            metrics.cert_not_after.set(certificate.current.not_after.timestamp())
        elif outcome is None:
            metrics.cert_reloads.labels(result="failed").inc()


Background = tuple[Callable[[], object], float]


async def _periodically(work: Callable[[], object], interval: float) -> None:
    """Run blocking `work` (self-managed TLS sync, reconcile) off the event loop, now and every `interval`."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            await loop.run_in_executor(None, work)
        except Exception:  # background work must never take the webhook down
            log.exception("background work failed")
        await asyncio.sleep(interval)


async def serve(
    settings: Settings,
    background: list[Background] | None = None,
    run_engine: Engine = mutate,
    metrics: Metrics | None = None,
) -> int:
    config = settings.server
    assert config.cert_file is not None and config.key_file is not None
    metrics = metrics or Metrics()
    state = State()
    try:
        certificate = ReloadingCertificate(config.cert_file, config.key_file, config.client_ca_file)
    except CertificateError as error:
        log.error("cannot start", extra={"fields": {"error": str(error)}})
        return 1
    state.certificate_loaded = True
    metrics.cert_not_after.set(certificate.current.not_after.timestamp())

    executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="engine")
    handler = ReviewHandler(
        settings.engine,
        metrics,
        config.deadline_seconds,
        executor,
        run_engine,
        config.inline_engine_max_bytes,
    )

    def listener(app: FastAPI, host: str, port: int) -> uvicorn.Config:
        return uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=int(config.shutdown_grace_seconds),
            timeout_keep_alive=30,
        )

    webhook_config = listener(webhook_app(handler, config, metrics), config.host, config.port)
    webhook_config.load()
    webhook_config.ssl = certificate.server_context  # our reloading context instead of uvicorn's static one
    servers = [_Server(webhook_config)]
    if config.health_port:
        servers.append(_Server(listener(health_app(state, metrics), config.health_host, config.health_port)))

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
        for server in servers:
            server.should_exit = True
        # in-flight requests finish (up to shutdown_grace_seconds); idle connections go now, and each
        # connection as soon as its last response is sent
        while any(server.server_state.connections for server in servers):
            for server in servers:
                server.abort_idle_connections()
            await asyncio.sleep(0.05)

    pending: set[asyncio.Task[None]] = set()

    def on_signal(signum: int) -> None:
        task = asyncio.ensure_future(drain_then_stop(signum))
        pending.add(task)
        task.add_done_callback(pending.discard)

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    tasks = [
        asyncio.ensure_future(_watch_certificate(certificate, metrics, config.cert_reload_interval_seconds))
    ]
    tasks += [asyncio.ensure_future(_periodically(*work)) for work in background or []]
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
        await asyncio.gather(*(server.serve() for server in servers))
    finally:
        for task in tasks:
            task.cancel()
        executor.shutdown(wait=False, cancel_futures=True)
    started = all(server.started for server in servers)
    log.info("stopped", extra={"fields": {"clean": started}})
    return 0 if started else 1


def run_async(main: Coroutine[Any, Any, int]) -> int:
    """On uvloop when installed (it is a dependency; plain asyncio is the fallback)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(main)
    return int(uvloop.run(main))


def run_server(
    settings: Settings, background: list[Background] | None = None, metrics: Metrics | None = None
) -> int:
    """Serve until SIGTERM; `background` holds (blocking work, interval seconds) run beside the listeners."""
    return run_async(serve(settings, background, metrics=metrics))
