"""Tests for promod.store.database on real SQLite files."""

from __future__ import annotations

import functools
import os
import shutil
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from promod.store.database import (
    MIGRATIONS_DIR,
    Database,
    MigrationError,
    SchemaTooNew,
    backup_sync,
    check_sync,
    latest_version,
    migrate_sync,
    migrations,
    split_statements,
)
from promod.testing import wait_until_async


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "state" / "promod.db")
    try:
        yield database
    finally:
        await database.close()


def _user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def _tables(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        return {row[0] for row in rows}
    finally:
        conn.close()


def _migration_dir(tmp_path: Path, extra: dict[str, str]) -> Path:
    directory = tmp_path / "migrations"
    directory.mkdir()
    shutil.copy(MIGRATIONS_DIR / "0001_core.sql", directory / "0001_core.sql")
    for name, sql in extra.items():
        (directory / name).write_text(sql)
    return directory


def _audit_row() -> tuple[object, ...]:
    return ("2026-01-01T00:00:00Z", 0, 0, 1, "root", "admin", "kill.engage", "{}", "ok", None)


_INSERT_AUDIT = (
    "INSERT INTO audit_log (ts, uid, gid, pid, user, role, command, args, outcome, error) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


# --- opening and migrations -------------------------------------------------------------


@pytest.mark.anyio
async def test_open_creates_parent_dir_applies_core_schema_and_sets_pragmas(db: Database) -> None:
    assert db.path.parent.is_dir()
    assert await db.schema_version() == latest_version() >= 1
    assert {"meta", "audit_log"} <= _tables(db.path)
    assert (await db.fetchone("PRAGMA journal_mode"))[0] == "wal"  # type: ignore[index]
    assert (await db.fetchone("PRAGMA foreign_keys"))[0] == 1  # type: ignore[index]
    assert (await db.fetchone("PRAGMA busy_timeout"))[0] == 5000  # type: ignore[index]
    assert (await db.fetchone("PRAGMA synchronous"))[0] == 2  # type: ignore[index]
    await db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", ("a", "1"))
    row = await db.fetchone("SELECT key, value FROM meta")
    assert isinstance(row, sqlite3.Row)
    assert row["key"] == "a" and row["value"] == "1"


def test_default_migrations_are_sorted_and_named() -> None:
    found = migrations()
    assert [m.version for m in found] == list(range(1, len(found) + 1))
    assert found[0].name == "core"
    assert found[0].label == "0001_core"


def test_migrations_sorted_by_version_from_injected_directory(tmp_path: Path) -> None:
    directory = _migration_dir(
        tmp_path, {"0003_c.sql": "CREATE TABLE c (x);", "0002_b.sql": "CREATE TABLE b (x);"}
    )
    assert [m.label for m in migrations(directory)] == ["0001_core", "0002_b", "0003_c"]
    assert latest_version(directory) == 3


def test_migrations_refuse_gaps_and_bad_names(tmp_path: Path) -> None:
    gap = _migration_dir(tmp_path, {"0003_c.sql": "CREATE TABLE c (x);"})
    with pytest.raises(ValueError, match="0002 is missing"):
        migrations(gap)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "1_core.sql").write_text("CREATE TABLE x (y);")
    with pytest.raises(ValueError, match=r"0001_name\.sql"):
        migrations(bad)


def test_migrate_sync_applies_pending_once(tmp_path: Path) -> None:
    path = tmp_path / "promod.db"
    assert migrate_sync(path) == [m.version for m in migrations()]
    assert migrate_sync(path) == []
    assert _user_version(path) == latest_version()


def test_migrate_sync_applies_only_new_migrations(tmp_path: Path) -> None:
    path = tmp_path / "promod.db"
    directory = _migration_dir(tmp_path, {})
    assert migrate_sync(path, directory) == [1]
    (directory / "0002_more.sql").write_text("CREATE TABLE more (x INTEGER);")
    (directory / "0003_again.sql").write_text("INSERT INTO more VALUES (3);")
    assert migrate_sync(path, directory) == [2, 3]
    assert migrate_sync(path, directory) == []
    assert _user_version(path) == 3
    assert "more" in _tables(path)


def test_failing_migration_leaves_database_at_previous_version(tmp_path: Path) -> None:
    path = tmp_path / "promod.db"
    directory = _migration_dir(
        tmp_path,
        {
            "0002_broken.sql": (
                "CREATE TABLE half_done (x INTEGER);\n"
                "INSERT INTO half_done VALUES (1);\n"
                "INSERT INTO no_such_table VALUES (1);\n"
            )
        },
    )
    with pytest.raises(MigrationError, match="0002_broken failed: no such table"):
        migrate_sync(path, directory)
    assert _user_version(path) == 1
    assert "half_done" not in _tables(path)
    assert check_sync(path) == []

    (directory / "0002_broken.sql").write_text("CREATE TABLE half_done (x INTEGER);")
    assert migrate_sync(path, directory) == [2]
    assert "half_done" in _tables(path)


@pytest.mark.anyio
async def test_open_raises_when_a_migration_fails(tmp_path: Path) -> None:
    path = tmp_path / "promod.db"
    directory = _migration_dir(tmp_path, {"0002_broken.sql": "CREATE TABLE t (x);\nSELEC 1;"})
    with pytest.raises(MigrationError):
        await Database.open(path, migrations_dir=directory)
    assert _user_version(path) == 1


def test_migration_that_commits_itself_is_refused(tmp_path: Path) -> None:
    directory = _migration_dir(tmp_path, {"0002_commits.sql": "CREATE TABLE t (x);\nCOMMIT;"})
    with pytest.raises(MigrationError, match="must not contain BEGIN/COMMIT"):
        migrate_sync(tmp_path / "promod.db", directory)


def test_migration_leaving_foreign_key_violations_is_rolled_back(tmp_path: Path) -> None:
    directory = _migration_dir(
        tmp_path,
        {
            "0002_fk.sql": (
                "CREATE TABLE parent (id INTEGER PRIMARY KEY);\n"
                "CREATE TABLE child (id INTEGER PRIMARY KEY,"
                " parent_id INTEGER REFERENCES parent(id));\n"
                "INSERT INTO child VALUES (1, 42);\n"
            )
        },
    )
    path = tmp_path / "promod.db"
    with pytest.raises(MigrationError, match="foreign key"):
        migrate_sync(path, directory)
    assert _user_version(path) == 1
    assert "child" not in _tables(path)


def _make_too_new(path: Path) -> None:
    migrate_sync(path)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()


def test_migrate_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "promod.db"
    _make_too_new(path)
    with pytest.raises(SchemaTooNew) as caught:
        migrate_sync(path)
    known = latest_version()
    assert str(caught.value) == (
        f"database schema version 99 is newer than this promod (knows up to {known}); "
        "upgrade promod"
    )
    assert caught.value.found == 99 and caught.value.known == known
    assert _user_version(path) == 99


@pytest.mark.anyio
@pytest.mark.parametrize("migrate", [True, False])
async def test_open_refuses_a_newer_schema(tmp_path: Path, migrate: bool) -> None:
    path = tmp_path / "promod.db"
    _make_too_new(path)
    with pytest.raises(SchemaTooNew, match="upgrade promod"):
        await Database.open(path, migrate=migrate)


@pytest.mark.anyio
async def test_open_without_migrate_leaves_schema_alone(tmp_path: Path) -> None:
    async with await Database.open(tmp_path / "promod.db", migrate=False) as db:
        assert await db.schema_version() == 0
        assert await db.fetchall("SELECT name FROM sqlite_master") == []


def test_split_statements_keeps_triggers_strings_and_drops_comments() -> None:
    script = """
    -- a comment; with a semicolon
    CREATE TABLE t (x TEXT DEFAULT 'a;b');
    CREATE TRIGGER t_no_delete BEFORE DELETE ON t
    BEGIN
        SELECT RAISE(ABORT, 'no; never');
    END;
    INSERT INTO t VALUES ('x')
    """
    statements = split_statements(script)
    assert len(statements) == 3
    assert statements[0].endswith("DEFAULT 'a;b');")
    assert statements[1].startswith("CREATE TRIGGER") and statements[1].endswith("END;")
    assert statements[2] == "INSERT INTO t VALUES ('x')"


# --- transactions -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_transaction_commits(db: Database) -> None:
    async with db.transaction() as conn:
        await conn.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')")
        assert conn.in_transaction
    assert not db.conn.in_transaction
    assert await db.fetchall("SELECT value FROM meta WHERE key = 'k'") != []


@pytest.mark.anyio
async def test_exception_in_transaction_rolls_back(db: Database) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')")
            await db.execute("INSERT INTO meta (key, value) VALUES ('k2', 'v')")
            raise Boom
    assert not db.conn.in_transaction
    assert await db.fetchall("SELECT * FROM meta") == []


@pytest.mark.anyio
async def test_failed_statement_rolls_back_the_whole_transaction(db: Database) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')")
            await conn.execute("INSERT INTO meta (key, value) VALUES ('k', 'again')")
    assert await db.fetchall("SELECT * FROM meta") == []
    async with db.transaction() as conn:
        await conn.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')")
    assert len(await db.fetchall("SELECT * FROM meta")) == 1


@pytest.mark.anyio
async def test_cancelled_transaction_rolls_back(db: Database) -> None:
    with anyio.move_on_after(0.05):
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')")
            await anyio.sleep_forever()
    assert not db.conn.in_transaction
    assert await db.fetchall("SELECT * FROM meta") == []


@pytest.mark.anyio
async def test_concurrent_transactions_do_not_interleave(db: Database) -> None:
    await db.execute("INSERT INTO meta (key, value) VALUES ('counter', '0')")
    trace: list[tuple[str, int]] = []

    async def increment(i: int) -> None:
        async with db.transaction() as conn:
            trace.append(("begin", i))
            cursor = await conn.execute("SELECT value FROM meta WHERE key = 'counter'")
            row = await cursor.fetchone()
            await cursor.close()
            assert row is not None
            for _ in range(3):
                await anyio.sleep(0)
            await conn.execute(
                "UPDATE meta SET value = ? WHERE key = 'counter'", (str(int(row[0]) + 1),)
            )
            trace.append(("end", i))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(increment, i)

    row = await db.fetchone("SELECT value FROM meta WHERE key = 'counter'")
    assert row is not None and row["value"] == "20"
    assert len(trace) == 40
    for begin, end in zip(trace[::2], trace[1::2], strict=True):
        assert begin[0] == "begin" and end == ("end", begin[1])


@pytest.mark.anyio
async def test_other_tasks_do_not_see_or_join_an_open_transaction(db: Database) -> None:
    inside = anyio.Event()
    release = anyio.Event()
    seen: list[int] = []

    async def writer() -> None:
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO meta (key, value) VALUES ('k', 'uncommitted')")
            inside.set()
            await release.wait()
            raise RuntimeError("abandon")

    async def reader() -> None:
        await inside.wait()
        rows = await db.fetchall("SELECT * FROM meta")
        seen.append(len(rows))
        await db.execute("INSERT INTO meta (key, value) VALUES ('other', 'kept')")

    async def run_writer() -> None:
        with pytest.raises(RuntimeError, match="abandon"):
            await writer()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_writer)
            tg.start_soon(reader)
            await inside.wait()
            # The reader is queued behind the open transaction, not reading it.
            await wait_until_async(lambda: db._lock.statistics().tasks_waiting == 1)
            assert seen == []
            release.set()

    assert seen == [0]
    rows = await db.fetchall("SELECT key FROM meta")
    assert [row["key"] for row in rows] == ["other"]


