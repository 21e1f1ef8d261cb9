"""Fixtures for the clearance tests: the HTTP API's App-shaped object over a real database,
and a campaign whose run waits for clearance."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from promod.app import App
from promod.campaigns import store as campaigns
from promod.campaigns.runs import create_run_sync
from promod.campaigns.spec import load_spec
from promod.store.database import Database
from tests.httpapi.conftest import T0, anyio_backend, app, client  # noqa: F401
from tests.support.data import seed_customers, wallet_spec

LEAD = 1800.0
START = T0 + LEAD


def clearance_spec(
    campaign_id: str = "winback", *, on_timeout: str = "reject", caps: str = ""
) -> str:
    start = datetime.fromtimestamp(START, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    schedule = f'start = "{start}"\ndelivery = "immediate"'
    clearance = f'\n[clearance]\nrequired = true\nlead = "30m"\non_timeout = "{on_timeout}"\n'
    return wallet_spec(campaign_id, schedule=schedule, caps=caps) + clearance


async def make_clearance_run(
    database: Database,
    customers: int = 10,
    *,
    campaign_id: str = "winback",
    on_timeout: str = "reject",
    pilot: str | None = None,
    caps: str = "",
    seed: bool = True,
) -> int:
    """Seed ``customers`` (c00...), apply and launch a clearance campaign, snapshot its run."""
    if seed:
        seed_customers(database.path, [f"c{i:02d}" for i in range(customers)])
    spec = load_spec(clearance_spec(campaign_id, on_timeout=on_timeout, caps=caps), "toml")
    await campaigns.apply(database, spec, by="test", now=T0)
    await campaigns.launch(database, campaign_id, now=T0, pilot=pilot)

    def snapshot(conn: sqlite3.Connection) -> int:
        conn.execute("UPDATE campaigns SET next_run_at = NULL WHERE id = ?", (campaign_id,))
        return create_run_sync(
            conn, campaign_id, 1, spec, now=T0, pilot=pilot, clearance_deadline=START
        )

    return await database.run_sync(snapshot)


@pytest.fixture
def make_run(app: App) -> Callable[..., Any]:  # noqa: F811 (the fixture)
    async def make(*args: Any, **kwargs: Any) -> int:
        return await make_clearance_run(app.db, *args, **kwargs)

    return make


__all__ = ["LEAD", "START", "clearance_spec", "make_clearance_run"]
