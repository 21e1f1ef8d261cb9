"""The code_pool provider: concurrent allocation, series rule, exhaustion, rollback, alerts."""

from __future__ import annotations

import json
from functools import partial

import anyio
import pytest

from promod.codepool.provider import CodePoolProvider, PoolExhausted, SeriesDuplicate
from promod.codepool.store import codes_report, configure_pool, revoke_unassigned
from promod.rewards.provider import IssuedReward, is_transactional
from promod.store.database import Database
from promod.store.seam import Transaction
from tests.codepool.conftest import T0, fill, grant, outbox

provider = CodePoolProvider()


@pytest.mark.anyio
async def test_1000_concurrent_allocations_give_1000_distinct_codes(db: Database) -> None:
    await fill(db, "P", 1200)
    results: dict[int, IssuedReward] = {}

    async def one(gid: int) -> None:
        issued = await db.run(partial(provider.issue_batch, grants=[grant(gid)], now=T0))
        results[gid] = issued[0]

    async with anyio.create_task_group() as tg:
        for gid in range(1, 1001):
            tg.start_soon(one, gid)
    codes = [r.code for r in results.values()]
    assert len(codes) == 1000 and len(set(codes)) == 1000
    assert await db.run(partial(provider.available, options={"pool": "P"})) == 200
    row = await db.fetchone(
        "SELECT count(*), count(DISTINCT grant_id) FROM codes WHERE state = 'assigned'"
    )
    assert row is not None and tuple(row) == (1000, 1000)


@pytest.mark.anyio
async def test_batch_result_matches_grants_and_repeat_is_idempotent(db: Database) -> None:
    await fill(db, "P", 10, value_minor=500, expires_at=T0 + 86400)
    assert is_transactional(provider)
    grants = [grant(i) for i in range(1, 6)]
    first = await db.run(partial(provider.issue_batch, grants=grants, now=T0))
    assert [r.details["pool"] for r in first] == ["P"] * 5
    assert all(r.expires_at == T0 + 86400 and r.details["value_minor"] == 500 for r in first)
    again = await db.run(partial(provider.issue_batch, grants=grants, now=T0))
    assert [r.code for r in again] == [r.code for r in first]
    assert await db.run(partial(provider.available, options={"pool": "P"})) == 5


@pytest.mark.anyio
async def test_one_code_of_a_series_per_customer_across_campaigns(db: Database) -> None:
    await fill(db, "A", 10, series="XMAS")
    await fill(db, "B", 10, series="XMAS")
    await fill(db, "OTHER", 10)
    await db.run(partial(provider.issue_batch, grants=[grant(1, "alice", "A", "camp1")], now=T0))
    batch = [grant(2, "bob", "B", "camp2"), grant(3, "alice", "B", "camp2"), grant(4, "carl", "B")]
    with pytest.raises(SeriesDuplicate) as err:
        await db.run(partial(provider.issue_batch, grants=batch, now=T0))
    assert err.value.refused == {3: "series_duplicate"}
    assert err.value.series == {3: "XMAS"}
    # Nothing of the refused batch was written; the rest goes through on its own.
    assert await db.run(partial(provider.available, options={"pool": "B"})) == 10
    rest = [g for g in batch if g.id not in err.value.refused]
    issued = await db.run(partial(provider.issue_batch, grants=rest, now=T0))
    assert len(issued) == 2
    # Another series is fine for alice; two grants of one customer in one batch are not.
    await db.run(partial(provider.issue_batch, grants=[grant(5, "alice", "OTHER")], now=T0))
    with pytest.raises(SeriesDuplicate) as err:
        await db.run(
            partial(
                provider.issue_batch,
                grants=[grant(6, "dora", "OTHER"), grant(7, "dora", "OTHER")],
                now=T0,
            )
        )
    assert err.value.refused == {7: "series_duplicate"}


@pytest.mark.anyio
async def test_the_ledger_can_catch_refusals_inside_its_transaction(db: Database) -> None:
    await fill(db, "A", 10)
    await db.run(partial(provider.issue_batch, grants=[grant(1, "alice", "A")], now=T0))

    def ledger(tx: Transaction) -> list[int]:
        batch = [grant(2, "alice", "A"), grant(3, "bob", "A")]
        try:
            provider.issue_batch(tx, batch, T0)
        except SeriesDuplicate as exc:
            batch = [g for g in batch if g.id not in exc.refused]
        return [g.id for g, _ in zip(batch, provider.issue_batch(tx, batch, T0), strict=True)]

    assert await db.run(ledger) == [3]


@pytest.mark.anyio
async def test_exhausted_pool_writes_nothing(db: Database) -> None:
    await fill(db, "P", 3)
    with pytest.raises(PoolExhausted) as err:
        await db.run(partial(provider.issue_batch, grants=[grant(i) for i in range(1, 6)], now=T0))
    assert (err.value.pool, err.value.available, err.value.needed) == ("P", 3, 5)
    assert await db.run(partial(provider.available, options={"pool": "P"})) == 3
    with pytest.raises(PoolExhausted):
        await db.run(partial(provider.issue_batch, grants=[grant(9, pool="NOPE")], now=T0))
    assert await db.run(partial(provider.available, options={"pool": "NOPE"})) == 0


