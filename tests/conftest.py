"""Shared fixtures: the anyio backend and a daemon started as a subprocess."""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.support.daemon"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
