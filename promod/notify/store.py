"""The notify store: every statement on ``outbox``, ``deliveries``, ``suppressions`` and
the unsubscribe key, written against :class:`promod.store.seam.Transaction`.

The outbox, fan-out, the notifier's claims and marks, the outbox commands and the
unsubscribe path call these functions inside ``Database.run`` (docs/architecture.md,
"The store seam")::

    rows = await db.run(partial(due_deliveries, channel="mail", now=now, limit=500))

Callers that still hold a plain driver connection pass it through
:func:`promod.store.seam.as_tx`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from promod.store.seam import Row, Transaction, as_tx

__all__ = ["MARKETING_SQL", "as_tx"]

MARKETING_SQL = "(kind = 'message' OR (kind = 'webhook' AND type = 'reward.granted'))"
KILLSWITCH_KEY = "killswitch"

_CLAIM_COLUMNS = (
    "id",
    "event_id",
    "type",
    "kind",
    "message",
    "attempts",
    "customer_id",
    "recipient",
    "consent",
)
_DELIVERY_COLUMNS = (
    "event_id",
    "type",
    "kind",
    "channel",
    "customer_id",
    "recipient",
    "consent",
    "campaign_id",
    "message",
    "state",
    "next_attempt_at",
    "last_error",
    "created_at",
    "updated_at",
)


# --------------------------------------------------------------------------- outbox


def insert_events(tx: Transaction, rows: Iterable[Mapping[str, Any]]) -> None:
    """Outbox events ``{event_id, type, payload, created_at}``; a known event_id is kept."""
    tx.executemany(
        tx.dialect.insert_ignore(
            "outbox", ("event_id", "type", "payload", "created_at"), ("event_id",)
        ),
        list(rows),
    )


def pending_events(tx: Transaction, limit: int) -> list[Row]:
    return tx.fetch_all(
        "SELECT id, event_id, type, payload, created_at FROM outbox"
        " WHERE state = 'pending' ORDER BY id LIMIT :limit",
        {"limit": limit},
    )


def events_done(tx: Transaction, ids: Sequence[int], now: float) -> None:
    tx.executemany(
        "UPDATE outbox SET state = 'done', fanned_at = :now WHERE id = :id",
        [{"now": now, "id": i} for i in ids],
    )


# --------------------------------------------------------------------------- fan-out


def insert_delivery(tx: Transaction, values: Mapping[str, Any]) -> int:
    """One delivery (the columns of ``_DELIVERY_COLUMNS``); 0 when it exists already."""
    return tx.execute(
        tx.dialect.insert_ignore("deliveries", _DELIVERY_COLUMNS, ("event_id", "kind", "channel")),
        {c: values.get(c) for c in _DELIVERY_COLUMNS},
    )


def run_spec(tx: Transaction, campaign_id: str, run_id: Any) -> str | None:
    """The spec JSON a run was made with, else the campaign's current one."""
    if run_id is not None:
        found = tx.fetch_value(
            "SELECT cv.spec FROM runs r JOIN campaign_versions cv"
            " ON cv.campaign_id = r.campaign_id AND cv.version = r.version WHERE r.id = :run",
            {"run": run_id},
        )
        if found is not None:
            return str(found)
    spec = tx.fetch_value("SELECT spec FROM campaigns WHERE id = :id", {"id": campaign_id})
    return None if spec is None else str(spec)


def customer_email(tx: Transaction, customer_id: str) -> str | None:
    email = tx.fetch_value("SELECT email FROM customers WHERE id = :id", {"id": customer_id})
    return str(email) if email else None


def customer_exists(tx: Transaction, customer_id: str) -> bool:
    return tx.fetch_one("SELECT 1 FROM customers WHERE id = :id", {"id": customer_id}) is not None


def consent_row(tx: Transaction, customer_id: str, consent: str) -> Row | None:
    """``(granted, updated_at)`` of one consent of a customer, or None."""
    return tx.fetch_one(
        "SELECT granted, updated_at FROM customer_consents"
        " WHERE customer_id = :customer AND consent = :consent",
        {"customer": customer_id, "consent": consent},
    )


def killswitch_engaged(tx: Transaction) -> bool:
    return tx.fetch_one("SELECT 1 FROM meta WHERE key = :k", {"k": KILLSWITCH_KEY}) is not None


# --------------------------------------------------------------------------- claims and marks


