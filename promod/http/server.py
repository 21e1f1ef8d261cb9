"""The HTTP server as a supervised service: uvicorn serving promod's Starlette app.

The socket is bound before the service reports itself started, so a port in
use fails the start-up instead of a later request::

    service = HttpService(app)            # a Service for the Supervisor
    await task_group.start(service.run)
    service.bound                          # ("127.0.0.1", 8470)
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Generator
from typing import Any

import anyio
import uvicorn
from starlette.applications import Starlette

from promod.http.routes import build_app
from promod.logs import get_logger

log = get_logger("promod.http")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the daemon owns signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class HttpService:
    """Serve the integration API where ``[http] listen`` says."""

    name = "http"

    def __init__(self, app: Any) -> None:
        self.app = app
        self.state = "stopped"
        self.bound: tuple[str, int] | None = None

    def asgi(self) -> Starlette:
        return build_app(self.app)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        cfg = self.app.config.http
        family = socket.AF_INET6 if ":" in cfg.host else socket.AF_INET
        # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose
        # proto says TCP, and without it a kept-alive connection stalls ~40 ms per request.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((cfg.host, cfg.port))
        except OSError:
            sock.close()
            raise
        sock.listen(512)
        sock.setblocking(False)
        self.bound = sock.getsockname()[:2]
        config = uvicorn.Config(
            self.asgi(),
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
            proxy_headers=False,
        )
        server = _Server(config)
        self.state = "running"
        log.info("http_listening", host=self.bound[0], port=self.bound[1])
        task_status.started()
        try:
            await server.serve(sockets=[sock])
        finally:
            server.should_exit = True
            self.state = "stopped"
            sock.close()
