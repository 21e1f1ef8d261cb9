"""Fixtures for the actor and supervisor tests: run them on asyncio."""

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
