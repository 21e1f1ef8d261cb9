"""Benchmark: tag rules on the event path, and a full check, against a plain SQLite baseline.

Builds a database with promod's migrations (WAL, ``synchronous = FULL``, as the daemon
runs it) holding generated customers and a history of events, applies two rules (the
examples of docs/tags.md), then posts batches of new events and times the tagger's pass
over each batch (``promod.tags.store.process_events`` through ``Database.run``: the
rules that read those events, for those customers, tags + reasons + history + cursor in
one transaction). The baseline, on a copy of the same database and the same batches, is
the leanest hand-written SQL for the same facts and durability: one transaction per
batch on a plain ``sqlite3`` connection with the same pragmas that inserts the tags
and their history rows for the batch's qualifying customers and moves a cursor, its
queries driven by the batch's rows (sums as SQL floats, no rule parsing, no Python
per row).

Prints events/s, p50/p99 per batch, the ratio to the baseline, the full check of one
rule over every customer, and the peak RSS of the process.

    .venv/bin/python bench/tags.py [--customers N] [--history N] [--batches N] [--batch N]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import sqlite3
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import anyio

from promod.campaigns.segments import register_sql_functions
from promod.store.database import Database
from promod.tags import store
from promod.tags.rules import load_rules

AS_OF = 1_800_000_000
DAY = 86400

RULES = """
[rules.bonus_interest]
tag = "bonus_interest"
segment = { event = "page_view", within = "30d", where = { page = { eq = "/bonus" } } }

[rules.revenue_incomplete_profile]
tag = "revenue_incomplete_profile"
mode = "add"
segment = { all = [
  { event = "purchase", within = "90d", sum = "amount", gt = 0 },
  { not = { attr = "profile_complete", eq = true } },
] }
"""

BASELINE = [
    # bonus_interest: a qualifying page view among the new events.
    """
    INSERT INTO customer_tags (tag, customer_id, source, since)
    SELECT DISTINCT 'bonus_interest', e.customer_id, 'rule:bonus_interest@1', :now
    FROM events AS e JOIN customers AS c ON c.id = e.customer_id
    WHERE e.seq > :cursor AND e.seq <= :top AND +e.name = 'page_view'
      AND json_extract(e.properties, '$.page') = '/bonus' AND e.ts >= :now - 30 * 86400
      AND e.ts <= :now
    ON CONFLICT DO NOTHING
    RETURNING customer_id, tag
    """,
    # revenue_incomplete_profile: customers of new purchases with a positive 90-day sum.
    """
    WITH fresh AS (SELECT DISTINCT customer_id FROM events
                   WHERE seq > :cursor AND seq <= :top AND +name = 'purchase')
    INSERT INTO customer_tags (tag, customer_id, source, since)
    SELECT 'revenue_incomplete_profile', c.id, 'rule:revenue_incomplete_profile@1', :now
    FROM fresh CROSS JOIN customers AS c
    WHERE c.id = fresh.customer_id
      AND coalesce(json_extract(c.attributes, '$.profile_complete'), 0) IS NOT 1
      AND (SELECT sum(CAST(json_extract(p.properties, '$.amount') AS REAL)) FROM events AS p
           WHERE p.customer_id = c.id AND p.name = 'purchase'
             AND p.ts >= :now - 90 * 86400 AND p.ts <= :now) > 0
    ON CONFLICT DO NOTHING
    RETURNING customer_id, tag
    """,
]


def build(path: Path, customers: int, history: int) -> None:
    """Customers (a third with a complete profile) and ``history`` old events."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    conn.execute(
        """
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
        INSERT INTO customers (id, attributes, created_at, updated_at)
        SELECT 'c' || i, json_object('profile_complete', json(CASE WHEN i % 3 = 0
               THEN 'true' ELSE 'false' END)), 'x', 'x' FROM n
        """,
        (customers,),
    )
    conn.execute(
        """
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :history)
        INSERT INTO events (customer_id, name, ts, properties)
        SELECT 'c' || (1 + abs(random()) % :customers),
               CASE i % 3 WHEN 0 THEN 'purchase' WHEN 1 THEN 'page_view' ELSE 'login' END,
               :as_of - 200 * 86400 + abs(random()) % (200 * 86400),
               CASE i % 3 WHEN 0 THEN json_object('amount', printf('%d.%02d', i % 90, i % 100))
                          WHEN 1 THEN json_object('page', CASE WHEN i % 7 = 0 THEN '/bonus'
                                                          ELSE '/home' END)
                          ELSE '{}' END
        FROM n
        """,
        {"history": history, "customers": customers, "as_of": AS_OF},
    )
    conn.execute("COMMIT")
    conn.close()


