"""The HTTP integration API (DESIGN §6): its routes, errors and request metrics.

Routes come in areas, each a function ``app -> list[Route]`` in its own module
(customers and events, custom lists, redemptions, unsubscribe, clearance); ``AREAS`` lists them
and a new area joins with one line there and its paths in :mod:`promod.http.openapi`.
Around every route: JSON errors for every 4xx and 5xx (Starlette's 404/405 too), a
latency histogram by route template and status, and a debug log line per request
with the client address::

    asgi = build_app(app)       # what HttpService serves; tests use it over ASGITransport

``GET /healthz`` answers 200 once the daemon is ready and 503 before that or while
it shuts down; ``GET /metrics`` (scope ``read``) is Prometheus text;
``GET /openapi.json`` the OpenAPI 3.1 document.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from promod.clearance.http import clearance_routes
from promod.http.auth import authorize
from promod.http.clientip import client_address
from promod.http.customers import customer_routes
from promod.http.errors import ApiError, api_error_handler, error_response, http_exception_handler
from promod.http.lists import list_routes
from promod.http.metrics import LatencyHistogram, render_metrics
from promod.http.openapi import openapi_document
from promod.http.redemptions import redemption_routes
from promod.http.unsubscribe import unsubscribe_routes
from promod.logs import get_logger

__all__ = ["AREAS", "build_app"]

log = get_logger("promod.http")

# Route areas, in order.
AREAS: tuple[Callable[[Any], Sequence[BaseRoute]], ...] = (
    customer_routes,
    list_routes,
    redemption_routes,
    unsubscribe_routes,
    clearance_routes,
)

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def histogram_of(app: Any) -> LatencyHistogram:
    """The app's latency histogram (kept in ``app.extras`` across HTTP restarts)."""
    histogram: LatencyHistogram = app.extras.setdefault("http_histogram", LatencyHistogram())
    return histogram


class RequestMetrics:
    """ASGI middleware: latency by route template, a 500 JSON body for any crash, a log line."""

    def __init__(self, asgi: ASGIApp, app: Any, templates: dict[Any, str]) -> None:
        self.asgi = asgi
        self.app = app
        self.templates = templates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.asgi(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = int(message["status"])
                response_started = True
            await send(message)

        try:
            await self.asgi(scope, receive, send_wrapper)
        except Exception as exc:
            status = 500
            log.error(
                "http_internal_error",
                method=scope.get("method"),
                path=scope.get("path"),
                error=repr(exc),
                exc_info=True,
            )
            if not response_started:
                response = error_response(500, "internal", "internal error; see the daemon log")
                await response(scope, receive, send)
        finally:
            elapsed = time.perf_counter() - started
            route = self.templates.get(scope.get("endpoint"), "unmatched")
            method = str(scope.get("method", "?"))
            histogram_of(self.app).observe(route, method, status, elapsed)
            log.debug(
                "http_request",
                method=method,
                route=route,
                status=status,
                ms=round(elapsed * 1000, 2),
                client=client_address(Request(scope), self.app.config.http.trusted_proxies),
            )


def build_app(app: Any) -> Starlette:
    """The Starlette application for one daemon ``app``."""

    async def healthz(request: Request) -> JSONResponse:
        supervisor = app.supervisor
        healthy = supervisor is None or supervisor.healthy
        if app.ready and not app.shutting_down and healthy:
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "unavailable"}, status_code=503)

    async def metrics(request: Request) -> Response:
        authorize(request, app.config.http.tokens, "read")
        text = await render_metrics(app, histogram_of(app))
        return PlainTextResponse(text, media_type=PROMETHEUS_TEXT)

    async def openapi(request: Request) -> JSONResponse:
        return JSONResponse(openapi_document(app.config.http.public_url, app.version))

    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    for area in AREAS:
        routes.extend(area(app))
    templates: dict[Any, str] = {
        route.endpoint: route.path for route in routes if isinstance(route, Route)
    }
    starlette = Starlette(
        routes=routes,
        exception_handlers={ApiError: api_error_handler, HTTPException: http_exception_handler},
    )
    starlette.add_middleware(RequestMetrics, app=app, templates=templates)
    return starlette
