"""Fixtures for the HTTP API tests: a real database file, an App-shaped object, a client.

The client talks to the real Starlette app over httpx's ASGITransport (no socket);
tests/e2e/test_http.py covers real TCP through a daemon.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from promod.app import App
from promod.clock import ManualClock
from promod.config import Config, parse_config
from promod.http.routes import build_app
from promod.store.database import Database
from promod.testing import make_app

T0 = 1_790_000_000.0

# name -> (token, scopes)
TOKENS: dict[str, tuple[str, list[str]]] = {
    "all": (
        "tok-all-0123456789",
        ["customers:write", "events:write", "clearance", "redeem", "read"],
    ),
    "reader": ("tok-read-0123456789", ["read"]),
    "events": ("tok-events-0123456789", ["events:write"]),
}


def auth(name: str = "all") -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name][0]}"}


def make_config(*, max_body: str = "64KiB", trusted: list[str] | None = None) -> Config:
    tokens = [
        {"name": name, "sha256": hashlib.sha256(tok.encode()).hexdigest(), "scopes": scopes}
        for name, (tok, scopes) in TOKENS.items()
    ]
    return parse_config(
        {
            "http": {
                "listen": "127.0.0.1:0",
                "max_body": max_body,
                "trusted_proxies": trusted or [],
                "tokens": tokens,
            }
        },
        Path("/nonexistent/promod.toml"),
    )


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def app(db: Database) -> App:
    return make_app(db, config=make_config(), clock=ManualClock(start=T0))


@pytest.fixture
async def client(app: App) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(app), client=("198.51.100.9", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://promod.test") as c:
        yield c
