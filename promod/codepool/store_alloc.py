"""Code allocation in the database: the ``code_pool`` provider's store functions.

Allocation reads forward from the pool's cursor ``code_pools.alloc_after``: every
single-use code of the pool at or below it has left ``available``, and new codes
only ever get higher ids, so the next codes are one range read on the index
``codes_pool (pool_id, id)``, whose entries allocation never rewrites. A batch is
one statement run per code, then one update of the pool's counter and cursor
(migration 0010, docs/architecture.md)::

    cursor = pool_cursor(tx, "XMAS25")              # PoolCursor or None
    picked = pick_codes(tx, cursor, 1000, now)      # [(id, code, expires_at, value_minor)]
    assign_codes(tx, [(code_id, grant_id, customer_id, campaign_id)], now)
    advance_pool(tx, cursor.id, taken=len(picked), after=picked[-1][0], now=now)

The unique index ``codes_customer_series`` refuses a second live code of a series
for a customer; :func:`assign_codes` runs under a savepoint so that a refusal
undoes the whole batch and raises :class:`~promod.store.seam.UniqueViolation`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from promod.store.seam import Row, Transaction

__all__ = [
    "Picked",
    "PoolCursor",
    "advance_pool",
    "assign_codes",
    "codes_of_grants",
    "held_series",
    "pick_codes",
    "pool_cursor",
    "revoke_grant_code",
]

# A picked code: (id, code, expires_at, value_minor)
Picked = Row
_RANGE_SLACK = 4  # a grant id range this many times the batch is read whole
_IN_CHUNK = 500


@dataclass(frozen=True)
class PoolCursor:
    """What allocation needs of a pool: ids, counter, thresholds, cursor."""

    id: int
    name: str
    series: str
    available: int
    alloc_after: int
    low_alerted: bool
    low_absolute: int | None
    low_percent: int | None
    loaded: int

    @property
    def threshold(self) -> int:
        """As :attr:`promod.codepool.store.Pool.threshold`."""
        found = self.low_absolute or 0
        if self.low_percent:
            found = max(found, math.ceil(self.loaded * self.low_percent / 100))
        return found


def pool_cursor(tx: Transaction, name: str) -> PoolCursor | None:
    row = tx.fetch_one(
        "SELECT id, name, series, available, alloc_after, low_alerted, low_absolute,"
        " low_percent, loaded FROM code_pools WHERE name = :name",
        {"name": name},
    )
    if row is None:
        return None
    return PoolCursor(
        id=int(row[0]),
        name=str(row[1]),
        series=str(row[2]),
        available=int(row[3]),
        alloc_after=int(row[4]),
        low_alerted=bool(row[5]),
        low_absolute=row[6],
        low_percent=row[7],
        loaded=int(row[8]),
    )


def pick_codes(tx: Transaction, pool: PoolCursor, count: int, now: float) -> list[Row]:
    """The next ``count`` (or fewer) available, unexpired single-use codes after the cursor."""
    return tx.fetch_all(
        "SELECT id, code, expires_at, value_minor FROM codes"
        " WHERE pool_id = :pool AND id > :after AND state = 'available' AND max_uses = 1"
        " AND (expires_at IS NULL OR expires_at > :now) ORDER BY id LIMIT :count",
        {"pool": pool.id, "after": pool.alloc_after, "now": now, "count": count},
    )


def assign_codes(tx: Transaction, rows: Iterable[tuple[int, int, str, str]], now: float) -> None:
    """Assign codes: ``(code id, grant id, customer id, campaign id)`` each, all or none.

    The codes were picked in this transaction (:func:`pick_codes`), so each is still
    available. A customer who holds a live code of the series already makes the
    whole batch roll back to the savepoint and raise ``UniqueViolation``.
    """
    tx.execute("SAVEPOINT code_pool_assign")
    try:
        # Positional parameters: the hot path binds one tuple per code.
        tx.executemany(
            "UPDATE codes SET state = 'assigned', grant_id = ?, customer_id = ?,"
            " campaign_id = ?, assigned_at = ? WHERE id = ?",
            ((grant, customer, campaign, now, code) for code, grant, customer, campaign in rows),
        )
    except BaseException:
        tx.execute("ROLLBACK TO code_pool_assign")
        tx.execute("RELEASE code_pool_assign")
        raise
    tx.execute("RELEASE code_pool_assign")


def advance_pool(tx: Transaction, pool_id: int, *, taken: int, after: int, now: float) -> None:
    """``taken`` codes left the pool; its cursor moves to ``after``."""
    tx.execute(
        "UPDATE code_pools SET available = available - :taken,"
        f" alloc_after = {tx.dialect.greatest('alloc_after', ':after')}, updated_at = :now"
        " WHERE id = :id",
        {"taken": taken, "after": after, "now": now, "id": pool_id},
    )


def codes_of_grants(tx: Transaction, grant_ids: Sequence[int]) -> dict[int, tuple[Any, ...]]:
    """Codes already assigned to these grants: ``{grant id: (code id, code, expires_at,
    value_minor, pool, series)}``.

    The ledger's grant ids of one batch are close together: one range read on
    ``codes_grant`` (usually empty) answers for all of them.
    """
    if not grant_ids:
        return {}
    wanted = set(grant_ids)
    low, high = min(wanted), max(wanted)
    select = (
        "SELECT c.grant_id, c.id, c.code, c.expires_at, c.value_minor, p.name, p.series"
        " FROM codes c JOIN code_pools p ON p.id = c.pool_id"
    )
    if high - low < _RANGE_SLACK * len(wanted):
        rows = tx.fetch_all(
            f"{select} WHERE c.grant_id BETWEEN :low AND :high", {"low": low, "high": high}
        )
    else:
        ids = sorted(wanted)
        rows = []
        for start in range(0, len(ids), _IN_CHUNK):
            rows.extend(
                tx.fetch_all(
                    f"{select} WHERE {tx.dialect.in_array('c.grant_id', 'ids')}",
                    {"ids": tx.dialect.array(ids[start : start + _IN_CHUNK])},
                )
            )
    return {int(r[0]): tuple(r[i] for i in range(1, 7)) for r in rows if int(r[0]) in wanted}


def held_series(tx: Transaction, pairs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which ``(customer id, series)`` pairs hold a live (not revoked) code."""
    found: set[tuple[str, str]] = set()
    for customer, series in pairs:
        row = tx.fetch_one(
            "SELECT 1 FROM codes WHERE customer_id = :customer AND series = :series"
            " AND state <> 'revoked'",
            {"customer": customer, "series": series},
        )
        if row is not None:
            found.add((customer, series))
    return found


def revoke_grant_code(tx: Transaction, grant_id: int, now: float) -> int:
    """Revoke the code of a grant if it is still assigned (a redeemed one stays)."""
    return tx.execute(
        "UPDATE codes SET state = 'revoked', ended_at = :now"
        " WHERE grant_id = :grant AND state = 'assigned'",
        {"now": now, "grant": grant_id},
    )
