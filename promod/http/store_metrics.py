"""What ``/metrics`` reads from the store, in one read transaction.

:mod:`promod.http.metrics` turns these rows into Prometheus series
(docs/architecture.md, "The store seam"). A table an older schema lacks gives no
rows.
"""

from __future__ import annotations

from typing import Any

from promod.crm import store as crm_store
from promod.store.seam import SchemaMismatch, Transaction

__all__ = ["crm_metrics_sync", "store_metrics_sync"]

_QUERIES = {
    "grants": "SELECT campaign_id, provider, state, count(*) FROM grants"
    " GROUP BY campaign_id, provider, state",
    "spend": "SELECT campaign_id, currency, sum(value_minor) FROM grants"
    " WHERE state IN ('reserved', 'issued') GROUP BY campaign_id, currency",
    "refusals": "SELECT r.campaign_id, coalesce(t.reason, 'unknown'), count(*)"
    " FROM run_targets t JOIN runs r ON r.id = t.run_id WHERE t.status = 'refused'"
    " GROUP BY r.campaign_id, t.reason",
    "outbox": "SELECT state, count(*) FROM outbox GROUP BY state",
    "deliveries": "SELECT kind, channel, state, count(*) FROM deliveries"
    " GROUP BY kind, channel, state",
    "wallet": "SELECT coalesce(sum(points), 0) FROM wallet_balances",
}


def store_metrics_sync(tx: Transaction) -> dict[str, list[Any]]:
    """Every store-backed series, by name: its rows as tuples."""
    out: dict[str, list[Any]] = {}
    for key, sql in _QUERIES.items():
        try:
            out[key] = [tuple(row) for row in tx.fetch_all(sql)]
        except SchemaMismatch:
            out[key] = []
    return out


def crm_metrics_sync(tx: Transaction) -> list[tuple[Any, ...]]:
    """Each CRM connector's last applied refresh (see ``crm.store.metrics_rows``)."""
    try:
        return list(crm_store.metrics_rows(tx))
    except Exception as exc:  # an older schema
        if "no such table" in str(exc):
            return []
        raise
