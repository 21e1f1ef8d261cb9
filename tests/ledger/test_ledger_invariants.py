"""The cap ledger under random caps and concurrent, replayed and rolled-back grant attempts.

Whatever the interleaving, spend never passes any cap and no customer is granted
twice in a run; and the database itself refuses a write that would pass a cap.
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promod.campaigns import store
from promod.campaigns.runs import create_run_sync
from promod.campaigns.spec import load_spec
from promod.ledger.grants import GrantJob, grant_batch
from promod.rewards.coupon import Coupon
from promod.rewards.wallet import WalletPoints
from promod.store.database import Database
from tests.support.data import seed_customers, wallet_spec

NOW = 1_796_000_000.0  # 2026-12-01
PROVIDERS = {"wallet_points": WalletPoints(), "coupon": Coupon()}


class Crash(Exception):
    """Raised after a batch to roll its transaction back, as a crash before commit would."""


def _caps_text(caps: dict[str, object]) -> str:
    lines = []
    for key, value in caps.items():
        lines.append(f'{key} = "{value}"' if isinstance(value, str) else f"{key} = {value}")
    return "\n".join(lines)


async def _scenario(
    root: Path,
    customers: int,
    caps: dict[str, object],
    provider_budget: int | None,
    frequency: tuple[int, int] | None,
    workers: int,
    batch: int,
    crash_every: int,
) -> None:
    path = root / "promod.db"
    db = await Database.open(path)
    other = await Database.open(path)  # a second connection: a second writer
    try:
        seed_customers(path, [f"c{i}" for i in range(customers)])
        spec = load_spec(wallet_spec(caps=_caps_text(caps)), "toml", providers=set(PROVIDERS))
        await store.apply(db, spec, by="test", now=NOW)
        await store.launch(db, spec.id, now=NOW, pilot=None)

        def make_run(conn: sqlite3.Connection) -> int:
            return create_run_sync(conn, spec.id, 1, spec, now=NOW)

        run_id = await db.run_sync(make_run)
        job = GrantJob(
            campaign_id=spec.id,
            run_id=run_id,
            spec=spec,
            providers=PROVIDERS,
            frequency=frequency,
            provider_lifetime={"wallet_points": provider_budget},
            batch_size=batch,
        )
        attempts = 0

        async def worker(database: Database, n: int) -> None:
            nonlocal attempts
            for i in range(40):
                attempts += 1
                crash = crash_every and (attempts % crash_every == 0)
                # Days move on for some workers, so daily caps roll over mid-run.
                now = NOW + 86400 * ((n + i) % 3)

                def attempt(conn: sqlite3.Connection, now: float = now, crash: bool = crash) -> int:
                    outcome = grant_batch(conn, job, now)
                    if crash:
                        raise Crash
                    return outcome.processed

                try:
                    processed = await database.run_sync(attempt)
                except Crash:
                    continue
                if processed == 0 and i > 3:
                    return

        async with anyio.create_task_group() as tg:
            for n in range(workers):
                tg.start_soon(worker, db if n % 2 == 0 else other, n)
        # Replays: the whole run again, after everything was decided.
        for _ in range(3):
            await db.run_sync(lambda conn: grant_batch(conn, job, NOW + 3 * 86400))
    finally:
        await other.close()
        await db.close()
    _check_invariants(path, spec.id, caps, provider_budget, frequency)


def _check_invariants(
    path: Path,
    campaign_id: str,
    caps: dict[str, object],
    provider_budget: int | None,
    frequency: tuple[int, int] | None,
) -> None:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT customer_id, value_minor, day FROM grants WHERE campaign_id = ?"
            " AND state != 'failed'",
            (campaign_id,),
        ).fetchall()
        customers = [r[0] for r in rows]
        assert len(customers) == len(set(customers)), "a customer was granted twice in a run"
        spend = sum(r[1] for r in rows)
        per_day: dict[str, list[int]] = {}
        for _cid, value, day in rows:
            per_day.setdefault(day, []).append(value)
        if "budget" in caps:
            assert spend <= int(str(caps["budget"]).replace(".", ""))
        if "count" in caps:
            assert len(rows) <= int(caps["count"])  # type: ignore[call-overload]
        if "audience" in caps:
            assert len(set(customers)) <= int(caps["audience"])  # type: ignore[call-overload]
        for values in per_day.values():
            if "daily_count" in caps:
                assert len(values) <= int(caps["daily_count"])  # type: ignore[call-overload]
            if "daily_budget" in caps:
                assert sum(values) <= int(str(caps["daily_budget"]).replace(".", ""))
        if provider_budget is not None:
            assert spend <= provider_budget
        if frequency is not None:
            assert all(customers.count(c) <= frequency[0] for c in set(customers))
        # The wallet holds exactly what the grants say, once each.
        (points,) = conn.execute(
            "SELECT coalesce(sum(points), 0) FROM wallet_transactions"
        ).fetchone()
        assert points == 500 * len(rows)
        # Every target decided at most once, and every grant matches a granted target.
        (granted_targets,) = conn.execute(
            "SELECT count(*) FROM run_targets WHERE status = 'granted'"
        ).fetchone()
        assert granted_targets == len(rows)


caps_strategy = st.fixed_dictionaries(
    {},
    optional={
        "audience": st.integers(1, 60),
        "count": st.integers(1, 60),
        "budget": st.integers(1, 40).map(lambda n: f"{n * 5}.00"),
        "daily_count": st.integers(1, 30),
        "daily_budget": st.integers(1, 20).map(lambda n: f"{n * 5}.00"),
        "per_customer": st.just(1),
    },
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    customers=st.integers(0, 80),
    caps=caps_strategy,
    provider_budget=st.one_of(st.none(), st.integers(1, 30).map(lambda n: n * 500)),
    frequency=st.one_of(st.none(), st.just((1, 30))),
    workers=st.integers(1, 6),
    batch=st.integers(1, 25),
    crash_every=st.sampled_from([0, 2, 3, 5]),
)
def test_spend_never_exceeds_a_cap_and_nobody_is_granted_twice(
    customers: int,
    caps: dict[str, object],
    provider_budget: int | None,
    frequency: tuple[int, int] | None,
    workers: int,
    batch: int,
    crash_every: int,
) -> None:
    with tempfile.TemporaryDirectory(prefix="pmledger") as root:
        anyio.run(
            _scenario,
            Path(root),
            customers,
            caps,
            provider_budget,
            frequency,
            workers,
            batch,
            crash_every,
        )


def test_the_database_refuses_a_write_past_a_cap(tmp_path: Path) -> None:
    async def main() -> None:
        db = await Database.open(tmp_path / "p.db")
        await db.close()

    anyio.run(main)
    with sqlite3.connect(tmp_path / "p.db") as conn:
        conn.execute(
            "INSERT INTO cap_counters (scope, period, count, spend, max_spend)"
            " VALUES ('campaign:x', 'lifetime', 1, 900, 1000)"
        )
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("UPDATE cap_counters SET spend = spend + 500 WHERE scope = 'campaign:x'")
        conn.execute(
            "INSERT INTO customer_caps (campaign_id, customer_id, grants, max_grants)"
            " VALUES ('x', 'c1', 1, 1)"
        )
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("UPDATE customer_caps SET grants = grants + 1")
