"""Writing validated customers and events straight into the store (the HTTP API's path).

The same semantics as a committed import (:mod:`promod.customers.imports`): a customer
written again is replaced — profile, attributes, tags and consents as given, consents it
does not list are dropped, a consent's ``updated_at`` only moves when its value changes;
an event whose ``id`` is already stored is a duplicate and skipped. The functions take a
plain ``sqlite3`` connection inside the caller's transaction, so a whole batch is one
``Database.run_sync`` call::

    summary = await db.run_sync(lambda conn: upsert_customers_sync(conn, customers,
                                                                   now=clock.now(), source="api"))
    summary.created, summary.updated
    stored, duplicates = await db.run_sync(lambda conn: insert_events_sync(conn, events))
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from promod.clock import utc_iso
from promod.customers.records import Customer, Event
from promod.store.seam import SqliteTransaction
from promod.tags.store import replace_customer_tags

__all__ = [
    "StoredEvent",
    "UpsertSummary",
    "insert_events_sync",
    "upsert_customers_sync",
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
    conn: sqlite3.Connection, customers: Sequence[Customer], *, now: float, source: str
) -> UpsertSummary:
    """Create or replace ``customers`` (a repeated id: the last one wins)."""
    batch: dict[str, Customer] = {}
    for customer in customers:
        batch.pop(customer.id, None)
        batch[customer.id] = customer
    if not batch:
        return UpsertSummary(created=[], updated=[])
    existing = {
        row[0]
        for row in conn.execute(
            "SELECT id FROM customers WHERE id IN (SELECT value FROM json_each(?))",
            (_dumps(list(batch)),),
        )
    }
    stamp = utc_iso(now)
    rows = list(batch.values())
    conn.executemany(
        UPSERT_CUSTOMER,
        [(c.id, c.email, c.timezone, _dumps(c.attributes), stamp, stamp) for c in rows],
    )
    replace_customer_tags(
        SqliteTransaction(conn), tags={c.id: c.tags for c in rows}, source=source, now=now
    )
    conn.executemany(
        "DELETE FROM customer_consents WHERE customer_id = ?"
        " AND consent NOT IN (SELECT value FROM json_each(?))",
        [(c.id, _dumps(list(c.consents))) for c in rows],
    )
    conn.executemany(
        UPSERT_CONSENT,
        [
            (c.id, name, int(granted), stamp, source)
            for c in rows
            for name, granted in c.consents.items()
        ],
    )
    created = [cid for cid in batch if cid not in existing]
    updated = [cid for cid in batch if cid in existing]
    return UpsertSummary(created=created, updated=updated)


def insert_events_sync(
    conn: sqlite3.Connection, events: Sequence[Event]
) -> tuple[list[StoredEvent], list[str]]:
    """Store ``events`` in order; returns (the stored ones, the ids skipped as duplicates).

    Must run in a write transaction (``BEGIN IMMEDIATE``): the new rows' ``seq`` are
    the consecutive row ids after the current largest one.
    """
    ids = [e.event_id for e in events if e.event_id is not None]
    known: set[str] = set()
    if ids:
        known = {
            row[0]
            for row in conn.execute(
                "SELECT event_id FROM events WHERE event_id IN (SELECT value FROM json_each(?))",
                (_dumps(ids),),
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
    last = int(conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])
    conn.executemany(
        "INSERT INTO events (seq, event_id, customer_id, name, ts, properties)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [
            (last + i, e.event_id, e.customer_id, e.name, e.ts, _dumps(e.properties))
            for i, e in enumerate(fresh, start=1)
        ],
    )
    return [StoredEvent(seq=last + i, event=e) for i, e in enumerate(fresh, start=1)], duplicates
