"""Writing validated customers and events straight into the store (the HTTP API's path).

The same semantics as a committed import (:mod:`promod.customers.imports`): a customer
written again is replaced — profile, attributes, tags and consents as given, consents it
does not list are dropped, a consent's ``updated_at`` only moves when its value changes;
an event whose ``id`` is already stored is a duplicate and skipped. The functions take the
caller's :class:`~promod.store.seam.Transaction`, so a whole batch is one
``Database.run`` call::

    summary = await db.run(lambda tx: upsert_customers_sync(tx, customers,
                                                            now=clock.now(), source="api"))
    summary.created, summary.updated
    stored, duplicates = await db.run(lambda tx: insert_events_sync(tx, events))
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from promod.clock import utc_iso
from promod.customers.records import Customer, Event
from promod.store.seam import Row, Transaction, TxLike, as_tx

__all__ = [
    "StoredEvent",
    "UpsertSummary",
    "consenting_sync",
    "customer_known_sync",
    "has_grants_sync",
    "insert_events_sync",
    "profile_sync",
    "upsert_customers_sync",
    "wallet_points_sync",
    "write_customers_sync",
]

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

UPSERT_CUSTOMER = """
INSERT INTO customers (id, email, timezone, attributes, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
    email = excluded.email,
    timezone = excluded.timezone,
    attributes = excluded.attributes,
    updated_at = excluded.updated_at
"""

UPSERT_CONSENT = """
INSERT INTO customer_consents (customer_id, consent, granted, updated_at, source)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (customer_id, consent) DO UPDATE SET
    updated_at = CASE WHEN granted = excluded.granted THEN updated_at
                      ELSE excluded.updated_at END,
    granted = excluded.granted,
    source = excluded.source
"""


@dataclass(frozen=True)
class UpsertSummary:
    """How many customers a write created and how many it replaced (ids in input order)."""

    created: list[str]
    updated: list[str]


@dataclass(frozen=True)
class StoredEvent:
    """An event as stored: ``seq`` is its row number in ``events`` (increasing)."""

    seq: int
    event: Event


def upsert_customers_sync(
    tx: TxLike, customers: Sequence[Customer], *, now: float, source: str
) -> UpsertSummary:
    """Create or replace ``customers`` (a repeated id: the last one wins)."""
    tx = as_tx(tx)
    batch: dict[str, Customer] = {}
    for customer in customers:
        batch.pop(customer.id, None)
        batch[customer.id] = customer
    if not batch:
        return UpsertSummary(created=[], updated=[])
    existing = {
        row[0]
        for row in tx.fetch_all(
            f"SELECT id FROM customers WHERE {tx.dialect.in_array('id', 'ids')}",
            {"ids": tx.dialect.array(batch)},
        )
    }
    write_customers_sync(tx, list(batch.values()), stamp=utc_iso(now), source=source)
    created = [cid for cid in batch if cid not in existing]
    updated = [cid for cid in batch if cid in existing]
    return UpsertSummary(created=created, updated=updated)


def write_customers_sync(
    tx: Transaction, rows: Sequence[Customer], *, stamp: str, source: str
) -> None:
    """Create or replace each customer of ``rows`` (ids unique) with tags and consents."""
    tx.executemany(
        UPSERT_CUSTOMER,
        [(c.id, c.email, c.timezone, _dumps(c.attributes), stamp, stamp) for c in rows],
    )
    tx.executemany("DELETE FROM customer_tags WHERE customer_id = ?", [(c.id,) for c in rows])
    tx.executemany(
        tx.dialect.insert_ignore("customer_tags", ("tag", "customer_id"), ("tag", "customer_id")),
        [{"tag": tag, "customer_id": c.id} for c in rows for tag in c.tags],
    )
    tx.executemany(
        "DELETE FROM customer_consents WHERE customer_id = :id"
        f" AND NOT {tx.dialect.in_array('consent', 'keep')}",
        [{"id": c.id, "keep": tx.dialect.array(c.consents)} for c in rows],
    )
    tx.executemany(
        UPSERT_CONSENT,
        [
            (c.id, name, int(granted), stamp, source)
            for c in rows
            for name, granted in c.consents.items()
        ],
    )


def insert_events_sync(tx: TxLike, events: Sequence[Event]) -> tuple[list[StoredEvent], list[str]]:
    """Store ``events`` in order; returns (the stored ones, the ids skipped as duplicates).

    Each new row's ``seq`` is the one the store gives it (``RETURNING``): increasing.
    """
    tx = as_tx(tx)
    ids = [e.event_id for e in events if e.event_id is not None]
    known: set[str] = set()
    if ids:
        known = {
            row[0]
            for row in tx.fetch_all(
                f"SELECT event_id FROM events WHERE {tx.dialect.in_array('event_id', 'ids')}",
                {"ids": tx.dialect.array(ids)},
            )
        }
    fresh: list[Event] = []
    duplicates: list[str] = []
    for event in events:
        if event.event_id is not None:
            if event.event_id in known:
                duplicates.append(event.event_id)
                continue
            known.add(event.event_id)
        fresh.append(event)
    if not fresh:
        return [], duplicates
    stored = [
        StoredEvent(
            seq=int(
                tx.fetch_value(
                    "INSERT INTO events (event_id, customer_id, name, ts, properties)"
                    " VALUES (:event_id, :customer_id, :name, :ts, :properties) RETURNING seq",
                    {
                        "event_id": e.event_id,
                        "customer_id": e.customer_id,
                        "name": e.name,
                        "ts": e.ts,
                        "properties": _dumps(e.properties),
                    },
                )
            ),
            event=e,
        )
        for e in fresh
    ]
    return stored, duplicates


def consenting_sync(tx: TxLike, consent: str) -> set[str]:
    """The ids of every customer who has granted ``consent``."""
    tx = as_tx(tx)
    return {
        row[0]
        for row in as_tx(tx).fetch_all(
            "SELECT customer_id FROM customer_consents WHERE consent = :consent AND granted = 1",
            {"consent": consent},
        )
    }


def profile_sync(
    tx: Transaction, customer_id: str
) -> tuple[Row, list[Row], list[Row], Row | None] | None:
    """A customer's row, tags, consents and (event count, last ts); None if unknown."""
    params = {"id": customer_id}
    row = tx.fetch_one(
        "SELECT id, email, timezone, attributes, created_at, updated_at"
        " FROM customers WHERE id = :id",
        params,
    )
    if row is None:
        return None
    tags = tx.fetch_all(
        "SELECT tag FROM customer_tags WHERE customer_id = :id ORDER BY tag", params
    )
    consents = tx.fetch_all(
        "SELECT consent, granted, updated_at, source FROM customer_consents"
        " WHERE customer_id = :id ORDER BY consent",
        params,
    )
    events = tx.fetch_one("SELECT count(*), max(ts) FROM events WHERE customer_id = :id", params)
    return row, tags, consents, events


def wallet_points_sync(tx: Transaction, customer_id: str) -> int | None:
    """The customer's wallet balance in points; None without a wallet."""
    value = tx.fetch_value(
        "SELECT points FROM wallet_balances WHERE customer_id = :id", {"id": customer_id}
    )
    return None if value is None else int(value)


def customer_known_sync(tx: Transaction, customer_id: str) -> bool:
    """Whether the customer has a profile."""
    row = tx.fetch_one("SELECT 1 FROM customers WHERE id = :id", {"id": customer_id})
    return row is not None


def has_grants_sync(tx: Transaction, customer_id: str) -> bool:
    """Whether any grant was ever made to the customer."""
    row = tx.fetch_one("SELECT 1 FROM grants WHERE customer_id = :id LIMIT 1", {"id": customer_id})
    return row is not None
