"""Benchmark: compile and run segments over 1,000,000 customers and 5,000,000 events.

Builds a throw-away SQLite database (schema of migration 0002) in a temporary directory,
fills it with generated customers, tags, consents and a year of events, then times
``compile_segment`` + executing the SQL for a typical rule and a few others. Prints the
figures and removes the database.

    .venv/bin/python bench/segments.py [--customers N] [--events N] [--repeat N]
"""

from __future__ import annotations

import argparse
import re
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from promod.campaigns.segments import compile_segment, parse_segment, register_sql_functions

MIGRATION = Path(__file__).resolve().parent.parent / "promod/store/migrations/0002_customers.sql"
AS_OF = 1_790_000_000
YEAR = 365 * 86400

RULES: dict[str, dict[str, Any]] = {
    "typical (tag + attr in + 90d sum + not 30d)": {
        "all": [
            {"tag": "bonus_interest"},
            {"attr": "country", "in": ["DE", "AT"]},
            {"event": "purchase", "within": "90d", "sum": "amount", "gte": 100},
            {"not": {"event": "purchase", "within": "30d"}},
        ]
    },
    "attr ltv >= 500 (integers)": {"attr": "ltv", "gte": 500},
    'attr score >= "2.5" (decimal strings)': {"attr": "score", "gte": "2.5"},
    "3+ logins in 30d": {"event": "login", "within": "30d", "gte": 3},
    "consent + tag": {"all": [{"consent": "marketing_email"}, {"tag": "newsletter"}]},
    "no purchase in 180d (count lt 1)": {"event": "purchase", "within": "180d", "lt": 1},
}


def build(path: Path, customers: int, events: int) -> None:
    script = MIGRATION.read_text()
    event_indexes = re.findall(r"CREATE INDEX events_\w+ ON events \([^)]*\);", script)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")
    conn.executescript(script)
    for statement in event_indexes:
        conn.execute("DROP INDEX " + statement.split()[2])
    conn.execute("BEGIN")
    conn.execute(
        """
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
        INSERT INTO customers (id, email, timezone, attributes, created_at, updated_at)
        SELECT 'c' || i, 'c' || i || '@example.org', 'Europe/Berlin',
               json_object(
                   'country', CASE abs(random()) % 5 WHEN 0 THEN 'DE' WHEN 1 THEN 'AT'
                              WHEN 2 THEN 'FR' WHEN 3 THEN 'NL' ELSE 'PL' END,
                   'ltv', abs(random()) % 1000,
                   'score', printf('%d.%d', abs(random()) % 5, abs(random()) % 10),
                   'vip', json(CASE WHEN abs(random()) % 10 = 0 THEN 'true' ELSE 'false' END)),
               '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z'
        FROM n
        """,
        (customers,),
    )
    for tag, percent in (("bonus_interest", 20), ("newsletter", 50), ("sports", 30)):
        conn.execute(
            "INSERT INTO customer_tags (tag, customer_id) "
            "SELECT ?, id FROM customers WHERE abs(random()) % 100 < ?",
            (tag, percent),
        )
    conn.execute(
        "INSERT INTO customer_consents (customer_id, consent, granted, updated_at, source) "
        "SELECT id, 'marketing_email', abs(random()) % 100 < 90, '2026-01-01T00:00:00Z', 'import'"
        " FROM customers WHERE abs(random()) % 100 < 60"
    )
    conn.execute(
        """
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
        INSERT INTO events (customer_id, name, ts, properties)
        SELECT 'c' || (1 + abs(random()) % ?), kind, ? - abs(random()) % ?,
               CASE kind WHEN 'purchase'
                   THEN json_object('amount', printf('%d.%02d', abs(random()) % 120,
                                                     abs(random()) % 100))
                   ELSE '{}' END
        FROM (SELECT i, CASE abs(random()) % 5 WHEN 0 THEN 'purchase' WHEN 1 THEN 'purchase'
                        WHEN 2 THEN 'login' WHEN 3 THEN 'login' ELSE 'cart_abandoned' END
                        AS kind FROM n)
        """,
        (events, customers, AS_OF, YEAR),
    )
    conn.execute("COMMIT")
    for statement in event_indexes:
        conn.execute(statement)
    conn.execute("ANALYZE")
    conn.close()


def measure(path: Path, repeat: int) -> None:
    conn = sqlite3.connect(path)
    register_sql_functions(conn)
    for label, rule in RULES.items():
        best = float("inf")
        found = 0
        for _ in range(repeat):
            started = time.perf_counter()
            sql, params = compile_segment(parse_segment(rule), as_of=AS_OF)
            found = len(conn.execute(sql, params).fetchall())
            best = min(best, time.perf_counter() - started)
        print(f"{label:48s} {best:7.3f} s  {found:>9,} customers")
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="promod-bench-") as tmp:
        path = Path(tmp) / "segments.db"
        started = time.perf_counter()
        build(path, args.customers, args.events)
        size = path.stat().st_size / 2**20
        print(
            f"built {args.customers:,} customers, {args.events:,} events "
            f"({size:,.0f} MiB) in {time.perf_counter() - started:.1f} s"
        )
        print(f"sqlite {sqlite3.sqlite_version}; best of {args.repeat} (compile + execute + fetch)")
        measure(path, args.repeat)


if __name__ == "__main__":
    main()
