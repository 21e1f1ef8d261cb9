"""A customer's consents as the preference page and the consent API see and change them.

Every change is written with its source (``page``, ``api``; one-click links write
``unsubscribe``, imports ``import``, CRM syncs ``crm:NAME``) and kept in
``consent_history`` by the triggers of migration 0011::

    view = await db.run(partial(consents_view, customer_id="c42"), write=False)
    await db.run(partial(change_consents, customer_id="c42",
                         changes={"loyalty_reminders": False}, source="page", now=now))
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from promod.notify import store
from promod.notify.unsubscribe import suppress_sync
from promod.store.seam import Transaction

__all__ = ["CONSENT_SOURCES", "change_consents", "consents_view", "unsubscribe_everything"]

CONSENT_SOURCES = ("page", "unsubscribe", "api", "import", "crm")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def consents_view(tx: Transaction, customer_id: str, history: int = 20) -> dict[str, Any] | None:
    """The customer's consents and latest changes; None when there is no such customer."""
    if not store.customer_exists(tx, customer_id):
        return None
    return {
        "customer_id": customer_id,
        "consents": {
            str(r[0]): {"granted": bool(r[1]), "updated_at": str(r[2]), "source": str(r[3])}
            for r in store.consents_of(tx, customer_id)
        },
        "history": [
            {
                "consent": str(r[0]),
                "granted": bool(r[1]),
                "source": str(r[2]),
                "changed_at": str(r[3]),
            }
            for r in store.consent_history(tx, customer_id, history)
        ],
    }


def change_consents(
    tx: Transaction,
    customer_id: str,
    changes: Mapping[str, bool],
    *,
    source: str,
    now: float,
) -> dict[str, Any] | None:
    """Grant or withdraw the named consents; the view after it, or None (no customer)."""
    if not store.customer_exists(tx, customer_id):
        return None
    at = _iso(now)
    for consent, granted in sorted(changes.items()):
        store.set_consent(tx, customer_id, consent, granted, at=at, source=source)
    return consents_view(tx, customer_id)


def unsubscribe_everything(
    tx: Transaction, customer_id: str, *, source: str, now: float
) -> dict[str, Any] | None:
    """Withdraw every consent and suppress the customer's address; None (no customer)."""
    if not store.customer_exists(tx, customer_id):
        return None
    names = [str(r[0]) for r in store.consents_of(tx, customer_id)]
    change_consents(tx, customer_id, dict.fromkeys(names, False), source=source, now=now)
    email = store.customer_email(tx, customer_id)
    if email:
        suppress_sync(
            tx,
            email,
            "unsubscribed",
            source=source,
            now=now,
            customer_id=customer_id,
            detail="everything",
        )
    return consents_view(tx, customer_id)
