"""Fixtures for the admin tests: a real database, a real App-shaped object, real sockets."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from promod import __version__
from promod.actors.base import Actor
from promod.actors.supervisor import ChildSpec, Supervisor
from promod.admin.audit import AuditLog
from promod.admin.commands import register_builtin_commands
from promod.admin.protocol import dumps
from promod.admin.registry import CommandRegistry
from promod.admin.server import AdminServer
from promod.config import AdminConfig, Config, RoleMapping, parse_config
from promod.plugins.host import PluginHost
from promod.store.database import Database


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Idle(Actor):
    name = "idle"

    async def receive(self, message: object) -> object:
        raise TypeError(f"unexpected {message!r}")


@dataclass
class AdminApp:
    """The App attributes the admin part relies on, filled with real objects."""

    config: Config
    db: Database
    audit: AuditLog
    commands: CommandRegistry
    plugins: PluginHost
    supervisor: Supervisor | None
    config_path: Path = Path("/nonexistent/promod.toml")
    version: str = __version__
    started_at: float = field(default_factory=time.time)
    shutting_down: bool = False

    def status(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "started_at": self.started_at,
            "shutting_down": self.shutting_down,
            "database": str(self.db.path),
            "actors": self.supervisor.children_info() if self.supervisor else [],
        }

    def set_roles(self, **roles: dict[str, list[str]]) -> None:
        """Replace ``[admin.roles]``, e.g. ``set_roles(viewer={"users": ["root"]})``."""
        mappings = {
            name: RoleMapping(users=tuple(m.get("users", ())), groups=tuple(m.get("groups", ())))
            for name, m in roles.items()
        }
        self.config = self.config.model_copy(update={"admin": AdminConfig(roles=mappings)})


def make_config(**roles: dict[str, list[str]]) -> Config:
    return parse_config({"admin": {"roles": roles}}, Path("/nonexistent/promod.toml"))


async def make_app(db: Database, **roles: dict[str, list[str]]) -> AdminApp:
    registry = register_builtin_commands(CommandRegistry())
    plugins = PluginHost.load(builtins=("promod.builtin.commands",), entry_points=False)
    supervisor = Supervisor([ChildSpec(name="idle", factory=Idle)])
    return AdminApp(
        config=make_config(**roles),
        db=db,
        audit=AuditLog(db),
        commands=registry,
        plugins=plugins,
        supervisor=supervisor,
    )


@pytest.fixture
async def app(db: Database) -> AdminApp:
    return await make_app(db)


@pytest.fixture
def restore_log_level() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    try:
        yield
    finally:
        root.setLevel(level)


@asynccontextmanager
async def serving(server: AdminServer) -> AsyncIterator[AdminServer]:
    async with anyio.create_task_group() as tg:
        await tg.start(server.run)
        try:
            yield server
            with anyio.fail_after(5):
                await server.wait_idle()
        finally:
            tg.cancel_scope.cancel()


class Conn:
    """A raw JSON-lines connection to the admin socket."""

    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self.stream = stream
        self.reader = BufferedByteReceiveStream(stream)
        self.next_id = 1

    async def send_line(self, data: bytes) -> None:
        await self.stream.send(data + b"\n")

    async def read(self) -> dict[str, Any]:
        import json

        with anyio.fail_after(5):
            line = await self.reader.receive_until(b"\n", 64 * 1024 * 1024)
        result: dict[str, Any] = json.loads(line)
        return result

    async def call(self, cmd: str, args: Any = None) -> dict[str, Any]:
        request_id = self.next_id
        self.next_id += 1
        request: dict[str, Any] = {"id": request_id, "cmd": cmd}
        if args is not None:
            request["args"] = args
        await self.send_line(dumps(request).encode())
        response = await self.read()
        assert response["id"] == request_id
        return response


@asynccontextmanager
async def connect(path: Path) -> AsyncIterator[Conn]:
    stream = await anyio.connect_unix(path)
    async with stream:
        yield Conn(stream)
