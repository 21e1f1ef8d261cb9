"""Fixtures for the store tests: anyio on asyncio (aiosqlite needs an asyncio loop)."""

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
