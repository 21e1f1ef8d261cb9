"""The store seam: the transaction interface that store code is written against.

Store functions (the ``store`` modules of each domain) take a :class:`Transaction`
and run inside one database transaction opened by :meth:`Database.run`. They use
named parameters (``:name``) and the :class:`Dialect` helpers for the few places
where SQLite and PostgreSQL differ, so that one function serves every backend.
Nothing outside the store modules and the backends writes SQL
(docs/architecture.md, "The store seam").
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol, runtime_checkable

Params = Mapping[str, Any] | Sequence[Any]


class ConstraintError(Exception):
    """A statement broke a constraint (unique, check, foreign key); any backend."""


class UniqueViolation(ConstraintError):
    """A statement inserted a row whose unique key exists already."""


class SchemaMismatch(Exception):
    """A statement names a table or column the database does not have (an older schema)."""


_MISSING = ("no such table", "no such column")


def _constraint(exc: sqlite3.IntegrityError) -> ConstraintError:
    text = str(exc)
    cls = UniqueViolation if "UNIQUE" in text or "PRIMARY KEY" in text else ConstraintError
    return cls(text)


class Row(Protocol):
    """A result row: read by column name (``row["id"]``) or position (``row[0]``)."""

    def __getitem__(self, key: str | int, /) -> Any: ...

    def keys(self) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...

    def __len__(self) -> int: ...


class Dialect:
    """SQL fragments that differ between backends; this base is SQLite's."""

    name = "sqlite"

    def in_array(self, column: str, param: str) -> str:
        """``column`` is one of the values of the array parameter ``:param``."""
        return f"{column} IN (SELECT value FROM json_each(:{param}))"

    def array(self, values: Iterable[Any]) -> Any:
        """The parameter value for an array parameter used with :meth:`in_array`."""
        return json.dumps(list(values))

    def array_rows(self, param: str) -> str:
        """A row source of the array parameter's values, one column ``value``."""
        return f"(SELECT value FROM json_each(:{param}))"

    def json_text(self, column: str, key: str) -> str:
        """The text value of top-level ``key`` of the JSON object in ``column``."""
        return f"json_extract({column}, '$.{key}')"

    def greatest(self, *exprs: str) -> str:
        return f"max({', '.join(exprs)})"

    def least(self, *exprs: str) -> str:
        return f"min({', '.join(exprs)})"

    def json_merge(self, old: str, new: str) -> str:
        """The JSON object ``old`` with the keys of ``new`` set over it (RFC 7396)."""
        return f"json_patch({old}, {new})"

    def iso_time(self, unix: str) -> str:
        """The ISO-8601 UTC text (``...T...Z``, whole seconds) of the unix seconds ``unix``."""
        return f"strftime('%Y-%m-%dT%H:%M:%SZ', {unix}, 'unixepoch')"

    def sequence_key(self, column: str) -> str:
        """A column definition numbering a table's rows in insertion order."""
        return f"{column} INTEGER PRIMARY KEY"

    def insert_ignore(self, table: str, columns: Sequence[str], conflict: Sequence[str]) -> str:
        """An INSERT of named parameters that does nothing when ``conflict`` exists."""
        cols = ", ".join(columns)
        values = ", ".join(f":{c}" for c in columns)
        target = ", ".join(conflict)
        return f"INSERT INTO {table} ({cols}) VALUES ({values}) ON CONFLICT ({target}) DO NOTHING"

    def upsert(
        self,
        table: str,
        columns: Sequence[str],
        conflict: Sequence[str],
        update: Mapping[str, str],
    ) -> str:
        """An INSERT of named parameters; on ``conflict``, ``SET col = expr`` for ``update``.

        In ``update`` expressions, ``excluded.col`` is the row that was refused.
        """
        cols = ", ".join(columns)
        values = ", ".join(f":{c}" for c in columns)
        target = ", ".join(conflict)
        sets = ", ".join(f"{c} = {expr}" for c, expr in update.items())
        return (
            f"INSERT INTO {table} ({cols}) VALUES ({values}) "
            f"ON CONFLICT ({target}) DO UPDATE SET {sets}"
        )


