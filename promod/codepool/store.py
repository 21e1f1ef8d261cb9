"""Code pools in the database: pools, bulk loading, lifecycle, low-stock alerts, stats.

Every function is a store function of the seam: it takes the
:class:`~promod.store.seam.Transaction` that ``Database.run`` opened and never
commits, so each change commits or rolls back with the caller's work
(docs/architecture.md, "The store seam"). Pools keep ``available`` and ``loaded``
counters that every change of state updates in the same transaction, and the
allocation cursor ``alloc_after`` (see :mod:`promod.codepool.store_alloc`)::

    pool = ensure_pool(tx, "XMAS25", now=now)
    added = generate_into(tx, pool, CodeSpec.build(pattern="XMAS-####-####"), 10_000, now=now)
    expire_sync(tx, now)                   # the codepool actor's sweep
    stats_sync(tx, "XMAS25", now)          # counts per state, burn rate, run-out
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from promod.codepool.generate import CodeSpec, KeyspaceError, check_keyspace
from promod.notify.outbox import enqueue_sync
from promod.store.seam import Transaction

__all__ = [
    "POOL_NAME",
    "STATES",
    "Pool",
    "PoolError",
    "adjust_counts",
    "codes_report",
    "configure_pool",
    "ensure_pool",
    "expire_sync",
    "generate_into",
    "get_pool",
    "list_pools",
    "note_drained",
    "note_replenished",
    "pool_counts",
    "require_pool",
    "revoke_code",
    "revoke_unassigned",
    "series_size",
    "stats_sync",
]

STATES = ("available", "assigned", "redeemed", "expired", "revoked")
POOL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
STAGE_CHUNK = 100_000
DAY = 86_400.0


class PoolError(Exception):
    """A refused pool operation (unknown pool, bad settings); ``code`` is an admin error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Pool:
    id: int
    name: str
    series: str
    low_absolute: int | None
    low_percent: int | None
    low_alerted: bool
    available: int
    loaded: int

    @property
    def threshold(self) -> int:
        """Available codes at or below which the pool is low (0 without settings: empty)."""
        found = self.low_absolute or 0
        if self.low_percent:
            found = max(found, math.ceil(self.loaded * self.low_percent / 100))
        return found

    def to_dict(self) -> dict[str, Any]:
        return {
            "pool": self.name,
            "series": self.series,
            "available": self.available,
            "loaded": self.loaded,
            "low_absolute": self.low_absolute,
            "low_percent": self.low_percent,
            "threshold": self.threshold,
            "low": self.low_alerted,
        }


_POOL_COLUMNS = "id, name, series, low_absolute, low_percent, low_alerted, available, loaded"


def _pool(row: Any) -> Pool:
    return Pool(
        id=int(row[0]),
        name=str(row[1]),
        series=str(row[2]),
        low_absolute=row[3],
        low_percent=row[4],
        low_alerted=bool(row[5]),
        available=int(row[6]),
        loaded=int(row[7]),
    )


def get_pool(tx: Transaction, name: str) -> Pool | None:
    row = tx.fetch_one(f"SELECT {_POOL_COLUMNS} FROM code_pools WHERE name = :name", {"name": name})
    return None if row is None else _pool(row)


def _pool_by_id(tx: Transaction, pool_id: int) -> Pool:
    row = tx.fetch_one(f"SELECT {_POOL_COLUMNS} FROM code_pools WHERE id = :id", {"id": pool_id})
    assert row is not None
    return _pool(row)


def require_pool(tx: Transaction, name: str) -> Pool:
    pool = get_pool(tx, name)
    if pool is None:
        raise PoolError("not_found", f"no code pool {name!r}")
    return pool


def pool_counts(tx: Transaction, pool_id: int) -> tuple[int, int]:
    """``(available, loaded)`` of a pool."""
    pool = _pool_by_id(tx, pool_id)
    return pool.available, pool.loaded


def _check_name(value: str, what: str) -> None:
    if not POOL_NAME.fullmatch(value):
        raise PoolError(
            "invalid_args",
            f"{what} {value!r}: letters, digits and _ . : - (starting with a letter or digit)",
        )