@pytest.mark.anyio
async def test_database_helpers_inside_a_transaction_join_it(db: Database) -> None:
    with anyio.fail_after(2):
        async with db.transaction():
            await db.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')")
            assert await db.fetchone("SELECT value FROM meta WHERE key = 'k'") is not None
            with pytest.raises(RuntimeError, match="do not nest"):
                async with db.transaction():
                    pass
    assert len(await db.fetchall("SELECT * FROM meta")) == 1


# --- schema rules ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_audit_log_is_append_only(db: Database) -> None:
    await db.execute(_INSERT_AUDIT, _audit_row())
    await db.execute(_INSERT_AUDIT, _audit_row())
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        await db.execute("UPDATE audit_log SET outcome = 'refused' WHERE id = 1")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        await db.execute("DELETE FROM audit_log WHERE id = 1")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        await db.execute("DELETE FROM audit_log")
    rows = await db.fetchall("SELECT id, outcome FROM audit_log ORDER BY id")
    assert [(row["id"], row["outcome"]) for row in rows] == [(1, "ok"), (2, "ok")]
    indexes = await db.fetchall("PRAGMA index_list(audit_log)")
    assert "audit_log_ts" in {row["name"] for row in indexes}


@pytest.mark.anyio
async def test_foreign_keys_are_enforced(db: Database) -> None:
    await db.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    await db.execute("CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id REFERENCES parent(id))")
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        await db.execute("INSERT INTO child VALUES (1, 42)")


