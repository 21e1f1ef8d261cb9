"""The running daemon's shared state: config, store, plugins, commands, actors.

Actors, servers and admin commands reach each other through one ``App``::

    app.actor("ledger")           # the current ledger actor (after restarts too)
    app.status()                  # what ``promodctl status`` shows
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promod import __version__
from promod.actors.supervisor import Supervisor
from promod.admin.audit import AuditLog
from promod.admin.registry import CommandRegistry
from promod.clock import Clock
from promod.config import Config
from promod.limits import DescriptorBudget
from promod.plugins.host import PluginHost
from promod.store.database import Database


@dataclass
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
    extras: dict[str, Any] = field(default_factory=dict)
    limits: DescriptorBudget | None = None  # the descriptor budget set at start

    def actor(self, name: str) -> Any:
        assert self.supervisor is not None
        return self.supervisor.child(name)

    def status(self) -> dict[str, Any]:
        """Version, uptime, paths and every supervised child with its state."""
        children = self.supervisor.children_info() if self.supervisor else []
        http = (
            self.supervisor.child("http") if self.supervisor and self.config.http.enabled else None
        )
        bound = getattr(http, "bound", None)
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