def ensure_pool(tx: Transaction, name: str, *, now: float, series: str | None = None) -> Pool:
    """The pool ``name``, created (series = ``series`` or the pool's name) if missing.

    A given ``series`` must match an existing pool's unless that pool is still empty.
    """
    _check_name(name, "pool")
    if series is not None:
        _check_name(series, "series")
    pool = get_pool(tx, name)
    if pool is None:
        pool_id = tx.fetch_value(
            "INSERT INTO code_pools (name, series, created_at, updated_at)"
            " VALUES (:name, :series, :now, :now) RETURNING id",
            {"name": name, "series": series or name, "now": now},
        )
        return _pool_by_id(tx, int(pool_id))
    if series is not None and series != pool.series:
        if pool.loaded:
            raise PoolError(
                "conflict",
                f"pool {name!r} holds codes of series {pool.series!r}; its series cannot change",
            )
        tx.execute(
            "UPDATE code_pools SET series = :series, updated_at = :now WHERE id = :id",
            {"series": series, "now": now, "id": pool.id},
        )
        return _pool_by_id(tx, pool.id)
    return pool


def configure_pool(
    tx: Transaction,
    name: str,
    *,
    now: float,
    series: str | None = None,
    low_absolute: int | None = None,
    low_percent: int | None = None,
) -> Pool:
    """Create or change a pool; a threshold of 0 turns that threshold off."""
    if low_absolute is not None and low_absolute < 0:
        raise PoolError("invalid_args", "low must be 0 or more")
    if low_percent is not None and not 0 <= low_percent <= 100:
        raise PoolError("invalid_args", "low_percent must be 0 to 100")
    pool = ensure_pool(tx, name, now=now, series=series)
    if low_absolute is not None:
        tx.execute(
            "UPDATE code_pools SET low_absolute = :low, updated_at = :now WHERE id = :id",
            {"low": low_absolute or None, "now": now, "id": pool.id},
        )
    if low_percent is not None:
        tx.execute(
            "UPDATE code_pools SET low_percent = :low, updated_at = :now WHERE id = :id",
            {"low": low_percent or None, "now": now, "id": pool.id},
        )
    pool = _pool_by_id(tx, pool.id)
    # New thresholds count as a crossing in either direction.
    if pool.available > pool.threshold:
        note_replenished(tx, pool.id)
    elif pool.loaded:
        note_drained(tx, pool.id, now)
    return _pool_by_id(tx, pool.id)


def list_pools(tx: Transaction) -> list[Pool]:
    rows = tx.fetch_all(f"SELECT {_POOL_COLUMNS} FROM code_pools ORDER BY name")
    return [_pool(row) for row in rows]


def series_size(tx: Transaction, series: str) -> int:
    """Codes ever loaded into the pools of ``series``."""
    return int(
        tx.fetch_value(
            "SELECT coalesce(sum(loaded), 0) FROM code_pools WHERE series = :series",
            {"series": series},
            0,
        )
    )


# ---------------------------------------------------------------- low-stock alerts


def note_drained(tx: Transaction, pool_id: int, now: float) -> bool:
    """After codes left the pool: emit ``codepool.low`` once when at/below the threshold."""
    pool = _pool_by_id(tx, pool_id)
    if pool.low_alerted or pool.available > pool.threshold:
        return False
    tx.execute("UPDATE code_pools SET low_alerted = 1 WHERE id = :id", {"id": pool_id})
    enqueue_sync(
        tx,
        "codepool.low",
        {
            "pool": pool.name,
            "series": pool.series,
            "available": pool.available,
            "threshold": pool.threshold,
            "low_absolute": pool.low_absolute,
            "low_percent": pool.low_percent,
        },
        now=now,
    )
    return True


def note_replenished(tx: Transaction, pool_id: int) -> bool:
    """After codes were added: re-arm the alert once the pool is above its threshold."""
    pool = _pool_by_id(tx, pool_id)
    if pool.low_alerted and pool.available > pool.threshold:
        tx.execute("UPDATE code_pools SET low_alerted = 0 WHERE id = :id", {"id": pool_id})
        return True
    return False


def adjust_counts(tx: Transaction, pool_id: int, available: int, loaded: int, now: float) -> None:
    """Move a pool's ``available`` and ``loaded`` counters by these amounts."""
    tx.execute(
        "UPDATE code_pools SET available = available + :available, loaded = loaded + :loaded,"
        " updated_at = :now WHERE id = :id",
        {"available": available, "loaded": loaded, "now": now, "id": pool_id},
    )


# ---------------------------------------------------------------- loading


