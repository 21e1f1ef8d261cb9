"""The HTTP server as a supervised service: uvicorn serving promod's Starlette app.

The socket is bound before the service reports itself started, so a port in
use fails the start-up instead of a later request::

    service = HttpService(app)            # a Service for the Supervisor
    await task_group.start(service.run)
    service.bound                          # ("127.0.0.1", 8470)

Connections are bounded so a flood cannot take the descriptors the store and the admin
socket need (see promod.limits): at most ``http_connections`` are open at once (one more
is closed as soon as it is accepted, and uvicorn's ``limit_concurrency`` answers 503 past
the same number of requests in flight); a connection must send a complete request head
within ``[http] request_timeout`` of opening or of its previous response (slow and silent
clients are closed); an idle kept-alive connection closes after ``KEEP_ALIVE`` seconds.
A write refused by a store outage (a full disk) answers 503 ``unavailable`` with the
problem, not a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import time
from collections.abc import Generator
from typing import Any

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from uvicorn.protocols.http.h11_impl import H11Protocol

from promod.http.errors import error_response
from promod.http.routes import build_app
from promod.limits import DescriptorBudget
from promod.logs import get_logger
from promod.store.health import StoreUnavailable

log = get_logger("promod.http")


KEEP_ALIVE = 5  # seconds an idle kept-alive connection stays open


class _GuardedProtocol(H11Protocol):
    """uvicorn's h11 protocol with a connection cap and a request-head deadline."""

    max_connections = 1000  # set per server by _protocol_class
    head_timeout = 10.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if len(self.connections) >= self.max_connections:
            self._refused = True
            self.transport = transport  # type: ignore[assignment]
            _refusals.note(len(self.connections))
            transport.close()
            return
        self._refused = False
        self._head_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        if getattr(self, "_refused", False):
            return
        self._cancel_head_timer()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        cycle = self.cycle
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_late, cycle)

    def _cancel_head_timer(self) -> None:
        timer = getattr(self, "_head_timer", None)
        if timer is not None:
            timer.cancel()
            self._head_timer = None

    def _head_late(self, cycle: object) -> None:
        self._head_timer = None
        # No new request head arrived since the timer was set: a silent or slow client.
        if self.cycle is cycle and not self.transport.is_closing():
            _refusals.timed_out += 1
            self.transport.close()


class _Refusals:
    """Connections closed at the cap or for a late head; logged at most every 10 s."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self.refused = 0
        self.timed_out = 0
        self._reported = 0
        self._last = -interval

    def note(self, open_now: int) -> None:
        self.refused += 1
        now = time.monotonic()
        if now - self._last >= self.interval:
            log.warning(
                "http_connections_refused",
                open=open_now,
                refused=self.refused - self._reported,
                timed_out=self.timed_out,
            )
            self._reported = self.refused
            self._last = now


_refusals = _Refusals()


def _protocol_class(max_connections: int, head_timeout: float) -> type[H11Protocol]:
    return type(
        "GuardedH11Protocol",
        (_GuardedProtocol,),
        {"max_connections": max_connections, "head_timeout": head_timeout},
    )


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the daemon owns signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


STORE_RETRY_AFTER = "30"  # seconds, in Retry-After while the store takes no writes


async def _store_unavailable(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StoreUnavailable)
    return error_response(
        503,
        "unavailable",
        f"the store takes no writes: {exc}; nothing was changed",
        exc.to_dict(),
        {"Retry-After": STORE_RETRY_AFTER},
    )


def _budget_of(app: Any, cfg: Any) -> DescriptorBudget:
    budget = getattr(app, "limits", None)
    if isinstance(budget, DescriptorBudget):
        return budget
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return DescriptorBudget.for_limit(soft, http_max=cfg.max_connections)


class HttpService:
    """Serve the integration API where ``[http] listen`` says."""

    name = "http"

    def __init__(self, app: Any) -> None:
        self.app = app
        self.state = "stopped"
        self.bound: tuple[str, int] | None = None

    def asgi(self) -> Starlette:
        asgi = build_app(self.app)
        # A write on a full (or read-only) disk is a 503 with the problem, not a 500.
        asgi.add_exception_handler(StoreUnavailable, _store_unavailable)
        return asgi

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
        budget = _budget_of(self.app, cfg)
        sock.listen(budget.accept_backlog)
        sock.setblocking(False)
        self.bound = sock.getsockname()[:2]
        config = uvicorn.Config(
            self.asgi(),
            http=_protocol_class(budget.http_connections, cfg.request_timeout),
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
            proxy_headers=False,
            limit_concurrency=budget.http_connections,
            timeout_keep_alive=KEEP_ALIVE,
            backlog=budget.accept_backlog,
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