def due_deliveries(
    tx: Transaction, channel: str, now: float, limit: int, hold_marketing: bool
) -> list[dict[str, Any]]:
    """Pending deliveries of ``channel`` due at ``now``, oldest first (marketing held)."""
    held = f" AND NOT {MARKETING_SQL}" if hold_marketing else ""
    rows = tx.fetch_all(
        f"SELECT {', '.join(_CLAIM_COLUMNS)} FROM deliveries"
        " WHERE state = 'pending' AND channel = :channel"
        f" AND next_attempt_at <= :now{held} ORDER BY next_attempt_at, id LIMIT :limit",
        {"channel": channel, "now": now, "limit": limit},
    )
    return [{c: r[i] for i, c in enumerate(_CLAIM_COLUMNS)} for r in rows]


def skip_deliveries(tx: Transaction, skipped: Iterable[tuple[str, float, int]]) -> None:
    """Mark pending deliveries ``skipped``: ``[(reason, now, id)]``."""
    tx.executemany(
        "UPDATE deliveries SET state = 'skipped', last_error = :reason, updated_at = :now"
        " WHERE id = :id AND state = 'pending'",
        [{"reason": r, "now": n, "id": i} for r, n, i in skipped],
    )


def next_due_at(
    tx: Transaction, channel: str, hold_marketing: bool, exclude: Iterable[int]
) -> float | None:
    """When the next pending delivery of ``channel`` not in ``exclude`` is due."""
    held = f" AND NOT {MARKETING_SQL}" if hold_marketing else ""
    due = tx.fetch_value(
        "SELECT min(next_attempt_at) FROM deliveries"
        f" WHERE state = 'pending' AND channel = :channel{held}"
        f" AND NOT {tx.dialect.in_array('id', 'busy')}",
        {"channel": channel, "busy": tx.dialect.array(sorted(exclude))},
    )
    return None if due is None else float(due)


def mark_sent(tx: Transaction, ids: Sequence[int], now: float) -> None:
    tx.executemany(
        "UPDATE deliveries SET state = 'sent', attempts = attempts + 1,"
        " sent_at = :now, updated_at = :now, last_error = NULL"
        " WHERE id = :id AND state = 'pending'",
        [{"now": now, "id": i} for i in ids],
    )


def finish(tx: Transaction, delivery_id: int, state: str, error: str, now: float) -> None:
    tx.execute(
        "UPDATE deliveries SET state = :state, last_error = :error, updated_at = :now"
        " WHERE id = :id AND state = 'pending'",
        {"state": state, "error": error, "now": now, "id": delivery_id},
    )


def dead_letter(tx: Transaction, delivery_id: int, attempts: int, error: str, now: float) -> None:
    tx.execute(
        "UPDATE deliveries SET state = 'dead', attempts = :attempts, last_error = :error,"
        " updated_at = :now WHERE id = :id AND state = 'pending'",
        {"attempts": attempts, "error": error, "now": now, "id": delivery_id},
    )


def retry_later(
    tx: Transaction, delivery_id: int, attempts: int, error: str, at: float, now: float
) -> None:
    tx.execute(
        "UPDATE deliveries SET attempts = :attempts, last_error = :error, next_attempt_at = :at,"
        " updated_at = :now WHERE id = :id AND state = 'pending'",
        {"attempts": attempts, "error": error, "at": at, "now": now, "id": delivery_id},
    )


# --------------------------------------------------------------------------- figures


def pending_event_figures(tx: Transaction) -> tuple[int, float | None]:
    row = tx.fetch_one("SELECT count(*), min(created_at) FROM outbox WHERE state = 'pending'")
    assert row is not None
    return int(row[0]), None if row[1] is None else float(row[1])


def delivery_figures(tx: Transaction) -> list[Row]:
    """Per channel and state: count, oldest created_at, how many were tried already."""
    return tx.fetch_all(
        "SELECT channel, state, count(*), min(created_at),"
        " sum(CASE WHEN attempts > 0 THEN 1 ELSE 0 END)"
        " FROM deliveries GROUP BY channel, state"
    )


# --------------------------------------------------------------------------- outbox commands


def list_deliveries(
    tx: Transaction, state: str, channel: str | None, limit: int
) -> list[dict[str, Any]]:
    sql = (
        "SELECT id, event_id, type, kind, channel, customer_id, campaign_id, state, attempts,"
        " last_error, created_at, updated_at, next_attempt_at FROM deliveries"
        " WHERE state = :state"
    )
    if channel:
        sql += " AND channel = :channel"
    sql += " ORDER BY updated_at DESC, id DESC LIMIT :limit"
    rows = tx.fetch_all(sql, {"state": state, "channel": channel, "limit": limit})
    return [{key: row[key] for key in row.keys()} for row in rows]