SQLITE = Dialect()


@runtime_checkable
class Transaction(Protocol):
    """One open database transaction; store functions never commit or roll back.

    An exception raised out of the function run by :meth:`Database.run` rolls the
    whole transaction back.
    """

    dialect: Dialect

    def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; the number of rows it changed."""
        ...

    def executemany(self, sql: str, rows: Iterable[Params]) -> int:
        """Run one statement once per parameter set; the number of rows it changed."""
        ...

    def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        """The first row of a query, or None."""
        ...

    def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        """Every row of a query."""
        ...

    def fetch_value(self, sql: str, params: Params = (), default: Any = None) -> Any:
        """The first column of the first row, or ``default`` when there is no row."""
        ...

    def iterate(self, sql: str, params: Params = (), size: int = 1000) -> Iterator[Row]:
        """The rows of a query, fetched ``size`` at a time (never all held at once)."""
        ...

    def savepoint(self, name: str) -> AbstractContextManager[None]:
        """A nested part of the transaction: rolled back alone when the block raises."""
        ...


class SqliteTransaction:
    """:class:`Transaction` over a ``sqlite3`` connection with a transaction open."""

    dialect: Dialect = SQLITE

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def _run(self, sql: str, params: Params) -> sqlite3.Cursor:
        try:
            cursor: sqlite3.Cursor = self.conn.execute(sql, params)
        except sqlite3.IntegrityError as exc:
            raise _constraint(exc) from exc
        except sqlite3.OperationalError as exc:
            if str(exc).startswith(_MISSING):
                raise SchemaMismatch(str(exc)) from exc
            raise
        return cursor

    def execute(self, sql: str, params: Params = ()) -> int:
        return int(self._run(sql, params).rowcount)

    def executemany(self, sql: str, rows: Iterable[Params]) -> int:
        try:
            cursor = self.conn.executemany(sql, rows)
        except sqlite3.IntegrityError as exc:
            raise _constraint(exc) from exc
        return max(int(cursor.rowcount), 0)

    def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        cursor = self._run(sql, params)
        row: Row | None = cursor.fetchone()
        cursor.close()  # an INSERT ... RETURNING is finished, not left open
        return row

    def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        return list(self._run(sql, params).fetchall())

    def fetch_value(self, sql: str, params: Params = (), default: Any = None) -> Any:
        row = self.fetch_one(sql, params)
        return default if row is None else row[0]

    def iterate(self, sql: str, params: Params = (), size: int = 1000) -> Iterator[Row]:
        cursor = self._run(sql, params)
        try:
            while True:
                rows = cursor.fetchmany(size)
                if not rows:
                    return
                yield from rows
        finally:
            cursor.close()

    @contextmanager
    def savepoint(self, name: str) -> Iterator[None]:
        if not name.isidentifier():
            raise ValueError(f"savepoint name {name!r} is not an identifier")
        self.conn.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self.conn.execute(f"ROLLBACK TO {name}")
            self.conn.execute(f"RELEASE {name}")
            raise
        self.conn.execute(f"RELEASE {name}")


# While callers move behind the seam some still hold a raw connection: store
# functions accept either and call :func:`as_tx` first.
TxLike = Transaction | sqlite3.Connection


def as_tx(tx: TxLike) -> Transaction:
    """``tx`` as a :class:`Transaction` (a raw ``sqlite3`` connection is wrapped)."""
    if isinstance(tx, sqlite3.Connection):
        return SqliteTransaction(tx)
    return tx


def legacy_connection(tx: TxLike) -> sqlite3.Connection:
    """The SQLite connection under ``tx``, for store code not yet written against the seam.

    Only for calls into functions that still take a ``sqlite3.Connection``; it goes
    when the last of them is converted.
    """
    if isinstance(tx, sqlite3.Connection):
        return tx
    if not isinstance(tx, SqliteTransaction):
        raise TypeError(f"{type(tx).__name__} has no SQLite connection")
    return tx.conn
