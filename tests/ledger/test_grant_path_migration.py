"""Migration 0013 (the grant path) carries a database of the previous release forward.

The database is built by migrations 0001-0009 and filled the way the previous grant
path filled it (grants of a finished run with their per-customer counters, wallet
transactions and balances, a reservation of a provider outside the database, a
failed grant); after the migration the same facts read the same, and the next run
grants on top of them: nobody past the per-customer cap, every counter exact.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import anyio

from promod.campaigns.spec import load_spec
from promod.ledger.grants import GrantJob, grant_batch
from promod.rewards.wallet import WalletPoints
from promod.store.database import MIGRATIONS_DIR, Database, latest_version, migrate_sync
from promod.store.seam import Transaction
from tests.support.data import wallet_spec

NOW = 1_796_000_000.0  # 2026-12-01
DAY = "2026-12-01"


def _old_database(tmp_path: Path) -> Path:
    old = tmp_path / "migrations"
    old.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if int(path.name[:4]) <= 9:
            shutil.copy(path, old / path.name)
    db = tmp_path / "promod.db"
    assert migrate_sync(db, old) == list(range(1, 10))
    return db


def _fill(db: Path, spec_json: str) -> None:
    """What the previous release wrote for run 1 of 'winback' (per_customer = 1)."""
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO campaigns (id, version, state, spec, created_at, updated_at)"
            " VALUES ('winback', 1, 'running', ?, ?, ?)",
            (spec_json, NOW, NOW),
        )
        conn.execute(
            "INSERT INTO campaign_versions (campaign_id, version, spec, applied_at)"
            " VALUES ('winback', 1, ?, ?)",
            (spec_json, NOW),
        )
        conn.execute(
            "INSERT INTO runs (id, campaign_id, seq, version, state, as_of, started_at,"
            " finished_at, seed, targeted) VALUES (1, 'winback', 1, 1, 'completed', ?, ?, ?, 7, 4)",
            (NOW, NOW, NOW),
        )
        conn.executemany(
            "INSERT INTO run_targets (run_id, rank, customer_id, due_at, status, reason,"
            " decided_at) VALUES (1, ?, ?, ?, ?, ?, ?)",
            [
                (0, "a", NOW, "granted", None, NOW),
                (1, "b", NOW, "granted", None, NOW),
                (2, "c", NOW, "granted", None, NOW),
                (3, "d", NOW, "refused", "issue_failed", NOW),
            ],
        )
        booked = json.dumps(
            [["campaign:winback", "lifetime"], ["campaign:winback", DAY]], separators=(",", ":")
        )
        conn.executemany(
            "INSERT INTO grants (id, campaign_id, run_id, customer_id, provider, amount_minor,"
            " value_minor, currency, state, day, created_at, issued_at, next_attempt_at,"
            " counters) VALUES (?, 'winback', 1, ?, ?, 500, 500, 'EUR', ?, ?, ?, ?, ?, ?)",
            [
                (1, "a", "wallet_points", "issued", DAY, NOW, NOW, None, booked),
                (2, "b", "wallet_points", "issued", DAY, NOW, NOW, None, booked),
                (3, "c", "partner", "reserved", DAY, NOW, None, NOW, booked),
                (4, "d", "partner", "failed", DAY, NOW, None, None, booked),
            ],
        )
        conn.executemany(
            "INSERT INTO customer_caps (campaign_id, customer_id, grants, max_grants)"
            " VALUES ('winback', ?, ?, 1)",
            [("a", 1), ("b", 1), ("c", 1), ("d", 0)],
        )
        conn.executemany(
            "INSERT INTO wallet_transactions (customer_id, points, grant_id, reason, created_at)"
            " VALUES (?, 500, ?, 'campaign:winback', ?)",
            [("a", 1, NOW), ("b", 2, NOW)],
        )
        conn.executemany(
            "INSERT INTO cap_counters (scope, period, count, spend, customers)"
            " VALUES ('campaign:winback', ?, 3, 1500, 3)",
            [("lifetime",), (DAY,)],
        )


def test_the_grant_path_migration_keeps_the_facts_and_grants_on_top(tmp_path: Path) -> None:
    spec = load_spec(
        wallet_spec(caps='budget = "100.00"\nper_customer = 1'), "toml", providers={"wallet_points"}
    )
    db = _old_database(tmp_path)
    _fill(db, json.dumps(spec.to_dict()))
    assert migrate_sync(db) == list(range(10, latest_version() + 1))

    with sqlite3.connect(db) as conn:
        # The per-customer counts are the live grants (the failed one counts for nobody).
        assert conn.execute(
            "SELECT customer_id, grants, max_grants FROM customer_caps ORDER BY customer_id"
        ).fetchall() == [("a", 1, 1), ("b", 1, 1), ("c", 1, 1)]
        assert conn.execute(
            "SELECT customer_id, points FROM wallet_balances ORDER BY customer_id"
        ).fetchall() == [("a", 500), ("b", 500)]
        # Only the reservation still being issued keeps the counters it booked.
        assert conn.execute(
            "SELECT id FROM grants WHERE counters IS NOT NULL ORDER BY id"
        ).fetchall() == [(3,)]
        assert conn.execute("SELECT count(*) FROM grants").fetchone() == (4,)
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        # The next run of the campaign: a, b, c hold their one grant already.
        conn.execute(
            "INSERT INTO runs (id, campaign_id, seq, version, state, as_of, started_at, seed,"
            " targeted) VALUES (2, 'winback', 2, 1, 'running', ?, ?, 8, 5)",
            (NOW, NOW),
        )
        conn.executemany(
            "INSERT INTO run_targets (run_id, rank, customer_id, due_at, status)"
            " VALUES (2, ?, ?, ?, 'pending')",
            [(i, cid, NOW) for i, cid in enumerate(["a", "b", "c", "d", "e"])],
        )

    async def next_run() -> None:
        database = await Database.open(db)
        try:

            def work(tx: Transaction) -> int:
                job = GrantJob(
                    campaign_id="winback",
                    run_id=2,
                    spec=spec,
                    providers={"wallet_points": WalletPoints()},
                )
                outcome = grant_batch(tx, job, NOW + 60)
                assert dict(outcome.refused) == {"per_customer": 3}
                return outcome.granted

            assert await database.run(work) == 2
        finally:
            await database.close()

    anyio.run(next_run)
    with sqlite3.connect(db) as conn:
        assert conn.execute(
            "SELECT customer_id, status, reason FROM run_targets WHERE run_id = 2 ORDER BY rank"
        ).fetchall() == [
            ("a", "refused", "per_customer"),
            ("b", "refused", "per_customer"),
            ("c", "refused", "per_customer"),
            ("d", "granted", None),
            ("e", "granted", None),
        ]
        assert conn.execute(
            "SELECT customer_id, points FROM wallet_balances ORDER BY customer_id"
        ).fetchall() == [("a", 500), ("b", 500), ("d", 500), ("e", 500)]
        assert conn.execute(
            "SELECT count, spend, customers FROM cap_counters WHERE period = 'lifetime'"
        ).fetchone() == (5, 2500, 5)
        # Events for the new grants, one each.
        assert conn.execute(
            "SELECT count(*) FROM outbox WHERE type = 'reward.granted'"
        ).fetchone() == (2,)
