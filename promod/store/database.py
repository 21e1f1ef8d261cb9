"""The embedded SQLite store: connection, transactions, schema migrations, backup and check.

Owns the one aiosqlite connection of the daemon (WAL, foreign keys, busy timeout,
synchronous=FULL), the migrations runner over ``promod/store/migrations/NNNN_name.sql``
(each migration in its own transaction together with ``PRAGMA user_version``), and the
offline tools behind ``promod db migrate|backup|check``.

    db = await Database.open(state_dir / "promod.db")
    await db.run(lambda tx: tx.execute("INSERT INTO meta (key, value) VALUES (:k, :v)",
                                       {"k": "k", "v": "v"}))
    value = await db.run(lambda tx: tx.fetch_value("SELECT value FROM meta WHERE key = 'k'"),
                         write=False)
    await db.close()

Store code reaches it through :meth:`Database.run` and the seam's ``Transaction``
(docs/architecture.md, "The store seam"); ``transaction``, ``execute``, ``fetchone``,
``fetchall`` and ``run_sync`` are the older path, kept while callers move.

A full disk, a read-only one or an I/O error during a write rolls it back and raises
:class:`~promod.store.health.StoreUnavailable` ("disk full: PATH (N free)"); ``db.health``
records the outage. A space reserve (``promod.db.reserve``, 4 MiB) lies beside the file:
the writes that must work on a full disk (the kill switch, the audit log, the outage alert,
marked with :func:`essential_writes` or ``run_sync(..., essential=True)``) give it up.
While the store is unavailable other writes are refused at once (nothing is tried, so the
room stays for the essential ones) until :meth:`Database.probe` succeeds again.

Every statement goes through one connection, so :meth:`Database.transaction` holds an
``anyio.Lock`` for its whole duration, and :meth:`Database.execute`, :meth:`Database.fetchone`
and :meth:`Database.fetchall` take the same lock unless they are called from inside the
transaction (the task that opened it, or a task it started): nothing from another task can
slip into an open transaction or read its uncommitted rows.
"""

from __future__ import annotations

import contextvars
import os
import re
import sqlite3
import stat
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, TypeAlias, TypeVar

import aiosqlite
import anyio

from promod.logs import get_logger
from promod.store.health import (
    Reserve,
    StoreHealth,
    StoreUnavailable,
    free_bytes,
    is_outage,
    outage_reason,
)
from promod.store.seam import SqliteTransaction, Transaction

__all__ = [
    "BUSY_TIMEOUT_MS",
    "MIGRATIONS_DIR",
    "Database",
    "Migration",
    "MigrationError",
    "Params",
    "SchemaTooNew",
    "StoreUnavailable",
    "backup_sync",
    "check_sync",
    "create_private",
    "essential_writes",
    "latest_version",
    "migrate_sync",
    "migrations",
    "private_mode",
    "reserve_path",
    "split_statements",
]

log = get_logger("promod.store")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
BUSY_TIMEOUT_MS = 5000

Params: TypeAlias = Sequence[Any] | Mapping[str, Any]

_MIGRATION_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")


class SchemaTooNew(Exception):
    """The database was written by a newer promod than this one."""

    def __init__(self, found: int, known: int) -> None:
        self.found = found
        self.known = known
        super().__init__(
            f"database schema version {found} is newer than this promod "
            f"(knows up to {known}); upgrade promod"
        )


class MigrationError(Exception):
    """A migration failed; the database stays at the version before it."""


@dataclass(frozen=True)
class Migration:
    """One schema step, read from ``NNNN_name.sql``."""

    version: int
    name: str
    path: Path
    sql: str

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


def migrations(directory: Path | None = None) -> list[Migration]:
    """Every migration in *directory* (default: the package's), sorted by version.

    Versions must run 1, 2, 3 ... without gaps or duplicates; any other ``.sql`` file name
    is refused, so a misnamed migration is never silently skipped.
    """
    directory = MIGRATIONS_DIR if directory is None else directory
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if match is None:
            raise ValueError(f"{path}: migration file names look like 0001_name.sql")
        version = int(match["version"])
        if version in found:
            raise ValueError(f"{path}: duplicate migration version {version}")
        found[version] = Migration(
            version=version,
            name=match["name"],
            path=path,
            sql=path.read_text(encoding="utf-8"),
        )
    ordered = [found[v] for v in sorted(found)]
    for expected, migration in enumerate(ordered, start=1):
        if migration.version != expected:
            raise ValueError(f"{directory}: migration {expected:04d} is missing")
    return ordered


