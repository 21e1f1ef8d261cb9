"""The daemon's own alerts in the outbox: a store outage and an actor restart.

``promod/daemon.py`` records them in one transaction each (docs/architecture.md,
"The store seam"); the notifier routes them per ``[alerts]``.
"""

from __future__ import annotations

from typing import Any

from promod.notify.outbox import enqueue_sync
from promod.store.seam import Transaction

__all__ = ["record_outage_sync", "record_restart_sync"]


def record_outage_sync(
    tx: Transaction, *, event_id: str, payload: dict[str, Any], now: float, sent: bool
) -> None:
    """Keep the alert in the outbox: done when it went out, else for the notifier to send."""
    enqueue_sync(tx, "store.unavailable", payload, now=now, event_id=event_id)
    if sent:
        tx.execute("UPDATE outbox SET state = 'done' WHERE event_id = :id", {"id": event_id})


def record_restart_sync(tx: Transaction, *, payload: dict[str, Any], now: float) -> str:
    return enqueue_sync(tx, "actor.restarted", payload, now=now)
