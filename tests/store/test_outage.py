"""A full, read-only or failing disk under a real database on a small tmpfs."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import anyio
import pytest

from promod.ledger import killswitch
from promod.store.database import Database, reserve_path
from promod.store.health import StoreHealth, StoreMonitor, StoreUnavailable, outage_reason
from promod.testing import wait_until_async
from tests.support.disk import SmallDisk

BLOB = 2 * 1024 * 1024  # more than any slack SQLite keeps in its files


def insert_blob(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT INTO blobs (data) VALUES (?)", (bytes(BLOB),))


def insert_small(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT INTO blobs (data) VALUES (x'00')")


async def open_db(disk: SmallDisk) -> Database:
    db = await Database.open(disk.path / "promod.db")
    await db.run_sync(lambda conn: conn.execute("CREATE TABLE blobs (data BLOB)"))
    return db


async def count(db: Database) -> int:
    row = await db.fetchone("SELECT count(*) FROM blobs")
    assert row is not None
    return int(row[0])


@pytest.mark.anyio
async def test_a_write_on_a_full_disk_is_rolled_back_and_says_disk_full_with_path_and_free(
    small_disk: SmallDisk,
) -> None:
    db = await open_db(small_disk)
    try:
        assert reserve_path(db.path).stat().st_size == 4 * 1024 * 1024
        small_disk.fill()
        with pytest.raises(StoreUnavailable) as info:
            await db.run_sync(insert_blob)
        message = str(info.value)
        assert message.startswith(f"disk full: {db.path} (")
        assert message.endswith(" free)")
        assert info.value.free is not None and info.value.free < 4096
        assert db.health.available is False
        with pytest.raises(StoreUnavailable, match=r"^disk full"):
            async with db.transaction() as conn:
                await conn.execute("INSERT INTO blobs (data) VALUES (?)", (bytes(BLOB),))
        assert await count(db) == 0  # reads go on; nothing half-written
    finally:
        await db.close()


@pytest.mark.anyio
async def test_the_kill_switch_engages_on_a_full_disk_while_other_writes_wait(
    small_disk: SmallDisk,
) -> None:
    db = await open_db(small_disk)
    try:
        small_disk.fill()
        with pytest.raises(StoreUnavailable):
            await db.run_sync(insert_blob)
        # Ordinary writes are refused at once, leaving the reserve's room alone.
        with pytest.raises(StoreUnavailable):
            await db.run_sync(insert_small)
        assert reserve_path(db.path).exists()
        assert await killswitch.engage(db, by="alice", now=1.0) is True
        assert await killswitch.is_engaged(db)
        assert not reserve_path(db.path).exists()  # given up for it
        with pytest.raises(StoreUnavailable):
            await db.run_sync(insert_small)
        assert await count(db) == 0
    finally:
        await db.close()


@pytest.mark.anyio
async def test_the_monitor_alerts_once_and_writes_resume_by_themselves_once_there_is_space(
    small_disk: SmallDisk,
) -> None:
    db = await open_db(small_disk)
    alerts: list[StoreUnavailable] = []
    changes: list[str | None] = []

    async def alert(problem: StoreUnavailable) -> None:
        alerts.append(problem)

    monitor = StoreMonitor(
        db.health,
        db.reserve,
        alert=alert,
        probe=db.probe,
        on_change=lambda p: changes.append(None if p is None else p.reason),
        probe_initial=0.05,
        probe_max=0.2,
    )
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(monitor.run)
            small_disk.fill()
            with pytest.raises(StoreUnavailable):
                await db.run_sync(insert_blob)
            await wait_until_async(lambda: alerts, timeout=10, what="the alert")
            assert alerts[0].reason == "disk full"
            assert changes == ["disk full"]
            small_disk.free_up()
            await wait_until_async(lambda: db.health.available, timeout=10, what="recovery")
            assert changes == ["disk full", None]
            assert len(alerts) == 1
            assert reserve_path(db.path).stat().st_size == 4 * 1024 * 1024
            await db.run_sync(insert_blob)
            assert await count(db) == 1
            tg.cancel_scope.cancel()
    finally:
        await db.close()


def test_a_read_only_database_is_reported_as_read_only(tmp_path: Path) -> None:
    path = tmp_path / "promod.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.close()
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        with pytest.raises(sqlite3.OperationalError) as info:
            conn.execute("INSERT INTO t VALUES (1)")
    finally:
        conn.close()
    assert outage_reason(info.value) == "read-only"
    problem = StoreHealth(path).failed(info.value)
    assert str(problem).startswith(f"read-only: {path} (")
    assert outage_reason(OSError(errno.EROFS, "Read-only file system")) == "read-only"
    assert outage_reason(OSError(errno.EIO, "Input/output error")) == "I/O error"
    assert outage_reason(sqlite3.OperationalError("no such table: x")) is None


@pytest.mark.anyio
async def test_opening_on_a_full_disk_gives_up_the_reserve_and_starts_unavailable(
    small_disk: SmallDisk,
) -> None:
    db = await open_db(small_disk)
    await db.close()
    small_disk.fill()
    db = await Database.open(small_disk.path / "promod.db")
    try:
        assert db.health.available is False
        assert db.health.describe()["reason"] == "disk full"
        assert await count(db) == 0  # reads work
        assert await killswitch.engage(db, by="alice", now=1.0) is True
    finally:
        await db.close()
