"""Fixtures for the code pool tests: a real database, a manual clock, a real admin socket."""

from __future__ import annotations

import os
import pwd
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from promod.admin.commands import register_builtin_commands
from promod.admin.registry import CommandRegistry
from promod.admin.server import AdminServer
from promod.app import App
from promod.clock import ManualClock
from promod.codepool.commands import CODE_COMMANDS
from promod.codepool.generate import CodeSpec
from promod.codepool.store import ensure_pool, generate_into
from promod.config import FraudConfig, parse_config
from promod.rewards.provider import GrantRequest
from promod.store.database import Database
from promod.store.seam import Transaction
from promod.testing import make_app

ME = pwd.getpwuid(os.getuid()).pw_name
T0 = 1_790_000_000.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=T0)


@pytest.fixture
def app(db: Database, clock: ManualClock) -> App:
    registry = register_builtin_commands(CommandRegistry())
    for cmd in CODE_COMMANDS:
        registry.register(cmd)
    config = parse_config(
        {"admin": {"roles": {"operator": {"users": [ME]}}}}, Path("/nonexistent/promod.toml")
    )
    return make_app(db, config=config, clock=clock, commands=registry)


@pytest.fixture
async def socket_path(app: App, sock_dir: Path) -> AsyncIterator[Path]:
    server = AdminServer(app, app.commands, sock_dir / "admin.sock", 0o660)
    with capture_logs():
        async with anyio.create_task_group() as tg:
            await tg.start(server.run)
            try:
                yield server.socket_path
            finally:
                tg.cancel_scope.cancel()


def grant(
    gid: int, customer: str | None = None, pool: str = "P", campaign: str = "camp"
) -> GrantRequest:
    return GrantRequest(
        id=gid,
        campaign_id=campaign,
        run_id=1,
        customer_id=customer or f"c{gid}",
        provider="code_pool",
        amount_minor=None,
        amount_exponent=2,
        value_minor=0,
        currency=None,
        options={"pool": pool},
    )


async def fill(
    db: Database,
    pool: str,
    count: int,
    *,
    now: float = T0,
    series: str | None = None,
    spec: CodeSpec | None = None,
    **kwargs: Any,
) -> None:
    def work(tx: Transaction) -> None:
        p = ensure_pool(tx, pool, now=now, series=series)
        generate_into(tx, p, spec or CodeSpec.build(length=10), count, now=now, **kwargs)

    await db.run(work)


async def outbox(db: Database, type: str) -> list[sqlite3.Row]:
    return await db.fetchall("SELECT * FROM outbox WHERE type = ? ORDER BY id", (type,))


FRAUD = FraudConfig(
    redemptions_per_ip_per_hour=1000,
    redemptions_per_customer_per_hour=1000,
    failed_redemptions_per_ip_per_hour=1000,
    block_for="1h",
)