def delivery_state(tx: Transaction, delivery_id: int) -> str | None:
    state = tx.fetch_value("SELECT state FROM deliveries WHERE id = :id", {"id": delivery_id})
    return None if state is None else str(state)


def retry_dead(tx: Transaction, channel: str | None, now: float) -> int:
    sql = (
        "UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = :now,"
        " updated_at = :now, last_error = NULL WHERE state = 'dead'"
    )
    if channel:
        sql += " AND channel = :channel"
    return tx.execute(sql, {"now": now, "channel": channel})


def retry_one(tx: Transaction, delivery_id: int, now: float) -> None:
    tx.execute(
        "UPDATE deliveries SET state = 'pending', next_attempt_at = :now, updated_at = :now,"
        " attempts = CASE WHEN state = 'pending' THEN attempts ELSE 0 END WHERE id = :id",
        {"now": now, "id": delivery_id},
    )


def drop_one(tx: Transaction, delivery_id: int, now: float) -> None:
    tx.execute(
        "UPDATE deliveries SET state = 'dropped', updated_at = :now WHERE id = :id",
        {"now": now, "id": delivery_id},
    )


# --------------------------------------------------------------------------- unsubscribe


def meta_value(tx: Transaction, key: str) -> str | None:
    value = tx.fetch_value("SELECT value FROM meta WHERE key = :key", {"key": key})
    return None if value is None else str(value)


def meta_insert_new(tx: Transaction, key: str, value: str) -> None:
    tx.execute(
        tx.dialect.insert_ignore("meta", ("key", "value"), ("key",)), {"key": key, "value": value}
    )


def upsert_suppression(tx: Transaction, values: Mapping[str, Any]) -> None:
    """Add or refresh one address on the suppression list."""
    tx.execute(
        tx.dialect.upsert(
            "suppressions",
            ("address", "reason", "source", "customer_id", "detail", "created_at"),
            ("address",),
            {
                "reason": "excluded.reason",
                "source": "excluded.source",
                "customer_id": "coalesce(excluded.customer_id, suppressions.customer_id)",
                "detail": "excluded.detail",
                "created_at": "excluded.created_at",
            },
        ),
        values,
    )


def suppression(tx: Transaction, address: str) -> tuple[str, float] | None:
    row = tx.fetch_one(
        "SELECT reason, created_at FROM suppressions WHERE address = :address",
        {"address": address},
    )
    return None if row is None else (str(row[0]), float(row[1]))


def lift_unsubscribed(tx: Transaction, address: str) -> int:
    """Remove an ``unsubscribed`` entry of ``address`` (a consent was granted again)."""
    return tx.execute(
        "DELETE FROM suppressions WHERE address = :address AND reason = 'unsubscribed'",
        {"address": address},
    )


# --------------------------------------------------------------------------- consents


def set_consent(
    tx: Transaction, customer_id: str, consent: str, granted: bool, *, at: str, source: str
) -> None:
    """Grant or withdraw one consent; ``updated_at`` moves only when ``granted`` changes.

    A trigger of migration 0011 keeps every change in ``consent_history``.
    """
    tx.execute(
        tx.dialect.upsert(
            "customer_consents",
            ("customer_id", "consent", "granted", "updated_at", "source"),
            ("customer_id", "consent"),
            {
                "updated_at": "CASE WHEN customer_consents.granted = excluded.granted"
                " THEN customer_consents.updated_at ELSE excluded.updated_at END",
                "granted": "excluded.granted",
                "source": "excluded.source",
            },
        ),
        {
            "customer_id": customer_id,
            "consent": consent,
            "granted": 1 if granted else 0,
            "updated_at": at,
            "source": source,
        },
    )


def consents_of(tx: Transaction, customer_id: str) -> list[Row]:
    """``(consent, granted, updated_at, source)`` of every consent a customer has a row for."""
    return tx.fetch_all(
        "SELECT consent, granted, updated_at, source FROM customer_consents"
        " WHERE customer_id = :customer ORDER BY consent",
        {"customer": customer_id},
    )


def consent_history(tx: Transaction, customer_id: str, limit: int = 100) -> list[Row]:
    """The latest consent changes of a customer, newest first."""
    return tx.fetch_all(
        "SELECT consent, granted, source, changed_at FROM consent_history"
        " WHERE customer_id = :customer ORDER BY id DESC LIMIT :limit",
        {"customer": customer_id, "limit": limit},
    )