def _stage(tx: Transaction, codes: Iterable[str]) -> None:
    """Append codes to the temporary staging table (no index: appends stay cheap)."""
    tx.execute("CREATE TEMP TABLE IF NOT EXISTS codes_stage (code TEXT NOT NULL)")
    tx.executemany("INSERT INTO codes_stage (code) VALUES (:code)", ({"code": c} for c in codes))


def _merge(
    tx: Transaction,
    pool: Pool,
    *,
    now: float,
    expires_at: float | None,
    value_minor: int | None,
    max_uses: int,
    limit: int,
) -> int:
    """Move staged codes into ``codes`` in code order, skipping any already in the series.

    Sorted input keeps the unique index's inserts local (one pass over the index),
    which is what makes a million codes load in seconds. New codes take ids above
    every existing one, so above every pool's allocation cursor. Returns how many
    were added.
    """
    added = tx.execute(
        "INSERT INTO codes"
        " (pool_id, series, code, value_minor, expires_at, max_uses, created_at)"
        " SELECT :pool, :series, code, :value, :expires, :max_uses, :now FROM codes_stage"
        " WHERE true ORDER BY code LIMIT :limit"
        " ON CONFLICT (code, series) DO NOTHING",
        {
            "pool": pool.id,
            "series": pool.series,
            "value": value_minor,
            "expires": expires_at,
            "max_uses": max_uses,
            "now": now,
            "limit": limit,
        },
    )
    tx.execute("DELETE FROM codes_stage")
    if added:
        adjust_counts(tx, pool.id, added if max_uses == 1 else 0, added, now)
    return added


