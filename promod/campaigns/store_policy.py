"""Policy budget counters in the store: are any still kept without a currency?

Before budgets had a currency, a provider's policy counters were keyed
``provider:<name>``; start-up re-keys them once (``promod/daemon.py``, with
``promod.ledger.caps.migrate_currencyless_sync``) when this finds any.
"""

from __future__ import annotations

from promod.store.seam import Transaction

__all__ = ["currencyless_counters_sync"]


def currencyless_counters_sync(tx: Transaction) -> bool:
    """Whether any policy counter still has the old, currency-less key."""
    row = tx.fetch_one("SELECT 1 FROM cap_counters WHERE scope LIKE 'provider:%' LIMIT 1")
    return row is not None
