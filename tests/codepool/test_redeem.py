"""Redemption: atomicity, ownership, reasons that reveal nothing, fraud limits."""

from __future__ import annotations

import json
from collections import Counter
from functools import partial

import anyio
import pytest

from promod.codepool.provider import CodePoolProvider
from promod.codepool.redeem import RedemptionResult, redeem, source_of
from promod.config import FraudConfig
from promod.store.database import Database
from tests.codepool.conftest import FRAUD, T0, fill, grant, outbox

provider = CodePoolProvider()


async def give(db: Database, customer: str, gid: int, pool: str = "P") -> str:
    issued = await db.run(
        partial(provider.issue_batch, grants=[grant(gid, customer, pool)], now=T0)
    )
    code = issued[0].code
    assert code is not None
    return code


@pytest.mark.anyio
async def test_50_concurrent_redemptions_give_exactly_one_success(db: Database) -> None:
    await fill(db, "P", 5)
    code = await give(db, "alice", 1)
    results: list[RedemptionResult] = []

    async def attempt(i: int) -> None:
        results.append(await redeem(db, code, "alice", f"10.0.0.{i}", FRAUD, T0 + 1))

    async with anyio.create_task_group() as tg:
        for i in range(50):
            tg.start_soon(attempt, i)
    outcome = Counter((r.redeemed, r.reason) for r in results)
    assert outcome == {(True, None): 1, (False, "already_redeemed"): 49}
    row = await db.fetchone("SELECT state, uses FROM codes WHERE code = ?", (code,))
    assert row is not None and tuple(row) == ("redeemed", 1)
    count = await db.fetchone("SELECT count(*) FROM code_redemptions")
    assert count is not None and count[0] == 1


@pytest.mark.anyio
async def test_reasons_and_no_disclosure(db: Database) -> None:
    await fill(db, "P", 5)
    await fill(db, "E", 5, expires_at=T0 + 100)
    mine = await give(db, "alice", 1)
    expiring = await give(db, "alice", 2, pool="E")
    unassigned = await db.fetchone("SELECT code FROM codes WHERE state = 'available' LIMIT 1")
    assert unassigned is not None

    async def r(code: str, customer: str = "alice", now: float = T0 + 1) -> tuple[bool, str | None]:
        result = await redeem(db, code, customer, "192.0.2.1", FRAUD, now)
        return result.redeemed, result.reason

    # Another customer's code, an unassigned code and a made-up one look the same.
    assert await r(mine, "mallory") == (False, "invalid_code")
    assert await r(unassigned[0], "mallory") == (False, "invalid_code")
    assert await r("NO-SUCH-CODE", "mallory") == (False, "invalid_code")
    assert await r("") == (False, "invalid_code")
    assert await r(expiring, now=T0 + 200) == (False, "expired")
    assert await r(f"  {mine} ") == (True, None)
    assert await r(mine) == (False, "already_redeemed")
    revoked = await give(db, "bob", 3)
    await db.execute("UPDATE codes SET state = 'revoked' WHERE code = ?", (revoked,))
    assert await r(revoked, "bob") == (False, "revoked")
    with pytest.raises(ValueError):
        await redeem(db, mine, "alice", "not-an-ip", FRAUD, T0)


@pytest.mark.anyio
async def test_shared_coupon_within_its_limit(db: Database) -> None:
    await fill(db, "SHARED", 1, max_uses=3)
    row = await db.fetchone("SELECT code FROM codes")
    assert row is not None
    code = row[0]
    # Shared coupons are never allocated to grants.
    assert await db.run(partial(provider.available, options={"pool": "SHARED"})) == 0
    results = [
        (await redeem(db, code, c, "192.0.2.7", FRAUD, T0)).to_dict()
        for c in ("a", "a", "b", "c", "d")
    ]
    assert [(x["redeemed"], x["reason"]) for x in results] == [
        (True, None),
        (False, "already_redeemed"),
        (True, None),
        (True, None),
        (False, "exhausted"),
    ]


def test_sources() -> None:
    assert source_of("203.0.113.9") == "203.0.113.9"
    assert source_of("2001:db8::1") == source_of("2001:db8::ffff") == "2001:db8::/64"
    assert source_of("::ffff:192.0.2.1") == "192.0.2.1"


@pytest.mark.anyio
async def test_guessing_from_several_ips_blocks_only_the_guessers(db: Database) -> None:
    await fill(db, "P", 5)
    fraud = FraudConfig(
        redemptions_per_ip_per_hour=100,
        redemptions_per_customer_per_hour=100,
        failed_redemptions_per_ip_per_hour=5,
        block_for="10m",
    )
    codes = {f"honest{i}": await give(db, f"honest{i}", 100 + i) for i in range(3)}
    results: dict[str, list[str | None]] = {}

    async def guesser(ip: str) -> None:
        for n in range(8):
            res = await redeem(db, f"GUESS{n}", f"bot-{ip}-{n}", ip, fraud, T0)
            results.setdefault(ip, []).append(res.reason)

    async def honest(ip: str, customer: str) -> None:
        res = await redeem(db, codes[customer], customer, ip, fraud, T0)
        results.setdefault(ip, []).append(res.reason if not res.redeemed else "ok")

    async with anyio.create_task_group() as tg:
        for i in range(4):
            tg.start_soon(guesser, f"198.51.100.{i}")
        for i in range(3):
            tg.start_soon(honest, f"203.0.113.{i}", f"honest{i}")
    for i in range(4):
        assert results[f"198.51.100.{i}"] == ["invalid_code"] * 5 + ["blocked"] * 3
    for i in range(3):
        assert results[f"203.0.113.{i}"] == ["ok"]
    events = await outbox(db, "fraud.suspected")
    assert sorted(json.loads(e["payload"])["source"] for e in events) == [
        f"198.51.100.{i}" for i in range(4)
    ]
    assert all("GUESS" not in e["payload"] for e in events)
    # After the block ends, the failures already punished do not count again.
    after = await redeem(db, "GUESS9", "x", "198.51.100.0", fraud, T0 + 601)
    assert after.reason == "invalid_code"
    assert len(await outbox(db, "fraud.suspected")) == 4


@pytest.mark.anyio
async def test_rate_limits_per_ip_and_per_customer(db: Database) -> None:
    await fill(db, "P", 20)
    fraud = FraudConfig(
        redemptions_per_ip_per_hour=3,
        redemptions_per_customer_per_hour=2,
        failed_redemptions_per_ip_per_hour=100,
        block_for="1h",
    )
    reasons: list[str | None] = []

    async def attempt(customer: str, ip: str) -> None:
        reasons.append((await redeem(db, "NOPE", customer, ip, fraud, T0)).reason)

    # Per IP: five customers at once from one address -> three attempts get through.
    async with anyio.create_task_group() as tg:
        for i in range(5):
            tg.start_soon(attempt, f"u{i}", "192.0.2.50")
    assert Counter(reasons) == {"invalid_code": 3, "rate_limited": 2}
    # Per customer: one customer from four addresses -> two attempts get through.
    reasons.clear()
    async with anyio.create_task_group() as tg:
        for i in range(4):
            tg.start_soon(attempt, "carol", f"192.0.2.{60 + i}")
    assert Counter(reasons) == {"invalid_code": 2, "rate_limited": 2}
    # An hour later the window has moved on.
    later = await redeem(db, "NOPE", "carol", "192.0.2.50", fraud, T0 + 3601)
    assert later.reason == "invalid_code"
