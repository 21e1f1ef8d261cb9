"""The built-in ``code_pool`` reward provider: one unique code per grant, in its transaction.

A campaign with ``[reward] provider = "code_pool", pool = "XMAS25"`` gets one
available code of the pool per grant. Allocation runs inside the ledger's grant
transaction (``Database.run_sync``), so a code is assigned exactly when its grant
commits: never twice, whatever the concurrency or a crash. Refusals are raised
*before anything is written*, so the ledger can catch them inside its transaction,
refuse or re-route the grants named, and call :meth:`CodePoolProvider.issue_batch`
again with the rest::

    provider = CodePoolProvider()
    try:
        issued = provider.issue_batch(conn, grants, now)   # one IssuedReward per grant, in order
    except SeriesDuplicate as exc:
        exc.refused        # {grant_id: "series_duplicate"}: refuse these grants, retry the others
    except PoolExhausted as exc:
        exc.available      # codes left: issue that many, then the fallback or pause
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping, Sequence
from typing import Any

from promod.campaigns.spec_values import PoolName
from promod.codepool.store import Pool, get_pool, note_drained
from promod.ledger.store import backend_connection
from promod.rewards.provider import GrantRequest, IssuedReward, OutOfInventory, RewardRejected
from promod.schema import Model


class CodePoolOptions(Model):
    """A code_pool reward: the ``pool`` each grant takes one unique code from."""

    pool: PoolName


__all__ = ["CodePoolProvider", "PoolExhausted", "SeriesDuplicate"]

_IN_CHUNK = 500


class SeriesDuplicate(RewardRejected):
    """Some customers of the batch already hold a code of the pool's series.

    ``refused`` maps each such grant's id to ``"series_duplicate"``. Nothing was
    written: refuse those grants and issue the others in a new call.
    """

    def __init__(self, refused: Mapping[int, str], series: Mapping[int, str]) -> None:
        self.refused = dict(refused)
        self.series = dict(series)  # grant id -> series name
        super().__init__(f"{len(self.refused)} customer(s) already hold a code of the same series")


class PoolExhausted(OutOfInventory):
    """The pool has fewer available codes than the batch needs (``available`` of ``needed``).

    Nothing was written. Issue ``available`` grants first if you like, then use the
    campaign's fallback reward or pause it.
    """

    def __init__(self, pool: str, available: int, needed: int) -> None:
        self.pool = pool
        self.available = available
        self.needed = needed
        super().__init__(f"code pool {pool!r} has {available} available codes, {needed} needed")


def _pool_name(grant: GrantRequest) -> str:
    pool = grant.options.get("pool")
    if not isinstance(pool, str) or not pool:
        raise RewardRejected(f"grant {grant.id}: the code_pool reward names no pool")
    return pool


class CodePoolProvider:
    """Transactional provider ``code_pool`` (see the module docstring)."""

    name = "code_pool"
    options_model = CodePoolOptions
    transactional = True

    def available(self, tx: Any, options: Mapping[str, Any]) -> int | None:
        """Available single-use codes of ``options["pool"]`` (0 for an unknown pool)."""
        conn = backend_connection(tx)
        pool = get_pool(conn, str(options.get("pool", "")))
        return 0 if pool is None else pool.available

    def issue_batch(
        self, tx: Any, grants: Sequence[GrantRequest], now: float
    ) -> list[IssuedReward]:
        conn = backend_connection(tx)
        if not grants:
            return []
        existing = self._already_issued(conn, grants)
        pools: dict[str, Pool] = {}
        wanted: dict[str, list[GrantRequest]] = {}
        for grant in grants:
            name = _pool_name(grant)
            if grant.id in existing:
                continue
            if name not in pools:
                pool = get_pool(conn, name)
                if pool is None:
                    raise PoolExhausted(name, 0, sum(1 for g in grants if _pool_name(g) == name))
                pools[name] = pool
            wanted.setdefault(name, []).append(grant)

        picked: dict[str, list[Any]] = {}
        for name, batch in wanted.items():
            pool = pools[name]
            rows = conn.execute(
                "SELECT id, code, expires_at, value_minor FROM codes"
                " WHERE pool_id = ? AND state = 'available' AND max_uses = 1"
                " AND (expires_at IS NULL OR expires_at > ?) ORDER BY id LIMIT ?",
                (pool.id, now, len(batch)),
            ).fetchall()
            if len(rows) < len(batch):
                raise PoolExhausted(name, len(rows), len(batch))
            picked[name] = rows

        # The unique index (customer_id, series) refuses a second code of a series;
        # on a refusal the savepoint undoes the batch and the culprits are found.
        conn.execute("SAVEPOINT code_pool_issue")
        try:
            for name, batch in wanted.items():
                before = conn.total_changes
                conn.executemany(
                    "UPDATE codes SET state = 'assigned', customer_id = ?, grant_id = ?,"
                    " campaign_id = ?, assigned_at = ? WHERE id = ? AND state = 'available'",
                    [
                        (g.customer_id, g.id, g.campaign_id, now, row[0])
                        for g, row in zip(batch, picked[name], strict=True)
                    ],
                )
                if conn.total_changes - before != len(batch):
                    raise RuntimeError(f"code pool {name!r}: a picked code was taken meanwhile")
        except BaseException as exc:
            conn.execute("ROLLBACK TO code_pool_issue")
            conn.execute("RELEASE code_pool_issue")
            if isinstance(exc, sqlite3.IntegrityError):
                self._raise_series_duplicates(conn, wanted, pools)
            raise
        conn.execute("RELEASE code_pool_issue")

        issued: dict[int, IssuedReward] = dict(existing)
        for name, batch in wanted.items():
            pool = pools[name]
            conn.execute(
                "UPDATE code_pools SET available = available - ?, updated_at = ? WHERE id = ?",
                (len(batch), now, pool.id),
            )
            note_drained(conn, pool.id, now)
            for grant, row in zip(batch, picked[name], strict=True):
                issued[grant.id] = _issued(row, pool.name, pool.series)
        return [issued[g.id] for g in grants]

    @staticmethod
    def _raise_series_duplicates(
        conn: sqlite3.Connection,
        wanted: Mapping[str, Sequence[GrantRequest]],
        pools: Mapping[str, Pool],
    ) -> None:
        """Raise SeriesDuplicate naming every grant whose customer holds the series."""
        refused: dict[int, str] = {}
        refused_series: dict[int, str] = {}
        seen: set[tuple[str, str]] = set()
        for name, batch in wanted.items():
            series = pools[name].series
            for grant in batch:
                key = (grant.customer_id, series)
                held = key in seen or (
                    conn.execute(
                        "SELECT 1 FROM codes WHERE customer_id = ? AND series = ?"
                        " AND state <> 'revoked'",
                        key,
                    ).fetchone()
                    is not None
                )
                if held:
                    refused[grant.id] = "series_duplicate"
                    refused_series[grant.id] = series
                seen.add(key)
        if refused:
            raise SeriesDuplicate(refused, refused_series)

    def revoke_sync(self, tx: Any, grant: GrantRequest) -> None:
        """Revoke the code of ``grant`` if it is still assigned (a redeemed one stays)."""
        conn = backend_connection(tx)
        conn.execute(
            "UPDATE codes SET state = 'revoked', ended_at = ?"
            " WHERE grant_id = ? AND state = 'assigned'",
            (time.time(), grant.id),
        )

    @staticmethod
    def _already_issued(
        conn: sqlite3.Connection, grants: Sequence[GrantRequest]
    ) -> dict[int, IssuedReward]:
        """Codes already assigned to these grants (a repeated call returns the same ones)."""
        found: dict[int, IssuedReward] = {}
        ids = [g.id for g in grants]
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            for row in conn.execute(
                "SELECT c.grant_id, c.id, c.code, c.expires_at, c.value_minor, p.name, p.series"
                " FROM codes c JOIN code_pools p ON p.id = c.pool_id"
                f" WHERE c.grant_id IN ({marks})",
                chunk,
            ):
                found[int(row[0])] = _issued(row[1:5], str(row[5]), str(row[6]))
        return found


def _issued(row: Sequence[Any], pool: str, series: str) -> IssuedReward:
    details: dict[str, Any] = {"pool": pool, "series": series}
    if row[3] is not None:
        details["value_minor"] = int(row[3])
    return IssuedReward(
        reference=f"code:{int(row[0])}",
        code=str(row[1]),
        expires_at=None if row[2] is None else float(row[2]),
        details=details,
    )
