"""Code imports in the database: the staging rows of an import and its final load.

Store functions of the seam for :mod:`promod.codepool.imports` (which parses and
validates the file); each takes the open :class:`~promod.store.seam.Transaction`::

    stage_import_rows(tx, [(import_id, line, code, expires_at, value_minor), ...])
    repeated_lines(tx, import_id)            # [[first line, repeat, ...], ...]
    lines_in_series(tx, import_id, "XMAS")   # [(line, pool holding the code), ...]
    load_import(tx, pool, import_id, max_uses=1, now=now)   # codes added
"""

from __future__ import annotations

from collections.abc import Sequence

from promod.codepool.store import Pool, adjust_counts
from promod.store.seam import Transaction

__all__ = [
    "discard_import",
    "lines_in_series",
    "load_import",
    "repeated_lines",
    "stage_import_rows",
]

Staged = tuple[str, int, str, float | None, int | None]


def stage_import_rows(tx: Transaction, rows: Sequence[Staged]) -> None:
    """Stage ``(import id, line, code, expires_at, value_minor)`` rows."""
    tx.executemany(
        "INSERT INTO code_import_staging (import_id, line, code, expires_at, value_minor)"
        " VALUES (:iid, :line, :code, :expires, :value)",
        [
            {"iid": iid, "line": line, "code": code, "expires": expires, "value": value}
            for iid, line, code, expires, value in rows
        ],
    )


def discard_import(tx: Transaction, import_id: str) -> None:
    tx.execute("DELETE FROM code_import_staging WHERE import_id = :iid", {"iid": import_id})


def repeated_lines(tx: Transaction, import_id: str) -> list[list[int]]:
    """The lines of each code staged more than once, in line order per code."""
    groups: dict[str, list[int]] = {}
    for row in tx.iterate(
        "SELECT code, line FROM code_import_staging WHERE import_id = :iid AND code IN"
        " (SELECT code FROM code_import_staging WHERE import_id = :iid"
        " GROUP BY code HAVING count(*) > 1) ORDER BY code, line",
        {"iid": import_id},
    ):
        groups.setdefault(str(row[0]), []).append(int(row[1]))
    return list(groups.values())


def lines_in_series(tx: Transaction, import_id: str, series: str) -> list[tuple[int, str]]:
    """``(line, pool)`` of each staged code that the series holds already, by line."""
    return [
        (int(r[0]), str(r[1]))
        for r in tx.fetch_all(
            "SELECT s.line, p.name FROM code_import_staging s"
            " JOIN codes c ON c.code = s.code AND c.series = :series"
            " JOIN code_pools p ON p.id = c.pool_id WHERE s.import_id = :iid ORDER BY s.line",
            {"series": series, "iid": import_id},
        )
    ]


def load_import(tx: Transaction, pool: Pool, import_id: str, *, max_uses: int, now: float) -> int:
    """Move the staged codes into the pool (new ids, above every cursor); how many."""
    added = tx.execute(
        "INSERT INTO codes (pool_id, series, code, value_minor, expires_at, max_uses, created_at)"
        " SELECT :pool, :series, code, value_minor, expires_at, :max_uses, :now"
        " FROM code_import_staging WHERE import_id = :iid ORDER BY code",
        {
            "pool": pool.id,
            "series": pool.series,
            "max_uses": max_uses,
            "now": now,
            "iid": import_id,
        },
    )
    discard_import(tx, import_id)
    adjust_counts(tx, pool.id, added if max_uses == 1 else 0, added, now)
    return added
