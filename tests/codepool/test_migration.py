"""Migration 0010 carries existing pools forward; allocation follows each pool's cursor."""

from __future__ import annotations

import shutil
import sqlite3
from functools import partial
from pathlib import Path

import pytest

from promod.codepool.provider import CodePoolProvider, PoolExhausted
from promod.store.database import MIGRATIONS_DIR, Database, migrate_sync
from tests.codepool.conftest import T0, fill, grant

pytestmark = pytest.mark.anyio

provider = CodePoolProvider()
CURSOR = "0010_codepool_cursor.sql"


def _old_schema(tmp_path: Path) -> Path:
    """A database made by the migrations before the allocation cursor."""
    old = tmp_path / "migrations"
    old.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if path.name >= CURSOR:
            break
        shutil.copy(path, old / path.name)
    db = tmp_path / "promod.db"
    migrate_sync(db, old)
    return db


def _seed(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO code_pools (id, name, series, available, loaded, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (1, "P", "P", 5, 10, T0, T0),
                (2, "Q", "Q", 0, 2, T0, T0),
                (3, "E", "E", 0, 0, T0, T0),
            ],
        )
        rows = []
        for i in range(1, 13):
            pool = 1 if i <= 10 else 2
            state = "available"
            customer = grant_id = None
            if i in (1, 2, 3, 11, 12):
                state, customer, grant_id = "assigned", f"old{i}", 1000 + i
            elif i in (4, 6):
                state = "revoked"
            rows.append(
                (i, pool, "P" if pool == 1 else "Q", f"CODE{i:04d}", state, customer, grant_id)
            )
        conn.executemany(
            "INSERT INTO codes (id, pool_id, series, code, state, customer_id, grant_id,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 1.0)",
            rows,
        )


async def test_existing_pools_carry_forward(tmp_path: Path) -> None:
    path = _old_schema(tmp_path)
    _seed(path)
    db = await Database.open(path)
    try:
        cursors = await db.fetchall("SELECT name, alloc_after FROM code_pools ORDER BY name")
        # P: before its first available code (5); Q: past its last; E: empty.
        assert [tuple(r) for r in cursors] == [("E", 0), ("P", 4), ("Q", 12)]
        indexes = {
            r[0] for r in await db.fetchall("SELECT name FROM sqlite_master WHERE type = 'index'")
        }
        assert "codes_pool" in indexes and "codes_available" not in indexes

        issued = await db.run(
            partial(provider.issue_batch, grants=[grant(i) for i in range(1, 6)], now=T0)
        )
        assert [r.code for r in issued] == [
            "CODE0005",
            "CODE0007",
            "CODE0008",
            "CODE0009",
            "CODE0010",
        ]
        with pytest.raises(PoolExhausted):
            await db.run(partial(provider.issue_batch, grants=[grant(9)], now=T0))
        with pytest.raises(PoolExhausted):
            await db.run(partial(provider.issue_batch, grants=[grant(9, pool="Q")], now=T0))
        old = await db.fetchall(
            "SELECT id, state, grant_id FROM codes WHERE id IN (1, 2, 3, 4, 6, 11, 12) ORDER BY id"
        )
        assert [tuple(r) for r in old] == [
            (1, "assigned", 1001),
            (2, "assigned", 1002),
            (3, "assigned", 1003),
            (4, "revoked", None),
            (6, "revoked", None),
            (11, "assigned", 1011),
            (12, "assigned", 1012),
        ]
        assert await db.run(partial(provider.available, options={"pool": "P"})) == 0
    finally:
        await db.close()


async def test_allocation_crosses_other_pools_and_later_loads(db: Database) -> None:
    await fill(db, "A", 5)
    await fill(db, "B", 5)
    await fill(db, "A", 5)
    issued = await db.run(
        partial(provider.issue_batch, grants=[grant(i, pool="A") for i in range(1, 11)], now=T0)
    )
    rows = await db.fetchall("SELECT pool_id, state FROM codes ORDER BY id")
    assert [tuple(r) for r in rows] == [(1, "assigned")] * 5 + [(2, "available")] * 5 + [
        (1, "assigned")
    ] * 5
    assert len({r.code for r in issued}) == 10
    cursor = await db.fetchone("SELECT alloc_after FROM code_pools WHERE name = 'A'")
    assert cursor is not None and cursor[0] == 15
    await fill(db, "A", 2)
    more = await db.run(
        partial(provider.issue_batch, grants=[grant(i, pool="A") for i in (11, 12)], now=T0)
    )
    assert [r.reference for r in more] == ["code:16", "code:17"]
    b = await db.run(partial(provider.issue_batch, grants=[grant(13, pool="B")], now=T0))
    assert b[0].reference == "code:6"