@pytest.mark.anyio
async def test_expired_codes_are_not_handed_out(db: Database) -> None:
    await fill(db, "P", 2, expires_at=T0 + 10)
    await fill(db, "P", 1)
    issued = await db.run(partial(provider.issue_batch, grants=[grant(1)], now=T0 + 20))
    assert issued[0].expires_at is None
    with pytest.raises(PoolExhausted):
        await db.run(partial(provider.issue_batch, grants=[grant(2)], now=T0 + 20))


@pytest.mark.anyio
async def test_rolled_back_allocation_leaves_no_code_assigned(db: Database) -> None:
    await fill(db, "P", 30_000)

    class Crash(Exception):
        pass

    def allocate_then_fail(tx: Transaction) -> None:
        for start in range(1, 20_001, 1000):
            provider.issue_batch(tx, [grant(i) for i in range(start, start + 1000)], T0)
        raise Crash

    with pytest.raises(Crash):
        await db.run(allocate_then_fail)
    row = await db.fetchone(
        "SELECT count(*) FROM codes WHERE state <> 'available' OR grant_id IS NOT NULL"
    )
    assert row is not None and row[0] == 0
    assert await db.run(partial(provider.available, options={"pool": "P"})) == 30_000
    assert await outbox(db, "codepool.low") == []


@pytest.mark.anyio
async def test_revoke_sync_and_report(db: Database) -> None:
    await fill(db, "P", 10)
    grants = [grant(i, campaign="xmas") for i in range(1, 5)]
    issued = await db.run(partial(provider.issue_batch, grants=grants, now=T0))
    await db.run(partial(provider.revoke_sync, grant=grants[0]))
    row = await db.fetchone("SELECT state FROM codes WHERE code = ?", (issued[0].code,))
    assert row is not None and row[0] == "revoked"
    await db.execute("UPDATE codes SET state = 'redeemed' WHERE code = ?", (issued[1].code,))
    report = await db.run(partial(codes_report, campaign_id="xmas"), write=False)
    assert report == {"issued_codes": 4, "redemptions": 1, "redemption_rate": 0.25}
    assert await db.run(partial(codes_report, campaign_id="none"), write=False) == {}


async def _take(db: Database, first_id: int, n: int) -> None:
    grants = [grant(i) for i in range(first_id, first_id + n)]
    await db.run(partial(provider.issue_batch, grants=grants, now=T0))


@pytest.mark.anyio
async def test_low_stock_alert_fires_once_and_rearms(db: Database) -> None:
    await db.run(partial(configure_pool, name="P", now=T0, low_absolute=10))
    await fill(db, "P", 30)
    await _take(db, 1, 15)  # 15 left: above
    assert await outbox(db, "codepool.low") == []
    await _take(db, 100, 6)  # 9 left: drained below -> one alert
    alerts = await outbox(db, "codepool.low")
    assert len(alerts) == 1
    assert json.loads(alerts[0]["payload"])["available"] == 9
    assert json.loads(alerts[0]["payload"])["threshold"] == 10
    await _take(db, 200, 5)  # drained further: no new alert
    assert len(await outbox(db, "codepool.low")) == 1
    await fill(db, "P", 20)  # replenished above: re-armed
    pool = await db.fetchone("SELECT available, low_alerted FROM code_pools WHERE name = 'P'")
    assert pool is not None and tuple(pool) == (24, 0)
    await _take(db, 300, 10)  # 14 left: above, nothing
    assert len(await outbox(db, "codepool.low")) == 1
    await _take(db, 400, 5)  # 9 left: crossing again -> one more
    alerts = await outbox(db, "codepool.low")
    assert len(alerts) == 2 and json.loads(alerts[1]["payload"])["available"] == 9


@pytest.mark.anyio
async def test_percentage_threshold_and_drain_by_revocation(db: Database) -> None:
    await db.run(partial(configure_pool, name="P", now=T0, low_percent=20))
    await fill(db, "P", 50)  # threshold: 10
    await _take(db, 1, 39)  # 11 left
    assert await outbox(db, "codepool.low") == []
    await db.run(partial(revoke_unassigned, pool_name="P", now=T0))
    alerts = await outbox(db, "codepool.low")
    assert len(alerts) == 1 and json.loads(alerts[0]["payload"])["available"] == 0


@pytest.mark.anyio
async def test_empty_pool_alerts_without_thresholds(db: Database) -> None:
    await fill(db, "P", 3)
    await _take(db, 1, 2)
    assert await outbox(db, "codepool.low") == []
    await _take(db, 10, 1)
    assert len(await outbox(db, "codepool.low")) == 1