def latest_version(directory: Path | None = None) -> int:
    """The schema version this promod knows (the newest migration), 0 without any."""
    known = migrations(directory)
    return known[-1].version if known else 0


def split_statements(script: str) -> list[str]:
    """Split an SQL script into complete statements (trigger bodies stay whole)."""
    statements: list[str] = []
    buffer = ""
    pieces = script.split(";")
    for piece in pieces[:-1]:
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if _has_sql(buffer):
                statements.append(buffer.strip())
            buffer = ""
    buffer += pieces[-1]
    if _has_sql(buffer):
        statements.append(buffer.strip())
    return statements


def _has_sql(text: str) -> bool:
    for line in text.splitlines():
        code = line.split("--", 1)[0].strip().strip(";").strip()
        if code:
            return True
    return False


def _connect_sync(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn


def _user_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate_sync(path: Path, directory: Path | None = None) -> list[int]:
    """Apply pending migrations to the database at *path*; return the versions applied.

    Each migration runs in its own ``BEGIN IMMEDIATE`` transaction with the matching
    ``PRAGMA user_version``; a failing one is rolled back and raised as
    :class:`MigrationError`, leaving the database at the previous version. Foreign keys are
    off while a migration runs (so tables can be rebuilt) and checked before its commit.
    Raises :class:`SchemaTooNew` when the database is newer than the newest migration.
    """
    available = migrations(directory)
    known = available[-1].version if available else 0
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = _connect_sync(path)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = OFF")
        current = _user_version(conn)
        if current > known:
            raise SchemaTooNew(current, known)
        applied: list[int] = []
        for migration in available:
            if migration.version > current and _apply(conn, migration):
                applied.append(migration.version)
        return applied
    finally:
        conn.close()


def _apply(conn: sqlite3.Connection, migration: Migration) -> bool:
    try:
        conn.execute("BEGIN IMMEDIATE")
        if _user_version(conn) >= migration.version:
            conn.execute("ROLLBACK")
            return False
        for statement in split_statements(migration.sql):
            conn.execute(statement)
            if not conn.in_transaction:
                raise MigrationError(
                    f"migration {migration.label} ended its transaction itself; "
                    "migration files must not contain BEGIN/COMMIT/ROLLBACK"
                )
        violations = conn.execute("PRAGMA foreign_key_check").fetchall()
        if violations:
            raise MigrationError(
                f"migration {migration.label} leaves {len(violations)} foreign key violation(s), "
                f"first in table {violations[0][0]}"
            )
        conn.execute(f"PRAGMA user_version = {migration.version:d}")
        conn.execute("COMMIT")
        return True
    except sqlite3.Error as exc:
        conn.rollback()
        raise MigrationError(f"migration {migration.label} failed: {exc}") from exc
    except BaseException:
        conn.rollback()
        raise


def backup_sync(src: Path, dest: Path) -> None:
    """Copy the database at *src* to *dest* with SQLite's online backup API.

    Safe while the daemon writes: the copy is one consistent snapshot (whole transactions
    only). It is written next to *dest*, switched to a self-contained rollback journal,
    fsynced and then renamed over *dest*. The copy holds every code, token hash and
    address, so it is never world-readable: it is created 0600 before the first byte is
    written, or 0640 owned by the state directory's group when that directory is
    group-readable (see :func:`private_mode`).
    """
    if not src.is_file():
        raise FileNotFoundError(f"{src}: no such database file")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() and dest.resolve() == src.resolve():
        raise ValueError(f"{dest}: backup destination is the database itself")
    partial_path = dest.with_name(f".{dest.name}.partial")
    partial_path.unlink(missing_ok=True)
    create_private(partial_path, src.parent)
    try:
        source = _connect_sync(src)
        try:
            target = sqlite3.connect(partial_path, isolation_level=None)
            try:
                source.backup(target, pages=-1)
                target.execute("PRAGMA journal_mode = DELETE")
            finally:
                target.close()
        finally:
            source.close()
    except BaseException:
        partial_path.unlink(missing_ok=True)
        raise
    _fsync(partial_path)
    os.replace(partial_path, dest)
    _fsync(dest.parent)


def private_mode(state_dir: Path) -> tuple[int, int | None]:
    """The mode (and group id to set, or None) of a backup or export of the state in *state_dir*.

    0640 with the directory's group when the state directory lets its group read
    (a ``promod`` group of operators reading backups), else 0600. Never world-readable.
    """
    try:
        info = state_dir.stat()
    except OSError:
        return 0o600, None
    if info.st_mode & stat.S_IRGRP:
        return 0o640, info.st_gid
    return 0o600, None


def create_private(path: Path, state_dir: Path) -> None:
    """Create *path* empty with :func:`private_mode` (it must not exist), before any data.

    When the group cannot be handed to the state directory's group (the caller is not
    a member), the file stays 0600.
    """
    mode, gid = private_mode(state_dir)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        if gid is not None:
            try:
                os.fchown(fd, -1, gid)
            except OSError:
                mode = 0o600
        os.fchmod(fd, mode)  # exact, whatever the umask
    finally:
        os.close(fd)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_sync(path: Path) -> list[str]:
    """Problems found by ``PRAGMA integrity_check`` and ``PRAGMA foreign_key_check``; [] if ok."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such database file")
    try:
        conn = _connect_sync(path)
    except sqlite3.DatabaseError as exc:
        return [f"cannot open database: {exc}"]
    try:
        problems: list[str] = []
        rows = conn.execute("PRAGMA integrity_check").fetchall()
        problems.extend(str(row[0]) for row in rows if row[0] != "ok")
        for table, rowid, parent, _fkid in conn.execute("PRAGMA foreign_key_check"):
            problems.append(
                f"foreign key violation: {table} row {rowid} refers to a missing row in {parent}"
            )
        return problems
    except sqlite3.DatabaseError as exc:
        return [f"database is damaged: {exc}"]
    finally:
        conn.close()


T = TypeVar("T")


def reserve_path(path: Path) -> Path:
    """Where the space reserve of the database at ``path`` lives (beside it)."""
    return path.with_name(path.name + ".reserve")


def _reason_of(exc: BaseException) -> str:
    found = outage_reason(exc)
    if found is None and isinstance(exc, BaseExceptionGroup):
        found = next((outage_reason(e) for e in exc.exceptions if outage_reason(e)), None)
    if found is None and exc.__cause__ is not None:
        found = outage_reason(exc.__cause__)
    return found or "I/O error"


# Grant batches dirty pages all over the customer indexes: checkpoint the WAL
# every ~40 MiB rather than every 4 MiB, and keep 64 MiB of pages cached.
WAL_AUTOCHECKPOINT = 10_000  # pages
CACHE_SIZE = -65_536  # KiB


def _connect_worker(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT}")
    conn.execute(f"PRAGMA cache_size = {CACHE_SIZE}")
    return conn


def _in_transaction(
    conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T], write: bool
) -> T:
    conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    try:
        result = fn(conn)
        conn.execute("COMMIT")
    except BaseException:
        # SQLite may have rolled back already (a full disk, an I/O error): only roll
        # back what is still open, so the original error is the one raised.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


_open_transaction: contextvars.ContextVar[object | None] = contextvars.ContextVar(
    "promod_store_transaction", default=None
)
_essential: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "promod_store_essential", default=False
)


@contextmanager
def essential_writes() -> Iterator[None]:
    """Writes in this block may use the space reserve (kill switch, audit, outage alert)."""
    token = _essential.set(True)
    try:
        yield
    finally:
        _essential.reset(token)


class Database:
    """The daemon's SQLite database over one aiosqlite connection (rows are ``sqlite3.Row``)."""

    def __init__(self, path: Path, conn: aiosqlite.Connection) -> None:
        self.path = path
        self.conn = conn
        self._lock = anyio.Lock()
        self._current: object | None = None
        # A second, plain connection for batch work done in one worker-thread hop
        # (see run_sync); serialised with every other access by the same lock.
        self._sync: sqlite3.Connection | None = None
        self._limiter = anyio.CapacityLimiter(1)
        # Read-only work (reports, dry runs) reads a WAL snapshot on a connection of
        # its own, so a long report never holds up grants.
        self._reader: sqlite3.Connection | None = None
        self._read_lock = anyio.Lock()
        self._read_limiter = anyio.CapacityLimiter(1)
        self._sql_functions: list[Callable[[sqlite3.Connection], None]] = []
        self.health = StoreHealth(path)
        self.reserve = Reserve(reserve_path(path))

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        migrate: bool = True,
        migrations_dir: Path | None = None,
    ) -> Database:
        """Open (creating file and parent directory) and, by default, migrate to the newest schema.

        Raises :class:`SchemaTooNew` when the database is newer than this promod, and
        :class:`MigrationError` when a pending migration fails. On a full disk the space
        reserve is given up to open it; a store that still cannot open raises
        :class:`StoreUnavailable`. An open store without room for its reserve starts
        unavailable (``db.health``): reads work, ordinary writes wait for space.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = await cls._open(path, migrate=migrate, migrations_dir=migrations_dir)
        except Exception as exc:
            if not is_outage(exc):
                raise
            reason = _reason_of(exc)
            if not Reserve(reserve_path(path)).release():
                raise StoreUnavailable(reason, path, free_bytes(path), repr(exc)) from exc
            log.warning("store_reserve_released", path=str(path), reason=reason)
            try:
                db = await cls._open(path, migrate=migrate, migrations_dir=migrations_dir)
            except Exception as again:
                if not is_outage(again):
                    raise
                raise StoreUnavailable(
                    _reason_of(again), path, free_bytes(path), repr(again)
                ) from again
        if not await anyio.to_thread.run_sync(db.reserve.ensure):
            error = db.reserve.error
            db.health.unavailable(
                (outage_reason(error) if error else None) or "disk full",
                f"cannot lay down the space reserve: {error}",
            )
        return db

    @classmethod
    async def _open(
        cls,
        path: Path,
        *,
        migrate: bool,
        migrations_dir: Path | None,
    ) -> Database:
        if migrate:
            await anyio.to_thread.run_sync(partial(migrate_sync, path, migrations_dir))
        known = latest_version(migrations_dir)
        conn = await aiosqlite.connect(path, isolation_level=None)
        db = cls(path, conn)
        try:
            conn.row_factory = sqlite3.Row
            await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT}")
            await conn.execute(f"PRAGMA cache_size = {CACHE_SIZE}")
            await conn.execute("PRAGMA synchronous = FULL")
            await conn.execute("PRAGMA foreign_keys = ON")
            found = await db.schema_version()
            if found > known:
                raise SchemaTooNew(found, known)
            db._sync = await anyio.to_thread.run_sync(_connect_worker, path)
            db._reader = await anyio.to_thread.run_sync(_connect_worker, path)
            db._reader.execute("PRAGMA query_only = ON")
        except BaseException:
            with anyio.CancelScope(shield=True):
                await conn.close()
            raise
        return db

    async def close(self) -> None:
        if self._sync is not None:
            self._sync.close()
            self._sync = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        await self.conn.close()

    async def register_functions(self, register: Callable[[sqlite3.Connection], None]) -> None:
        """Register SQL functions (``register(conn)``) on both connections."""
        self._sql_functions.append(register)
        async with self._access():
            # aiosqlite has no public create_aggregate: register in its own thread.
            await self.conn._execute(register, self.conn._conn)  # type: ignore[no-untyped-call]
            if self._sync is not None:
                await anyio.to_thread.run_sync(register, self._sync, limiter=self._limiter)
        if self._reader is not None:
            async with self._read_lock:
                await anyio.to_thread.run_sync(register, self._reader, limiter=self._read_limiter)

    async def run_sync(
        self, fn: Callable[[sqlite3.Connection], T], *, write: bool = True, essential: bool = False
    ) -> T:
        """Run ``fn(conn)`` in a worker thread in one transaction; its result is returned.

        For batch work that would otherwise cost one await per statement (the
        ledger grants a thousand customers in one call). ``write=True`` opens
        ``BEGIN IMMEDIATE``; an exception rolls the whole call back. ``write=False``
        reads a consistent snapshot on a read-only connection of its own, beside
        the writers (a report or dry run never holds up grants).

        A full disk, a read-only one or an I/O error rolls the call back and raises
        :class:`StoreUnavailable`. ``essential=True`` (the kill switch, audit) may give
        up the space reserve and try once more.
        """
        if not write:
            assert self._reader is not None, "database is closed"
            reader = self._reader
            async with self._read_lock:
                return await anyio.to_thread.run_sync(
                    _in_transaction,
                    reader,
                    fn,
                    False,
                    limiter=self._read_limiter,
                    abandon_on_cancel=False,
                )
        if self._inside_transaction():
            raise RuntimeError("run_sync cannot run inside an open transaction")
        assert self._sync is not None, "database is closed"
        sync = self._sync
        async with self._lock:
            essential = essential or _essential.get()
            self._before_write(essential)
            try:
                return await anyio.to_thread.run_sync(
                    _in_transaction, sync, fn, write, limiter=self._limiter, abandon_on_cancel=False
                )
            except Exception as exc:
                if not outage_reason(exc):
                    raise
                problem = self.health.failed(exc)
                if not (essential and self._release_reserve()):
                    raise problem from exc
            try:
                return await anyio.to_thread.run_sync(
                    _in_transaction, sync, fn, write, limiter=self._limiter, abandon_on_cancel=False
                )
            except Exception as exc:
                if outage_reason(exc):
                    raise self.health.failed(exc) from exc
                raise

    async def run(
        self, fn: Callable[[Transaction], T], *, write: bool = True, essential: bool = False
    ) -> T:
        """Run the store function ``fn(tx)`` in one transaction (see :meth:`run_sync`).

        ``tx`` is the seam's :class:`~promod.store.seam.Transaction`: store code
        written against it runs on every backend (docs/architecture.md).
        """
        return await self.run_sync(
            lambda conn: fn(SqliteTransaction(conn)), write=write, essential=essential
        )

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with anyio.CancelScope(shield=True):
            await self.close()

    def _inside_transaction(self) -> bool:
        current = self._current
        return current is not None and _open_transaction.get() is current

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` when the block raises.

        Transactions are serialised; one is not re-entrant (RuntimeError).
        """
        if self._inside_transaction():
            raise RuntimeError("a transaction is already open in this task; they do not nest")
        async with self._lock:
            self._before_write(_essential.get())
            marker = object()
            self._current = marker
            token = _open_transaction.set(marker)
            try:
                try:
                    await self.conn.execute("BEGIN IMMEDIATE")
                    yield self.conn
                    with anyio.CancelScope(shield=True):
                        await self.conn.execute("COMMIT")
                except BaseException as exc:
                    with anyio.CancelScope(shield=True):
                        try:
                            await self.conn.rollback()
                        except sqlite3.Error:
                            if not isinstance(exc, Exception) or not outage_reason(exc):
                                raise
                    if isinstance(exc, Exception) and outage_reason(exc):
                        raise self.health.failed(exc) from exc
                    raise
            finally:
                _open_transaction.reset(token)
                self._current = None

    def _before_write(self, essential: bool) -> None:
        """While the store is unavailable only essential writes run, on the reserve's room."""
        problem = self.health.problem
        if problem is None:
            return
        if not essential:
            raise self.health.unavailable(problem.reason, problem.detail)
        if self.reserve.present:
            self._release_reserve()

    async def probe(self) -> None:
        """One small write past the outage gate: does the store take writes again?"""
        assert self._sync is not None, "database is closed"
        sync = self._sync
        now = repr(time.time())

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('store.probe', ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (now,),
            )

        async with self._lock:
            await anyio.to_thread.run_sync(
                _in_transaction, sync, write, True, limiter=self._limiter, abandon_on_cancel=False
            )

    def _release_reserve(self) -> bool:
        released = self.reserve.release()
        if released:
            log.warning("store_reserve_released", path=str(self.path))
        return released

    @asynccontextmanager
    async def _access(self) -> AsyncIterator[None]:
        if self._inside_transaction():
            yield
        else:
            async with self._lock:
                yield

    async def execute(self, sql: str, params: Params = ()) -> aiosqlite.Cursor:
        """Run one statement (autocommit outside a transaction); return its cursor."""
        async with self._access():
            try:
                return await self.conn.execute(sql, params)
            except sqlite3.Error as exc:
                if outage_reason(exc):
                    raise self.health.failed(exc) from exc
                raise

    async def executemany(self, sql: str, params: Iterable[Params]) -> aiosqlite.Cursor:
        async with self._access():
            try:
                return await self.conn.executemany(sql, params)
            except sqlite3.Error as exc:
                if outage_reason(exc):
                    raise self.health.failed(exc) from exc
                raise

    async def fetchone(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        async with self._access(), self.conn.execute(sql, params) as cursor:
            row: sqlite3.Row | None = await cursor.fetchone()
            return row

    async def fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        async with self._access(), self.conn.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    @property
    def changes(self) -> int:
        """Rows inserted, updated or deleted through this Database since it was opened.

        ``sqlite3_total_changes`` of both writing connections; the read-only snapshot
        connection writes nothing. :mod:`promod.actors.settle` compares it before and
        after a round of actor work to see whether the round did anything.
        """
        total = int(self.conn.total_changes)
        if self._sync is not None:
            total += self._sync.total_changes
        return total

    async def schema_version(self) -> int:
        row = await self.fetchone("PRAGMA user_version")
        return 0 if row is None else int(row[0])
