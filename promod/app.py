"""The running daemon's shared state: config, store, plugins, commands, actor refs.

Actors, servers and admin commands reach each other through one ``App``; they
reach an actor only through its ref (``tell`` and ``ask``, see
:mod:`promod.actors.refs`)::

    app.actor("ledger")           # a ref to the current ledger actor (after restarts too)
    app.status()                  # what ``promodctl status`` shows

Everything else the parts share has a named attribute here; tests build a real
one with :func:`promod.testing.make_app`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promod import __version__
from promod.actors.refs import ActorRef
from promod.actors.supervisor import Supervisor
from promod.admin.audit import AuditLog
from promod.admin.registry import CommandRegistry
from promod.clock import Clock
from promod.config import Config
from promod.limits import DescriptorBudget
from promod.plugins.host import PluginHost
from promod.store.database import Database

if TYPE_CHECKING:
    from promod.customers.store import StoredEvent
    from promod.http.metrics import HttpMetrics
    from promod.plugins.circuit import CircuitBoard

__all__ = ["App", "EventsHook"]

EventsHook = Callable[["Sequence[StoredEvent]"], Awaitable[None] | None]
"""Called with the events ``POST /v1/events`` stored (the live plugin wakes the live actor)."""


@dataclass(eq=False)
class App:
    """Everything a command handler, actor or route may need."""

    config: Config
    config_path: Path
    db: Database
    plugins: PluginHost
    commands: CommandRegistry
    audit: AuditLog
    clock: Clock
    supervisor: Supervisor | None = None
    version: str = __version__
    started_at: float = field(default_factory=time.time)
    ready: bool = False
    shutting_down: bool = False
    reloads: int = 0
    limits: DescriptorBudget | None = None  # the descriptor budget set at start
    http_bound: tuple[str, int] | None = None  # (host, port) once the HTTP API listens
    http_metrics: HttpMetrics | None = None  # see promod.http.metrics.http_metrics
    on_events: EventsHook | None = None  # set by the live plugin at start
    redeem: Callable[..., Awaitable[Any]] | None = None  # instead of codepool.redeem.redeem
    event_listeners: list[str] = field(default_factory=list)  # actors told EventsStored
    circuits: CircuitBoard | None = None  # see promod.plugins.isolation.board
    circuits_handled: dict[str, int] = field(default_factory=dict)  # breaker -> openings handled
    circuits_alerted: set[str] = field(default_factory=set)  # breakers whose opening was alerted
    plugin_state: dict[str, Any] = field(default_factory=dict)  # outside plugins' own state

    def actor(self, name: str) -> ActorRef:
        """A ref to the supervised actor ``name``; ``tell``/``ask`` raise ActorNotRunning
        while it is not there."""
        return ActorRef(name, lambda: self._child(name))

    def _child(self, name: str) -> object:
        if self.supervisor is None:
            raise KeyError(name)
        return self.supervisor.child(name)

    def status(self) -> dict[str, Any]:
        """Version, uptime, paths and every supervised child with its state."""
        children = self.supervisor.children_info() if self.supervisor else []
        bound = self.http_bound if self.config.http.enabled else None
        return {
            "version": self.version,
            "pid": os.getpid(),
            "uptime": round(time.time() - self.started_at, 3),
            "started_at": self.started_at,
            "ready": self.ready,
            "shutting_down": self.shutting_down,
            "healthy": bool(self.supervisor and self.supervisor.healthy),
            "config": str(self.config_path),
            "database": str(self.db.path),
            "admin_socket": str(self.config.daemon.admin_socket),
            "http": f"{bound[0]}:{bound[1]}" if bound else None,
            "reloads": self.reloads,
            "store": self.db.health.describe(),
            "limits": self.limits.to_dict() if self.limits else None,
            "conditions": dict(self.supervisor.conditions) if self.supervisor else {},
            "actors": children,
        }
