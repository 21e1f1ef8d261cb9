"""Fixtures for the customer tests: a real database, a real admin socket, an App-shaped object."""

from __future__ import annotations

import os
import pwd
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from promod.admin.commands import register_builtin_commands
from promod.admin.registry import CommandRegistry
from promod.admin.server import AdminServer
from promod.app import App
from promod.clock import ManualClock
from promod.config import Config, parse_config
from promod.customers.commands import register_customer_commands
from promod.store.database import Database
from promod.testing import make_app

ME = pwd.getpwuid(os.getuid()).pw_name
T0 = 1_790_000_000.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_config(role: str) -> Config:
    return parse_config(
        {"admin": {"roles": {role: {"users": [ME]}}}}, Path("/nonexistent/promod.toml")
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=T0)


@pytest.fixture
def role() -> str:
    """The role the test user has on the admin socket (override in a test module)."""
    return "operator"


@pytest.fixture
async def app(db: Database, clock: ManualClock, role: str) -> App:
    registry = register_builtin_commands(CommandRegistry())
    register_customer_commands(registry)
    return make_app(db, config=make_config(role), clock=clock, commands=registry)


@pytest.fixture
async def socket_path(app: App, sock_dir: Path) -> AsyncIterator[Path]:
    """A real AdminServer serving ``app`` on a Unix socket for the test's duration."""
    server = AdminServer(app, app.commands, sock_dir / "admin.sock", 0o660)
    with capture_logs():  # keep the server's log lines out of promodctl's captured output
        async with anyio.create_task_group() as tg:
            await tg.start(server.run)
            try:
                yield server.socket_path
            finally:
                tg.cancel_scope.cancel()
