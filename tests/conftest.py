"""Shared fixtures: the anyio backend and a daemon started as a subprocess."""

from __future__ import annotations

import compileall
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import structlog

from promod.store.database import Database

pytest_plugins = ["tests.support.daemon", "tests.support.disk"]

ROOT = Path(__file__).resolve().parent.parent


def pytest_sessionstart(session: pytest.Session) -> None:
    """Write the bytecode of promod and the bundled plugins before any test starts.

    Every end-to-end test starts ``promod run`` and ``promodctl`` as subprocesses;
    where the environment sets PYTHONDONTWRITEBYTECODE each of them would compile
    every promod module from source again. Compiled once here (up-to-date files are
    skipped; an edited module is recompiled, as Python itself does), they load it.
    """
    for tree in (ROOT / "promod", ROOT / "plugins"):
        compileall.compile_dir(tree, quiet=1)


def pytest_configure(config: pytest.Config) -> None:
    """Log in tests as the daemon does on a console: plain tracebacks, no locals."""
    processors = list(structlog.get_config()["processors"])
    if processors and isinstance(processors[-1], structlog.dev.ConsoleRenderer):
        processors[-1] = structlog.dev.ConsoleRenderer(
            exception_formatter=structlog.dev.plain_traceback
        )
        structlog.configure(processors=processors)


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
