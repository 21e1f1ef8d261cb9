"""Lifecycle: the codepool actor's expiry sweep on the app's clock, revocation, stats."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import anyio
import pytest

from promod.actors.codepool import CodePoolActor, Sweep
from promod.actors.messages import Inspect
from promod.actors.settle import settle
from promod.app import App
from promod.clock import ManualClock
from promod.codepool.provider import CodePoolProvider
from promod.codepool.redeem import redeem
from promod.codepool.store import PoolError, configure_pool, revoke_code, stats_sync
from promod.store.database import Database
from promod.store.seam import Transaction
from promod.testing import wait_until_async
from tests.codepool.conftest import FRAUD, T0, fill, grant, outbox

provider = CodePoolProvider()


async def states(db: Database) -> dict[str, int]:
    rows = await db.fetchall("SELECT state, count(*) FROM codes GROUP BY state")
    return {r[0]: r[1] for r in rows}


async def _expired(db: Database, n: int) -> bool:
    return (await states(db)).get("expired") == n


@pytest.mark.anyio
async def test_actor_sweeps_on_the_clock(app: App, db: Database, clock: ManualClock) -> None:
    await db.run(partial(configure_pool, name="P", now=T0, low_absolute=3))
    await fill(db, "P", 5, expires_at=T0 + 90)
    await fill(db, "P", 5)
    await db.run(partial(provider.issue_batch, grants=[grant(1)], now=T0))  # an expiring one
    actor = CodePoolActor(app)
    async with anyio.create_task_group() as tg:
        await tg.start(actor.run)
        await actor.ask(Inspect())  # the start-up sweep has run: nothing was due
        assert await states(db) == {"available": 9, "assigned": 1}
        clock.advance(60)
        await settle([actor], db)  # T0 + 60: nothing has expired yet
        assert await states(db) == {"available": 9, "assigned": 1}
        clock.advance(60)  # T0 + 120: past the expiry, the next scheduled sweep runs
        await wait_until_async(lambda: _expired(db, 5), what="the scheduled sweep", timeout=5)
        info = await actor.ask(Inspect())
        assert info["expired_total"] == 5 and info["last_sweep_at"] == T0 + 120
        assert await actor.ask(Sweep()) == {"expired": {}}
        actor.request_stop()
    assert await states(db) == {"available": 5, "expired": 5}
    pool = await db.fetchone("SELECT available FROM code_pools WHERE name = 'P'")
    assert pool is not None and pool[0] == 5
    # 9 -> 5 available crossed nothing (threshold 3): no alert.
    assert await outbox(db, "codepool.low") == []


@pytest.mark.anyio
async def test_revoke_one_code(db: Database) -> None:
    await fill(db, "P", 4)
    issued = await db.run(
        partial(provider.issue_batch, grants=[grant(1, "alice"), grant(2, "bob")], now=T0)
    )
    alice, bob = issued[0].code, issued[1].code
    assert alice and bob
    await redeem(db, bob, "bob", "192.0.2.1", FRAUD, T0)

    def revoke(code: str, pool: str = "P") -> Any:
        return db.run(partial(revoke_code, pool_name=pool, code=code, now=T0))

    assert await revoke(alice) == "assigned"
    assert await revoke(alice) == "revoked"
    with pytest.raises(PoolError, match="redeemed"):
        await revoke(bob)
    with pytest.raises(PoolError, match="no such code"):
        await revoke("NOPE")
    with pytest.raises(PoolError, match="no code pool"):
        await revoke(alice, "OTHER")
    result = await redeem(db, alice, "alice", "192.0.2.1", FRAUD, T0)
    assert (result.redeemed, result.reason) == (False, "revoked")
    # A revoked code no longer counts against the series rule: alice may get another.
    again = await db.run(partial(provider.issue_batch, grants=[grant(3, "alice")], now=T0))
    assert again[0].code not in (alice, bob)


@pytest.mark.anyio
async def test_stats_burn_rate_and_runout(db: Database) -> None:
    await fill(db, "P", 100, now=T0 - 3 * 86400)
    await db.run(
        partial(provider.issue_batch, grants=[grant(i) for i in range(1, 11)], now=T0 - 2 * 86400)
    )
    await db.run(
        partial(provider.issue_batch, grants=[grant(i) for i in range(11, 31)], now=T0 - 3600)
    )
    issued = await db.fetchone("SELECT code, customer_id FROM codes WHERE grant_id = 11")
    assert issued is not None
    await redeem(db, issued[0], issued[1], "192.0.2.1", FRAUD, T0 - 60)

    def stats(tx: Transaction) -> dict[str, Any]:
        return stats_sync(tx, "P", T0)

    result = await db.run(stats)
    assert result["counts"] == {
        "available": 70,
        "assigned": 29,
        "redeemed": 1,
        "expired": 0,
        "revoked": 0,
    }
    assert result["burn_rate_per_day"] == 20
    assert result["redeemed_last_day"] == 1
    assert result["projected_runout_in"] == 3.5 * 86400
    json.dumps(result)
