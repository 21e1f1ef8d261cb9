"""Campaign coupon codes (the ``coupon`` provider): redeemable by each grantee, once per grant."""

from __future__ import annotations

from collections import Counter

import anyio
import pytest

from promod.codepool.redeem import RedemptionResult, redeem
from promod.codepool.store import codes_report
from promod.config import FraudConfig
from promod.rewards.holdings import REWARD_STATES, customer_rewards_sync
from promod.store.database import Database
from tests.codepool.conftest import FRAUD, T0

SPEC = '{"id": "welcome", "reward": {"provider": "coupon", "code": "WELCOME10"}}'


async def coupon_grants(db: Database, *grants: tuple[int, str], code: str = "WELCOME10") -> None:
    """Issued coupon grants ``(grant id, customer)``, one run each, as the ledger writes them."""
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT OR IGNORE INTO campaigns (id, version, state, spec, created_at, updated_at)"
            " VALUES ('welcome', 1, 'running', ?, ?, ?)",
            (SPEC, T0, T0),
        )
        await conn.execute(
            "INSERT OR IGNORE INTO campaign_versions (campaign_id, version, spec, applied_at)"
            " VALUES ('welcome', 1, ?, ?)",
            (SPEC, T0),
        )
        for gid, customer in grants:
            await conn.execute(
                "INSERT INTO runs (id, campaign_id, seq, version, state, as_of, started_at, seed)"
                " VALUES (?, 'welcome', ?, 1, 'running', ?, ?, 1)",
                (gid, gid, T0, T0),
            )
            await conn.execute(
                "INSERT INTO grants (id, campaign_id, run_id, customer_id, provider,"
                " value_minor, currency, state, day, created_at, issued_at, code)"
                " VALUES (?, 'welcome', ?, ?, 'coupon', 1000, 'EUR', 'issued', '2026-09-21',"
                " ?, ?, ?)",
                (gid, gid, customer, T0 + gid, T0 + gid, code),
            )


async def attempt(
    db: Database,
    customer: str,
    code: str = "WELCOME10",
    *,
    ip: str = "192.0.2.7",
    fraud: FraudConfig = FRAUD,
) -> tuple[bool, str | None]:
    result = await redeem(db, code, customer, ip, fraud, T0 + 100)
    return result.redeemed, result.reason


@pytest.mark.anyio
async def test_each_grantee_redeems_the_shared_code_once_per_grant(db: Database) -> None:
    await coupon_grants(db, (1, "alice"), (2, "bob"), (3, "bob"))
    assert await attempt(db, "alice") == (True, None)
    assert await attempt(db, "alice") == (False, "already_redeemed")
    # Granted twice (two runs), redeemable twice.
    assert await attempt(db, "bob") == (True, None)
    assert await attempt(db, "bob") == (True, None)
    assert await attempt(db, "bob") == (False, "already_redeemed")
    # Someone it was never granted to, or another code, learns nothing.
    assert await attempt(db, "mallory") == (False, "invalid_code")
    assert await attempt(db, "alice", code="WELCOME20") == (False, "invalid_code")
    rows = await db.fetchall(
        "SELECT grant_id, customer_id, campaign_id FROM coupon_redemptions ORDER BY grant_id"
    )
    assert [tuple(r) for r in rows] == [
        (1, "alice", "welcome"),
        (2, "bob", "welcome"),
        (3, "bob", "welcome"),
    ]


@pytest.mark.anyio
async def test_concurrent_redemptions_of_one_coupon_grant_give_exactly_one_success(
    db: Database,
) -> None:
    await coupon_grants(db, (1, "alice"))
    results: list[RedemptionResult] = []

    async def one(i: int) -> None:
        results.append(await redeem(db, "WELCOME10", "alice", f"10.0.0.{i}", FRAUD, T0 + 1))

    async with anyio.create_task_group() as tg:
        for i in range(30):
            tg.start_soon(one, i)
    outcome = Counter((r.redeemed, r.reason) for r in results)
    assert outcome == {(True, None): 1, (False, "already_redeemed"): 29}


@pytest.mark.anyio
async def test_coupon_redemptions_are_under_the_fraud_limits(db: Database) -> None:
    await coupon_grants(db, *((i, "alice") for i in range(1, 6)))
    strict = FraudConfig(
        redemptions_per_ip_per_hour=1000,
        redemptions_per_customer_per_hour=2,
        failed_redemptions_per_ip_per_hour=2,
        block_for=3600.0,
    )
    assert await attempt(db, "alice", fraud=strict) == (True, None)
    assert await attempt(db, "alice", fraud=strict) == (True, None)
    assert await attempt(db, "alice", fraud=strict) == (False, "rate_limited")
    # Guessing the code for customers it was not granted to blocks the source.
    assert await attempt(db, "m1", ip="198.51.100.1", fraud=strict) == (False, "invalid_code")
    assert await attempt(db, "m2", ip="198.51.100.1", fraud=strict) == (False, "invalid_code")
    assert await attempt(db, "m3", ip="198.51.100.1", fraud=strict) == (False, "blocked")


@pytest.mark.anyio
async def test_an_expired_coupon_grant_is_not_redeemable(db: Database) -> None:
    await coupon_grants(db, (1, "alice"))
    await db.execute("UPDATE grants SET expires_at = ? WHERE id = 1", (T0 + 50,))
    assert await attempt(db, "alice") == (False, "expired")


@pytest.mark.anyio
async def test_coupon_grants_and_redemptions_are_in_the_campaign_figures(db: Database) -> None:
    await coupon_grants(db, (1, "alice"), (2, "bob"), (3, "carol"), (4, "dave"))
    assert await db.run(lambda tx: codes_report(tx, "welcome"), write=False) == {
        "issued_codes": 4,
        "redemptions": 0,
        "redemption_rate": 0.0,
    }
    assert await attempt(db, "alice") == (True, None)
    assert await attempt(db, "bob") == (True, None)
    assert await db.run(lambda tx: codes_report(tx, "welcome"), write=False) == {
        "issued_codes": 4,
        "redemptions": 2,
        "redemption_rate": 0.5,
    }
    held = await db.run_sync(
        lambda conn: customer_rewards_sync(conn, "alice", now=T0 + 200, states=REWARD_STATES),
        write=False,
    )
    assert [(r.grant_id, r.state, r.redeemed_at) for r in held] == [(1, "redeemed", T0 + 100)]
    usable = await db.run_sync(
        lambda conn: customer_rewards_sync(conn, "alice", now=T0 + 200), write=False
    )
    assert usable == []