# --- backup and check ------------------------------------------------------------------

BATCH = 25


def _writer(path: Path, stop: threading.Event, committed: list[int]) -> None:
    conn = sqlite3.connect(path, isolation_level=None, timeout=5)
    try:
        batch = 0
        while not stop.is_set():
            batch += 1
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO rows (batch, payload) VALUES (?, ?)",
                [(batch, b"x" * 512) for _ in range(BATCH)],
            )
            conn.execute("COMMIT")
            committed.append(batch)
    finally:
        conn.close()


def test_backup_is_consistent_while_another_connection_writes(tmp_path: Path) -> None:
    src = tmp_path / "state" / "promod.db"
    migrate_sync(src)
    conn = sqlite3.connect(src)
    conn.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, batch INTEGER, payload BLOB)")
    conn.executemany(
        "INSERT INTO rows (batch, payload) VALUES (0, ?)", [(b"y" * 512,) for _ in range(4000)]
    )
    conn.commit()
    conn.close()

    stop = threading.Event()
    committed: list[int] = []
    thread = threading.Thread(target=_writer, args=(src, stop, committed))
    thread.start()
    copies: list[Path] = []
    try:
        while len(committed) < 3:
            stop.wait(0.001)
        for i in range(4):
            dest = tmp_path / "backups" / f"copy{i}.db"
            backup_sync(src, dest)
            copies.append(dest)
    finally:
        stop.set()
        thread.join()

    counts: list[int] = []
    for dest in copies:
        assert check_sync(dest) == []
        assert not dest.with_name(f".{dest.name}.partial").exists()
        copy = sqlite3.connect(dest)
        try:
            assert copy.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
            assert copy.execute("PRAGMA user_version").fetchone()[0] == latest_version()
            per_batch = copy.execute(
                "SELECT batch, COUNT(*) FROM rows WHERE batch > 0 GROUP BY batch"
            ).fetchall()
            assert all(n == BATCH for _, n in per_batch)
            batches = sorted(b for b, _ in per_batch)
            assert batches == list(range(1, len(batches) + 1))
            counts.append(len(batches))
        finally:
            copy.close()
    assert counts == sorted(counts)
    assert counts[0] >= 3
    assert len(committed) > counts[0]


