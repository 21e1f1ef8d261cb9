"""Test data written straight into a promod database (fast, for large campaigns)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path

NOW_ISO = "2026-11-01T00:00:00Z"


def seed_customers(
    db: Path,
    ids: Iterable[str],
    *,
    tags: Iterable[str] = ("bonus_interest",),
    timezone: str | None = None,
    timezones: dict[str, str] | None = None,
    attributes: dict[str, dict[str, object]] | None = None,
    consents: Iterable[str] = (),
) -> int:
    """Insert customers (with tags and consents) in one transaction; returns how many."""
    tags = list(tags)
    consents = list(consents)
    rows = []
    for cid in ids:
        tz = (timezones or {}).get(cid, timezone)
        attrs = json.dumps((attributes or {}).get(cid, {}))
        rows.append((cid, f"{cid}@example.org", tz, attrs, NOW_ISO, NOW_ISO))
    with sqlite3.connect(db, timeout=30) as conn:
        conn.executemany(
            "INSERT INTO customers (id, email, timezone, attributes, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
        conn.executemany(
            "INSERT INTO customer_tags (tag, customer_id) VALUES (?, ?)",
            [(t, r[0]) for r in rows for t in tags],
        )
        conn.executemany(
            "INSERT INTO customer_consents (customer_id, consent, granted, updated_at, source)"
            " VALUES (?, ?, 1, ?, 'test')",
            [(r[0], c, NOW_ISO) for r in rows for c in consents],
        )
    return len(rows)


def wallet_spec(
    campaign_id: str = "winback",
    *,
    caps: str = "",
    schedule: str = 'start = "now"\ndelivery = "immediate"',
    amount: str = "500",
    value: str = "5.00",
    timezone: str = "UTC",
    segment: str = 'all = [{ tag = "bonus_interest" }]',
) -> str:
    return f"""
id = "{campaign_id}"
name = "Test campaign {campaign_id}"
kind = "past_behavior"
timezone = "{timezone}"

[schedule]
{schedule}

[segment]
{segment}

[reward]
provider = "wallet_points"
amount = "{amount}"
value = "{value}"
currency = "EUR"

[caps]
{caps}
"""


def grants(db: Path, campaign_id: str) -> list[tuple[str, int, str]]:
    with sqlite3.connect(db, timeout=30) as conn:
        return conn.execute(
            "SELECT customer_id, value_minor, state FROM grants WHERE campaign_id = ?",
            (campaign_id,),
        ).fetchall()
