"""The audit log in the store: appending a row and reading the newest ones.

:class:`promod.admin.audit.AuditLog` calls these in one transaction each
(docs/architecture.md, "The store seam"); the table's triggers forbid UPDATE and
DELETE.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from promod.store.seam import Transaction

__all__ = ["COLUMNS", "append_sync", "query_sync"]

COLUMNS = ("id", "ts", "uid", "gid", "pid", "user", "role", "command", "args", "outcome", "error")


def append_sync(tx: Transaction, row: Sequence[Any]) -> int:
    """Append one row (every column but ``id``, in order); its id."""
    names = COLUMNS[1:]
    return int(
        tx.fetch_value(
            f"INSERT INTO audit_log ({', '.join(names)})"
            f" VALUES ({', '.join(':' + n for n in names)}) RETURNING id",
            dict(zip(names, row, strict=True)),
        )
    )


def query_sync(
    tx: Transaction, *, since: str | None, command: str | None, limit: int
) -> list[dict[str, Any]]:
    """The newest ``limit`` rows at or after ``since`` (of ``command``), newest first."""
    where: list[str] = []
    params: dict[str, Any] = {"limit": limit}
    if since is not None:
        where.append("ts >= :since")
        params["since"] = since
    if command is not None:
        where.append("command = :command")
        params["command"] = command
    sql = f"SELECT {', '.join(COLUMNS)} FROM audit_log"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT :limit"
    return [dict(zip(COLUMNS, tuple(row), strict=True)) for row in tx.fetch_all(sql, params)]