def batches(count: int, size: int, customers: int) -> list[list[tuple[str, str, int, str]]]:
    rng = random.Random(17)
    out = []
    for b in range(count):
        rows = []
        for i in range(size):
            cid = f"c{rng.randint(1, customers)}"
            kind = rng.choice(("page_view", "purchase", "login"))
            props = (
                {"page": rng.choice(("/bonus", "/home"))}
                if kind == "page_view"
                else {"amount": f"{rng.randint(1, 99)}.{rng.randint(0, 99):02d}"}
                if kind == "purchase"
                else {}
            )
            rows.append((cid, kind, AS_OF - (count - b) * 10 - i % 10, json.dumps(props)))
        out.append(rows)
    return out


def _insert(conn: sqlite3.Connection, rows: list[tuple[str, str, int, str]]) -> None:
    conn.executemany(
        "INSERT INTO events (customer_id, name, ts, properties) VALUES (?, ?, ?, ?)", rows
    )


def _figures(label: str, times: list[float], events: int) -> dict[str, float]:
    total = sum(times)
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    figures = {
        "events_per_s": events / total,
        "p50_ms": statistics.median(times) * 1000,
        "p99_ms": p99 * 1000,
        "total_s": total,
    }
    print(
        f"{label:<10} {figures['events_per_s']:>10,.0f} events/s"
        f"   p50 {figures['p50_ms']:7.2f} ms   p99 {figures['p99_ms']:7.2f} ms"
        f"   total {total:6.2f} s"
    )
    return figures


async def run_promod(path: Path, work: list[list[tuple[str, str, int, str]]]) -> list[float]:
    db = await Database.open(path)
    await db.register_functions(register_sql_functions)
    try:
        rules = load_rules(RULES)
        await db.run(partial(store.apply_rules, rules=rules, now=AS_OF, by="bench"))
        await db.run(partial(store.process_events, as_of=AS_OF))  # the cursor starts here
        times = []
        for rows in work:
            await db.run_sync(lambda conn, rows=rows: _insert(conn, rows))
            started = time.perf_counter()
            done = await db.run(partial(store.process_events, as_of=AS_OF))
            times.append(time.perf_counter() - started)
            assert done["events"] == len(rows) and not done["more"]
        started = time.perf_counter()
        change = await db.run(partial(store.check_rule, name="bonus_interest", as_of=AS_OF))
        full = time.perf_counter() - started
        assert change is not None
        print(
            f"full check of bonus_interest over every customer: {full:.2f} s"
            f" ({len(change.added)} tagged, {len(change.removed)} untagged)"
        )
        return times
    finally:
        await db.close()


def run_baseline(path: Path, work: list[list[tuple[str, str, int, str]]]) -> list[float]:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE bench_cursor (seq INTEGER NOT NULL)")
    conn.execute("INSERT INTO bench_cursor SELECT coalesce(max(seq), 0) FROM events")
    times = []
    for rows in work:
        conn.execute("BEGIN IMMEDIATE")
        _insert(conn, rows)
        conn.execute("COMMIT")
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        cursor = conn.execute("SELECT seq FROM bench_cursor").fetchone()[0]
        top = conn.execute("SELECT max(seq) FROM events").fetchone()[0]
        params = {"cursor": cursor, "top": top, "now": AS_OF}
        changed = [row for sql in BASELINE for row in conn.execute(sql, params).fetchall()]
        conn.executemany(
            "INSERT INTO tag_history (customer_id, tag, change, source, at)"
            " VALUES (?, ?, 'added', 'baseline', ?)",
            [(c, t, AS_OF) for c, t in changed],
        )
        conn.execute("UPDATE bench_cursor SET seq = ?", (top,))
        conn.execute("COMMIT")
        times.append(time.perf_counter() - started)
    conn.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--history", type=int, default=500_000)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--batch", type=int, default=100, help="events per batch")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="promod-bench-tags-") as tmp:
        source = Path(tmp) / "promod.db"
        anyio.run(_migrate, source)
        started = time.perf_counter()
        build(source, args.customers, args.history)
        print(
            f"built {args.customers:,} customers and {args.history:,} events"
            f" in {time.perf_counter() - started:.1f} s; {args.batches} batches of"
            f" {args.batch} events"
        )
        baseline_db = Path(tmp) / "baseline.db"
        shutil.copy(source, baseline_db)
        work = batches(args.batches, args.batch, args.customers)
        events = args.batches * args.batch
        ours = _figures("promod", anyio.run(run_promod, source, work), events)
        plain = _figures("baseline", run_baseline(baseline_db, work), events)
        print(
            f"ratio promod/baseline throughput: {ours['events_per_s'] / plain['events_per_s']:.2f}"
        )
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS of the process: {peak:.0f} MiB")


async def _migrate(path: Path) -> None:
    db = await Database.open(path)
    await db.close()


if __name__ == "__main__":
    main()
