"""Fixtures for the promodctl tests: a real AdminServer in a background event loop."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import CancelledError
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from structlog.testing import capture_logs

from promod.admin.server import AdminServer
from promod.app import App
from promod.store.database import Database
from tests.admin.conftest import admin_app, set_roles


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Daemon:
    """A running admin server; ``socket`` is its path."""

    app: App
    server: AdminServer
    portal: BlockingPortal
    logs: list[dict[str, Any]]  # the server's log events

    @property
    def socket(self) -> Path:
        return self.server.socket_path

    def audit(self, **kwargs: Any) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.portal.call(lambda: self.app.audit.query(**kwargs))
        return rows


async def _wait_idle(server: AdminServer) -> None:
    with anyio.fail_after(5):
        await server.wait_idle()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    sock_dir = Path(tempfile.mkdtemp(prefix="pm"))
    try:
        with capture_logs() as logs, start_blocking_portal("asyncio") as portal:
            db = portal.call(Database.open, tmp_path / "promod.db")
            app = portal.call(admin_app, db)
            set_roles(app, admin={"users": ["root"]})
            server = AdminServer(app, app.commands, sock_dir / "admin.sock", 0o660)
            future, _ = portal.start_task(server.run)
            try:
                yield Daemon(app=app, server=server, portal=portal, logs=logs)
            finally:
                portal.call(_wait_idle, server)
                future.cancel()
                try:
                    future.result(timeout=5)
                except CancelledError:
                    pass
                portal.call(db.close)
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)
