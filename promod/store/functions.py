"""SQL functions written in Python, installed on the SQLite backend's connections.

A domain describes its functions with :class:`SqlFunction` (name, argument count,
and a callable or an aggregate class with ``step``/``finalize``); :func:`install`
puts them on one ``sqlite3`` connection and :meth:`Database.register_functions`
on every connection of the daemon. The segment language's exact decimal
comparison and sum are the only ones (docs/architecture.md, "The store seam").
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeAlias, cast

import aiosqlite

__all__ = ["AsyncConnection", "Connection", "SqlFunction", "install", "install_async"]

Connection: TypeAlias = sqlite3.Connection
AsyncConnection: TypeAlias = aiosqlite.Connection


@dataclass(frozen=True)
class SqlFunction:
    """One SQL function: a scalar ``fn`` or, with ``aggregate=True``, a class."""

    name: str
    args: int
    fn: Callable[..., Any]
    aggregate: bool = False


def install(conn: sqlite3.Connection, functions: Iterable[SqlFunction]) -> None:
    for function in functions:
        if function.aggregate:
            conn.create_aggregate(function.name, function.args, cast(Any, function.fn))
        else:
            conn.create_function(function.name, function.args, function.fn, deterministic=True)


async def install_async(conn: aiosqlite.Connection, functions: Iterable[SqlFunction]) -> None:
    """:func:`install` on an aiosqlite connection, in its own thread."""
    listed = list(functions)
    # aiosqlite has no public create_aggregate; run the sync registration in its thread.
    await conn._execute(lambda: install(conn._conn, listed))  # type: ignore[no-untyped-call]
