"""The HTTP integration API: a FastAPI app whose OpenAPI document is generated.

Routes come in areas, each a function ``app -> APIRouter`` in its own module
(customers and events, custom lists, redemptions, unsubscribe, clearance); ``AREAS``
lists them, and a new area joins with one line there. Every request body, parameter
and answer is a pydantic model, and ``GET /openapi.json`` (OpenAPI 3.1) is generated
from them, links between operations included. Around every route: JSON errors for
every 4xx and 5xx (Starlette's 404/405 and FastAPI's validation errors too), a latency
histogram by route template and status, and a debug log line per request with the
client address::

    asgi = build_app(app)       # what HttpService serves; tests use it over ASGITransport

``GET /healthz`` answers 200 once the daemon is ready and 503 before that or while
it shuts down; ``GET /metrics`` (scope ``read``) is Prometheus text.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from promod.clearance.http import clearance_router
from promod.http.body import SCOPE_KEY, ApiRoute, scope
from promod.http.clientip import client_address
from promod.http.consents import consent_router
from promod.http.customers import customer_router
from promod.http.errors import (
    error_response,
    error_responses,
    install_error_handlers,
    json_error_content,
)
from promod.http.lists import list_router
from promod.http.metrics import http_metrics, render_metrics
from promod.http.redemptions import redemption_router
from promod.http.unsubscribe import unsubscribe_router
from promod.logs import get_logger

if TYPE_CHECKING:
    from promod.app import App

__all__ = ["AREAS", "build_app"]

log = get_logger("promod.http")

# Route areas, in order.
AREAS: tuple[Callable[[Any], APIRouter], ...] = (
    customer_router,
    consent_router,
    list_router,
    redemption_router,
    unsubscribe_router,
    clearance_router,
)

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
BEARER = "bearer"


class Health(BaseModel):
    status: Literal["ok", "unavailable"]


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(path) if path else "unmatched"


class RequestMetrics:
    """ASGI middleware: latency by route template, a 500 JSON body for any crash, a log line."""

    def __init__(self, asgi: ASGIApp, app: App) -> None:
        self.asgi = asgi
        self.app = app

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
            route = _route_template(scope)
            method = str(scope.get("method", "?"))
            http_metrics(self.app).latency.labels(route, method, str(status)).observe(elapsed)
            log.debug(
                "http_request",
                method=method,
                route=route,
                status=status,
                ms=round(elapsed * 1000, 2),
                client=client_address(Request(scope), self.app.config.http.trusted_proxies),
            )


def _secure(document: dict[str, Any]) -> None:
    """Every operation with a scope needs the bearer token (401/403 are listed with it)."""
    document.setdefault("components", {}).setdefault("securitySchemes", {})[BEARER] = {
        "type": "http",
        "scheme": "bearer",
        "description": f"a token of [[http.tokens]]; each operation names its scope in {SCOPE_KEY}",
    }
    for item in document.get("paths", {}).values():
        for operation in item.values():
            if isinstance(operation, dict) and SCOPE_KEY in operation:
                operation["security"] = [{BEARER: []}]


def build_app(app: App) -> FastAPI:
    """The FastAPI application for one daemon ``app``."""
    api = FastAPI(
        title="promod HTTP integration API",
        version=str(app.version),
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
        servers=[{"url": str(app.config.http.public_url).rstrip("/")}],
    )
    api.state.promod = app
    api.router.route_class = ApiRoute
    install_error_handlers(api)

    @api.get(
        "/healthz",
        operation_id="healthz",
        summary="Readiness",
        response_model=Health,
        responses={503: {"model": Health, "description": "Not ready, or shutting down"}},
        tags=["operations"],
    )
    async def healthz() -> JSONResponse:
        supervisor = app.supervisor
        healthy = supervisor is None or supervisor.healthy
        if app.ready and not app.shutting_down and healthy:
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "unavailable"}, status_code=503)

    @api.get(
        "/metrics",
        operation_id="metrics",
        summary="Prometheus metrics",
        response_class=Response,
        responses={
            200: {
                "content": {PROMETHEUS_TEXT.split(";")[0]: {"schema": {"type": "string"}}},
                "description": "The Prometheus text format 0.0.4",
            },
            **error_responses(401, 403),
        },
        openapi_extra=scope("read"),
        tags=["operations"],
    )
    async def metrics() -> Response:
        text = await render_metrics(app, http_metrics(app))
        return Response(text, media_type=PROMETHEUS_TEXT)

    for area in AREAS:
        api.include_router(area(app))

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            document = get_openapi(
                title=api.title,
                version=api.version,
                openapi_version=api.openapi_version,
                description="Customers, events, clearance and redemptions for the site's"
                " backend. Errors are {error: {code, message, details}}.",
                routes=api.routes,
                servers=api.servers,
            )
            _secure(document)
            json_error_content(document)
            api.openapi_schema = document
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]
    api.add_middleware(RequestMetrics, app=app)
    return api