def generate_into(
    tx: Transaction,
    pool: Pool,
    spec: CodeSpec,
    count: int,
    *,
    now: float,
    expires_at: float | None = None,
    value_minor: int | None = None,
    max_uses: int = 1,
    check_total: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Generate ``count`` new codes, unique in the pool's series, into ``pool``.

    The keyspace check (for ``check_total`` codes when given: the whole request of
    which this is one part) runs before anything is written. Codes are drawn in
    chunks into a staging table, then merged in one sorted pass; codes that
    collide are drawn again. Returns ``count``.
    """
    check_keyspace(spec, max(count, check_total or 0), series_size(tx, pool.series))
    need = count
    stalled = 0
    while need > 0:
        for start in range(0, need, STAGE_CHUNK):
            _stage(tx, spec.generate(min(STAGE_CHUNK, need - start)))
        added = _merge(
            tx,
            pool,
            now=now,
            expires_at=expires_at,
            value_minor=value_minor,
            max_uses=max_uses,
            limit=need,
        )
        need -= added
        if progress is not None:
            progress(count - need)
        stalled = stalled + 1 if added == 0 else 0
        if stalled > 20:
            raise KeyspaceError(
                f"could not find {need:,} more unused codes; the series is too full"
            )
    note_replenished(tx, pool.id)
    return count


def revoke_code(tx: Transaction, pool_name: str, code: str, now: float) -> str:
    """Revoke one code of a pool; returns the state it had. Redeemed codes cannot be."""
    pool = require_pool(tx, pool_name)
    row = tx.fetch_one(
        "SELECT id, state, max_uses FROM codes"
        " WHERE code = :code AND series = :series AND pool_id = :pool",
        {"code": code, "series": pool.series, "pool": pool.id},
    )
    if row is None:
        raise PoolError("not_found", f"pool {pool_name!r} has no such code")
    code_id, state, max_uses = int(row[0]), str(row[1]), int(row[2])
    if state == "revoked":
        return state
    if state == "redeemed":
        raise PoolError("conflict", "the code was redeemed already; it cannot be revoked")
    tx.execute(
        "UPDATE codes SET state = 'revoked', ended_at = :now WHERE id = :id",
        {"now": now, "id": code_id},
    )
    if state == "available" and max_uses == 1:
        adjust_counts(tx, pool.id, -1, 0, now)
        note_drained(tx, pool.id, now)
    return state


def revoke_unassigned(tx: Transaction, pool_name: str, now: float) -> int:
    """Revoke every available code of a pool; returns how many."""
    pool = require_pool(tx, pool_name)
    count = tx.execute(
        "UPDATE codes SET state = 'revoked', ended_at = :now"
        " WHERE pool_id = :pool AND state = 'available'",
        {"now": now, "pool": pool.id},
    )
    if count:
        tx.execute(
            "UPDATE code_pools SET available = 0, updated_at = :now WHERE id = :id",
            {"now": now, "id": pool.id},
        )
        note_drained(tx, pool.id, now)
    return count


def expire_sync(tx: Transaction, now: float, limit: int = 50_000) -> dict[str, int]:
    """Mark up to ``limit`` codes past their expiry as expired; ``{pool: count}``."""
    rows = tx.fetch_all(
        "SELECT id, pool_id, state, max_uses FROM codes"
        " WHERE expires_at IS NOT NULL AND state IN ('available', 'assigned')"
        " AND expires_at <= :now LIMIT :limit",
        {"now": now, "limit": limit},
    )
    if not rows:
        return {}
    tx.executemany(
        "UPDATE codes SET state = 'expired', ended_at = :now WHERE id = :id",
        [{"now": now, "id": int(r[0])} for r in rows],
    )
    drained: dict[int, int] = {}
    touched: dict[int, int] = {}
    for row in rows:
        pool_id, state, max_uses = int(row[1]), str(row[2]), int(row[3])
        touched[pool_id] = touched.get(pool_id, 0) + 1
        if state == "available" and max_uses == 1:
            drained[pool_id] = drained.get(pool_id, 0) + 1
    for pool_id, n in drained.items():
        adjust_counts(tx, pool_id, -n, 0, now)
        note_drained(tx, pool_id, now)
    names = {int(r[0]): str(r[1]) for r in tx.fetch_all("SELECT id, name FROM code_pools")}
    return {names[pid]: n for pid, n in touched.items()}


def stats_sync(tx: Transaction, pool_name: str, now: float) -> dict[str, Any]:
    """Counts per state, codes assigned in the last day and the projected run-out."""
    pool = require_pool(tx, pool_name)
    counts = dict.fromkeys(STATES, 0)
    burned = 0
    since = now - DAY
    for row in tx.fetch_all(
        "SELECT state, count(*),"
        " coalesce(sum(CASE WHEN assigned_at >= :since THEN 1 ELSE 0 END), 0)"
        " FROM codes WHERE pool_id = :pool GROUP BY state",
        {"since": since, "pool": pool.id},
    ):
        counts[str(row[0])] = int(row[1])
        burned += int(row[2])
    redeemed_day = tx.fetch_value(
        "SELECT count(*) FROM code_redemptions r JOIN codes c ON c.id = r.code_id"
        " WHERE r.redeemed_at >= :since AND c.pool_id = :pool",
        {"since": since, "pool": pool.id},
        0,
    )
    runout: float | None = None
    if burned and pool.available:
        runout = now + pool.available / burned * DAY
    elif burned:
        runout = now
    return {
        **pool.to_dict(),
        "counts": counts,
        "burn_rate_per_day": burned,
        "redeemed_last_day": int(redeemed_day),
        "projected_runout_at": runout,
        "projected_runout_in": None if runout is None else round(runout - now, 1),
    }


def codes_report(tx: Transaction, campaign_id: str) -> dict[str, Any]:
    """``{issued_codes, redemptions, redemption_rate}`` of a campaign (rate 0..1, 4 digits).

    Unique codes of the code pools and shared coupon codes (``coupon`` grants, each
    redeemable once) both count: a coupon grant is one issued code, its redemption
    one redemption. ``{}`` for a campaign that was never given a code, so reports of
    other campaigns carry no code section.
    """
    key = {"campaign": campaign_id}
    row = tx.fetch_one(
        "SELECT count(*), coalesce(sum(CASE WHEN state = 'redeemed' THEN 1 ELSE 0 END), 0)"
        " FROM codes WHERE campaign_id = :campaign",
        key,
    )
    assert row is not None
    issued, redeemed = int(row[0]), int(row[1])
    issued += int(
        tx.fetch_value(
            "SELECT count(*) FROM grants WHERE campaign_id = :campaign AND provider = 'coupon'"
            " AND state = 'issued' AND code IS NOT NULL",
            key,
            0,
        )
    )
    redeemed += int(
        tx.fetch_value(
            "SELECT count(*) FROM coupon_redemptions WHERE campaign_id = :campaign", key, 0
        )
    )
    if not issued:
        return {}
    return {
        "issued_codes": issued,
        "redemptions": redeemed,
        "redemption_rate": round(redeemed / issued, 4),
    }
