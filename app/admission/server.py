"""The HTTP surface: HTTPS `/mutate` on one port, plain-HTTP health and metrics on another.

Thin: reads the body within limits, hands it to ReviewHandler, returns its answer. The listeners can be
drained (not ready -> stop accepting -> finish in-flight); what starts and stops them is `app.serve`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Receive, Scope, Send

from app.admission.handler import ReviewHandler
from app.config import ServerConfig
from app.metrics import Metrics

log = logging.getLogger("airflow_migration_webhook.server")
JSON_TYPES = ("application/json",)


class State:
    """What readiness reports: a certificate is loaded and the process is not draining. (The configuration
    was validated before anything listened: an invalid one stops the process at start-up.)"""

    def __init__(self) -> None:
        self.certificate_loaded = False
        self.draining = False

    @property
    def ready(self) -> bool:
        return self.certificate_loaded and not self.draining


class MutateFastPath:
    """`POST /mutate` in plain ASGI, in front of the FastAPI app that serves everything else.

    Profiling the bare stack against the webhook showed a skipped review paying more for Starlette's
    request object, body streaming and middleware stack than for the engine; the review path needs none of
    them: read the body within the cap, hand it to the handler, send the answer.
    """

    def __init__(self, app: ASGIApp, handler: ReviewHandler, config: ServerConfig, metrics: Metrics) -> None:
        self.app = app
        self.handler = handler
        self.limit = config.max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/mutate" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        status, body = await self._answer(scope, receive)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _refuse(self, status: int, message: str) -> tuple[int, bytes]:
        """A request refused before the handler (415, 413): counted and logged like the handler's 400s."""
        self.metrics.bad_requests.labels(status=str(status)).inc()
        log.warning("bad request", extra={"fields": {"status": status, "error": message}})
        return status, orjson.dumps({"error": message})

    async def _answer(self, scope: Scope, receive: Receive) -> tuple[int, bytes]:
        headers = dict(scope["headers"])  # lower-case names (ASGI)
        content_type = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower().decode("latin-1")
        if content_type not in JSON_TYPES:
            return self._refuse(415, f"Content-Type must be application/json, got {content_type or 'none'!r}")
        declared = headers.get(b"content-length", b"")
        too_large = (413, f"request body exceeds {self.limit} bytes")
        if declared.isdigit() and int(declared) > self.limit:
            return self._refuse(*too_large)  # refused before reading it
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return 400, b""  # the client is gone; nothing will be sent
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return self._refuse(*too_large)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        query = scope.get("query_string", b"")
        timeout = parse_qs(query.decode("latin-1")).get("timeout", [None])[-1] if query else None
        answer = await self.handler.handle(b"".join(chunks), timeout)
        return answer.status, orjson.dumps(answer.body)


def webhook_app(handler: ReviewHandler, config: ServerConfig, metrics: Metrics) -> ASGIApp:
    app = FastAPI(
        title="airflow-migration-webhook", docs_url=None, redoc_url=None, openapi_url="/openapi.json"
    )

    async def never_called(_: Request) -> Response:  # pragma: no cover - MutateFastPath answers POST
        raise RuntimeError("POST /mutate is served by MutateFastPath")

    # registered so that other methods on /mutate get 405, as from any route
    app.router.add_route("/mutate", never_called, methods=["POST"], include_in_schema=False)

    def openapi() -> dict[str, Any]:
        """The published description names the route that the fast path serves."""
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
    return MutateFastPath(app, handler, config, metrics)


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


class Listener(uvicorn.Server):
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


class Listeners:
    """The webhook listener (TLS from the certificate source's context) and the health listener."""

    def __init__(
        self,
        config: ServerConfig,
        handler: ReviewHandler,
        state: State,
        metrics: Metrics,
        server_context: ssl.SSLContext,
    ) -> None:
        def listener(app: ASGIApp, host: str, port: int) -> uvicorn.Config:
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

        webhook = listener(webhook_app(handler, config, metrics), config.host, config.port)
        webhook.load()
        webhook.ssl = server_context  # the source's reloading context instead of uvicorn's static one
        self.servers = [Listener(webhook)]
        if config.health_port:
            self.servers.append(
                Listener(listener(health_app(state, metrics), config.health_host, config.health_port))
            )

    async def serve(self) -> bool:
        """Serve until stopped; True when every listener had started (its port was free)."""
        await asyncio.gather(*(server.serve() for server in self.servers))
        return all(server.started for server in self.servers)

    async def stop(self) -> None:
        """In-flight requests finish (up to the grace period); idle connections go now, and each connection
        as soon as its last response is sent."""
        for server in self.servers:
            server.should_exit = True
        while any(server.server_state.connections for server in self.servers):
            for server in self.servers:
                server.abort_idle_connections()
            await asyncio.sleep(0.05)
