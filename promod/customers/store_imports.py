"""Streaming imports of customers and events in the store: staging and the one commit.

:mod:`promod.customers.imports` validates rows and calls these in one transaction
each (docs/architecture.md, "The store seam"). Staged rows wait in ``import_staging``
(their validated record as JSON); the commit moves them into the real tables::

    state = await db.run(lambda tx: load_sync(tx, import_id), write=False)
    summary = await db.run(lambda tx: commit_customers_sync(tx, import_id, stamp))
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from promod.customers.records import Customer
from promod.customers.store import write_customers_sync
from promod.store.seam import Row, Transaction

__all__ = [
    "begin_sync",
    "commit_customers_sync",
    "commit_events_sync",
    "discard_sync",
    "load_sync",
    "stage_sync",
]

COMMIT_BATCH = 5000

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def discard_sync(tx: Transaction, import_id: str) -> None:
    tx.execute("DELETE FROM import_staging WHERE import_id = :id", {"id": import_id})
    tx.execute("DELETE FROM imports WHERE import_id = :id", {"id": import_id})


def begin_sync(
    tx: Transaction, import_id: str, kind: str, fmt: str, *, now: int, abandoned_before: int
) -> None:
    """Record a new import; imports untouched since ``abandoned_before`` are discarded."""
    for row in tx.fetch_all(
        "SELECT import_id FROM imports WHERE touched_at < :before", {"before": abandoned_before}
    ):
        discard_sync(tx, row[0])
    tx.execute(
        "INSERT INTO imports (import_id, kind, format, started_at, touched_at)"
        " VALUES (:id, :kind, :format, :now, :now)",
        {"id": import_id, "kind": kind, "format": fmt, "now": now},
    )


def load_sync(tx: Transaction, import_id: str) -> Row | None:
    """The ``imports`` row: import_id, kind, format, rows, staged, error_count, errors."""
    return tx.fetch_one(
        "SELECT import_id, kind, format, rows, staged, error_count, errors"
        " FROM imports WHERE import_id = :id",
        {"id": import_id},
    )


def stage_sync(
    tx: Transaction,
    import_id: str,
    valid: Sequence[tuple[int, str]],
    *,
    drop_staged: bool,
    rows: int,
    staged: int,
    error_count: int,
    errors: list[dict[str, Any]],
    now: int,
) -> None:
    """Stage ``valid`` (line, payload) rows (none once a row failed) and the new counts.

    A line staged before raises :class:`~promod.store.seam.UniqueViolation`.
    """
    if valid:
        tx.executemany(
            "INSERT INTO import_staging (import_id, line, payload) VALUES (:id, :line, :payload)",
            [{"id": import_id, "line": line, "payload": payload} for line, payload in valid],
        )
    if drop_staged:
        tx.execute("DELETE FROM import_staging WHERE import_id = :id", {"id": import_id})
    tx.execute(
        "UPDATE imports SET rows = :rows, staged = :staged, error_count = :errors_n,"
        " errors = :errors, touched_at = :now WHERE import_id = :id",
        {
            "rows": rows,
            "staged": staged,
            "errors_n": error_count,
            "errors": _dumps(errors),
            "now": now,
            "id": import_id,
        },
    )


def _staged(tx: Transaction, import_id: str) -> Any:
    """The staged payloads in line order, a batch at a time: (line, payload) rows."""
    last_line = 0
    while True:
        rows = tx.fetch_all(
            "SELECT line, payload FROM import_staging WHERE import_id = :id AND line > :after"
            " ORDER BY line LIMIT :n",
            {"id": import_id, "after": last_line, "n": COMMIT_BATCH},
        )
        if not rows:
            return
        last_line = int(rows[-1][0])
        yield rows


def commit_customers_sync(
    tx: Transaction, import_id: str, stamp: str, source: str
) -> dict[str, Any]:
    """Write every staged customer (the last occurrence of an id wins)."""
    imported = created = 0
    for rows in _staged(tx, import_id):
        batch: dict[str, Customer] = {}
        order: list[str] = []
        for _line, payload in rows:
            customer = Customer.from_dict(json.loads(payload))
            order.append(customer.id)
            batch.pop(customer.id, None)  # the last occurrence wins, in its own place
            batch[customer.id] = customer
        existing = {
            row[0]
            for row in tx.fetch_all(
                f"SELECT id FROM customers WHERE {tx.dialect.in_array('id', 'ids')}",
                {"ids": tx.dialect.array(batch)},
            )
        }
        seen: set[str] = set()
        for customer_id in order:
            if customer_id not in existing and customer_id not in seen:
                created += 1
            seen.add(customer_id)
        imported += len(order)
        write_customers_sync(tx, list(batch.values()), stamp=stamp, source=source)
    return {"imported": imported, "created": created, "updated": imported - created}


def commit_events_sync(tx: Transaction, import_id: str) -> dict[str, Any]:
    """Store every staged event in line order; an ``id`` already stored is skipped."""
    total = inserted = 0
    insert = tx.dialect.insert_ignore(
        "events", ("event_id", "customer_id", "name", "ts", "properties"), ("event_id",)
    )
    for rows in _staged(tx, import_id):
        events = [json.loads(payload) for _line, payload in rows]
        total += len(events)
        inserted += tx.executemany(
            insert,
            [
                {
                    "event_id": e.get("id"),
                    "customer_id": e["customer_id"],
                    "name": e["name"],
                    "ts": e["ts"],
                    "properties": _dumps(e.get("properties", {})),
                }
                for e in events
            ],
        )
    return {"imported": inserted, "skipped": total - inserted}
