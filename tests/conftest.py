"""Shared fixtures: the anyio backend and a daemon started as a subprocess."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from promod.store.database import Database

pytest_plugins = ["tests.support.daemon", "tests.support.disk"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated promod database in a real file."""
    database = await Database.open(tmp_path / "promod.db")
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short directory for Unix sockets (AF_UNIX paths are limited to 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="pm"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