def test_backup_overwrites_dest_and_is_never_world_readable(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    src = state / "promod.db"
    migrate_sync(src)
    src.chmod(0o644)  # a database left world-readable must not pass that on
    dest = tmp_path / "backup.db"
    dest.write_text("old")
    dest.chmod(0o644)
    old_umask = os.umask(0o022)
    try:
        backup_sync(src, dest)
    finally:
        os.umask(old_umask)
    assert check_sync(dest) == []
    assert dest.stat().st_mode & 0o777 == 0o600
    assert "audit_log" in _tables(dest)


def test_backup_is_0640_with_the_state_directorys_group_when_it_is_group_readable(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o750)
    src = state / "promod.db"
    migrate_sync(src)
    dest = tmp_path / "out" / "backup.db"
    backup_sync(src, dest)
    info = dest.stat()
    assert info.st_mode & 0o777 == 0o640
    assert info.st_gid == state.stat().st_gid


def test_backup_file_is_private_while_it_is_being_written(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    src = state / "promod.db"
    migrate_sync(src)
    dest = tmp_path / "backup.db"
    seen: list[int] = []
    real_connect = sqlite3.connect

    def spying_connect(path: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        if str(path).endswith(".partial"):
            seen.append(Path(path).stat().st_mode & 0o777)
        return real_connect(path, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sqlite3, "connect", spying_connect)
        backup_sync(src, dest)
    assert seen == [0o600]


def test_backup_refuses_missing_source_and_itself(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        backup_sync(tmp_path / "missing.db", tmp_path / "copy.db")
    src = tmp_path / "promod.db"
    migrate_sync(src)
    with pytest.raises(ValueError, match="database itself"):
        backup_sync(src, src)


def test_check_reports_foreign_key_violations(tmp_path: Path) -> None:
    path = tmp_path / "promod.db"
    migrate_sync(path)
    assert check_sync(path) == []
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
    conn.execute("CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id REFERENCES parent(id))")
    conn.execute("INSERT INTO child VALUES (7, 42)")
    conn.commit()
    conn.close()
    problems = check_sync(path)
    assert problems == ["foreign key violation: child row 7 refers to a missing row in parent"]


def test_check_reports_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not sqlite" * 100)
    problems = check_sync(path)
    assert problems and "not a database" in problems[0]
    with pytest.raises(FileNotFoundError):
        check_sync(tmp_path / "missing.db")


@pytest.mark.anyio
async def test_a_long_read_does_not_hold_up_a_write(tmp_path: Path) -> None:
    import time as _time

    db = await Database.open(tmp_path / "r.db")
    order: list[str] = []
    try:
        reading = threading.Event()

        def slow_read(conn: sqlite3.Connection) -> int:
            before = conn.execute("SELECT count(*) FROM meta").fetchone()[0]
            reading.set()
            _time.sleep(0.5)
            # Still the snapshot taken when the read began.
            assert conn.execute("SELECT count(*) FROM meta").fetchone()[0] == before
            order.append("read")
            return int(before)

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')")
            order.append("write")

        async with anyio.create_task_group() as tg:
            tg.start_soon(functools.partial(db.run_sync, slow_read, write=False))
            await wait_until_async(reading.is_set)
            await db.run_sync(write)
        assert order == ["write", "read"]
        with pytest.raises(sqlite3.OperationalError):
            await db.run_sync(write, write=False)  # the read connection is read-only
    finally:
        await db.close()
