"""The routes of the HTTP integration API.

``GET /healthz`` answers 200 once the daemon is ready and 503 before that or
while it shuts down.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def build_app(app: Any) -> Starlette:
    """The Starlette application for one daemon ``app``."""

    async def healthz(request: Request) -> JSONResponse:
        if app.ready and not app.shutting_down and app.supervisor.healthy:
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "unavailable"}, status_code=503)

    return Starlette(routes=[Route("/healthz", healthz, methods=["GET"])])
