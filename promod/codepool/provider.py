"""The built-in ``code_pool`` reward provider: one unique code per grant, in its transaction.

A campaign with ``[reward] provider = "code_pool", pool = "XMAS25"`` gets one
available code of the pool per grant. Allocation runs inside the ledger's grant
transaction (the seam's :class:`~promod.store.seam.Transaction`), so a code is
assigned exactly when its grant commits: never twice, whatever the concurrency or
a crash. The SQL is in :mod:`promod.codepool.store_alloc` (allocation behind a
cursor per pool). Refusals are raised *before anything is written*, so the ledger
can catch them inside its transaction, refuse or re-route the grants named, and
call :meth:`CodePoolProvider.issue_batch` again with the rest::

    provider = CodePoolProvider()
    try:
        issued = provider.issue_batch(tx, grants, now)     # one IssuedReward per grant, in order
    except SeriesDuplicate as exc:
        exc.refused        # {grant_id: "series_duplicate"}: refuse these grants, retry the others
    except PoolExhausted as exc:
        exc.available      # codes left: issue that many, then the fallback or pause
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from promod.campaigns.spec_values import PoolName
from promod.codepool.store import note_drained
from promod.codepool.store_alloc import (
    Picked,
    PoolCursor,
    advance_pool,
    assign_codes,
    codes_of_grants,
    held_series,
    pick_codes,
    pool_cursor,
    revoke_grant_code,
)
from promod.rewards.provider import GrantRequest, IssuedReward, OutOfInventory, RewardRejected
from promod.schema import Model
from promod.store.seam import Transaction, TxLike, UniqueViolation, as_tx


class CodePoolOptions(Model):
    """A code_pool reward: the ``pool`` each grant takes one unique code from."""

    pool: PoolName


__all__ = ["CodePoolProvider", "PoolExhausted", "SeriesDuplicate"]


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

    def available(self, tx: TxLike, options: Mapping[str, Any]) -> int | None:
        """Available single-use codes of ``options["pool"]`` (0 for an unknown pool)."""
        pool = pool_cursor(as_tx(tx), str(options.get("pool", "")))
        return 0 if pool is None else pool.available

    def issue_batch(
        self, tx: TxLike, grants: Sequence[GrantRequest], now: float
    ) -> list[IssuedReward]:
        if not grants:
            return []
        tx = as_tx(tx)
        existing = {
            gid: _issued(row[:4], str(row[4]), str(row[5]))
            for gid, row in codes_of_grants(tx, [g.id for g in grants]).items()
        }
        pools: dict[str, PoolCursor] = {}
        wanted: dict[str, list[GrantRequest]] = {}
        for grant in grants:
            name = _pool_name(grant)
            if grant.id in existing:
                continue
            if name not in pools:
                pool = pool_cursor(tx, name)
                if pool is None:
                    raise PoolExhausted(name, 0, sum(1 for g in grants if _pool_name(g) == name))
                pools[name] = pool
            wanted.setdefault(name, []).append(grant)

        picked: dict[str, list[Picked]] = {}
        for name, batch in wanted.items():
            rows = pick_codes(tx, pools[name], len(batch), now)
            if len(rows) < len(batch):
                raise PoolExhausted(name, len(rows), len(batch))
            picked[name] = rows

        issued: dict[int, IssuedReward] = existing
        for name, batch in wanted.items():
            pool, rows = pools[name], picked[name]
            try:
                assign_codes(
                    tx,
                    [
                        (row[0], g.id, g.customer_id, g.campaign_id)
                        for g, row in zip(batch, rows, strict=True)
                    ],
                    now,
                )
            except UniqueViolation:
                self._raise_series_duplicates(tx, wanted, pools)
                raise
            advance_pool(tx, pool.id, taken=len(batch), after=rows[-1][0], now=now)
            if not pool.low_alerted and pool.available - len(batch) <= pool.threshold:
                note_drained(tx, pool.id, now)
            rewards = _rewards(rows, pool.name, pool.series)
            if len(wanted) == 1 and not existing:
                return rewards  # the usual batch: one pool, nothing issued before, in order
            issued.update(zip((g.id for g in batch), rewards, strict=True))
        return [issued[g.id] for g in grants]

    @staticmethod
    def _raise_series_duplicates(
        tx: Transaction,
        wanted: Mapping[str, Sequence[GrantRequest]],
        pools: Mapping[str, PoolCursor],
    ) -> None:
        """Raise SeriesDuplicate naming every grant whose customer holds the series."""
        pairs = {(g.customer_id, pools[name].series) for name, b in wanted.items() for g in b}
        held = held_series(tx, sorted(pairs))
        refused: dict[int, str] = {}
        refused_series: dict[int, str] = {}
        seen: set[tuple[str, str]] = set()
        for name, batch in wanted.items():
            series = pools[name].series
            for grant in batch:
                key = (grant.customer_id, series)
                if key in seen or key in held:
                    refused[grant.id] = "series_duplicate"
                    refused_series[grant.id] = series
                seen.add(key)
        if refused:
            raise SeriesDuplicate(refused, refused_series)

    def revoke_sync(self, tx: TxLike, grant: GrantRequest, now: float | None = None) -> None:
        """Revoke the code of ``grant`` if it is still assigned (a redeemed one stays).

        ``now`` is the app's clock reading of the revocation; the system clock only
        when a caller gives none.
        """
        revoke_grant_code(as_tx(tx), grant.id, time.time() if now is None else now)


def _issued(row: Sequence[Any], pool: str, series: str) -> IssuedReward:
    return _rewards([row], pool, series)[0]


def _rewards(rows: Sequence[Any], pool: str, series: str) -> list[IssuedReward]:
    """One IssuedReward per picked ``(id, code, expires_at, value_minor)``."""
    shared: Mapping[str, Any] = MappingProxyType({"pool": pool, "series": series})
    return [
        IssuedReward(
            f"code:{row[0]}",
            row[1],
            row[2],
            shared if row[3] is None else {"pool": pool, "series": series, "value_minor": row[3]},
        )
        for row in rows
    ]
