"""Benchmark: generate + load 1,000,000 codes, then allocate them all, promod vs lean raw.

Both parts run in the same process, one after the other, in a temporary directory:

1. promod: a database with every migration; N codes generated and loaded into one
   pool with ``codes.generate``'s code path (``generate_into`` in one
   ``Database.run`` transaction), then all N allocated through
   :class:`promod.codepool.provider.CodePoolProvider` ``issue_batch``, in batches
   of ``--batch`` grants, each batch one ``Database.run`` write transaction (as
   the ledger does);
2. raw: the leanest plain ``sqlite3`` schema recording the same facts — each code
   unique, assigned at most once, to which customer and grant (one code per
   grant) — with the same durability (WAL, ``synchronous=FULL``) and page cache:
   ``codes (id INTEGER PRIMARY KEY, code TEXT UNIQUE)``, an append-only
   ``assigned (code_id INTEGER PRIMARY KEY, grant_id INTEGER UNIQUE, customer)``
   and a one-row cursor; each batch reads the next codes after the cursor, inserts
   their assignments and moves the cursor in one ``BEGIN IMMEDIATE`` transaction.

With ``--same-schema`` a third part allocates in plain ``sqlite3`` on promod's own
``codes`` table and indexes (the per-code update and the series rule included),
which splits the gap into what the schema costs and what promod's code costs.

Timing covers the store transactions only (building the grant requests, which the
ledger does anyway, is outside). Prints the load and allocation rates of each,
p50/p99 per batch, the promod/raw ratio and the peak RSS::

    .venv/bin/python bench/codes.py [--codes N] [--batch N] [--raw-first] [--same-schema]
"""

from __future__ import annotations

import argparse
import resource
import sqlite3
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import anyio

from promod.codepool.generate import CodeSpec
from promod.codepool.provider import CodePoolProvider
from promod.codepool.store import ensure_pool, generate_into
from promod.rewards.provider import GrantRequest
from promod.store.database import CACHE_SIZE, Database, migrate_sync
from promod.store.seam import Transaction

NOW = 1_790_000_000.0
PATTERN = "BENCH-#####-#####"


def _rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / (1024 * 1024)


def _grants(start: int, n: int) -> list[GrantRequest]:
    return [
        GrantRequest(
            id=i,
            campaign_id="bench",
            run_id=1,
            customer_id=f"c{i}",
            provider="code_pool",
            amount_minor=None,
            amount_exponent=2,
            value_minor=0,
            currency=None,
            options={"pool": "BENCH"},
        )
        for i in range(start, start + n)
    ]


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _report(label: str, count: int, batches: list[float], batch: int, cpu: float) -> float:
    total = sum(batches)
    print(
        f"allocate ({label:6}) {count:>9,} codes  {total:7.2f} s  {count / total:>10,.0f} codes/s"
        f"  batch of {batch:,}: p50 {statistics.median(batches) * 1000:6.2f} ms"
        f"  p99 {_quantile(batches, 0.99) * 1000:6.2f} ms  (CPU {cpu:.2f} s)"
    )
    return count / total


async def bench_promod(directory: Path, count: int, batch: int) -> float:
    db = await Database.open(directory / "promod.db")
    try:
        spec = CodeSpec.build(pattern=PATTERN)

        def load(tx: Transaction) -> int:
            pool = ensure_pool(tx, "BENCH", now=NOW)
            return generate_into(tx, pool, spec, count, now=NOW)

        t0 = time.perf_counter()
        await db.run(load)
        load_s = time.perf_counter() - t0
        print(
            f"load     (promod) {count:>9,} codes  {load_s:7.2f} s  {count / load_s:>10,.0f}"
            " codes/s  (generated and loaded)"
        )

        provider = CodePoolProvider()
        batches: list[float] = []
        cpu = 0.0
        for start in range(1, count + 1, batch):
            grants = _grants(start, min(batch, count + 1 - start))
            c0, t0 = time.process_time(), time.perf_counter()
            await db.run(partial(provider.issue_batch, grants=grants, now=NOW))
            batches.append(time.perf_counter() - t0)
            cpu += time.process_time() - c0
        left = await db.fetchone("SELECT available FROM code_pools WHERE name = 'BENCH'")
        assert left is not None and left[0] == 0, "every code should be allocated"
        return _report("promod", count, batches, batch, cpu)
    finally:
        await db.close()


def bench_raw(directory: Path, count: int, batch: int) -> float:
    """The lean baseline: the same facts in plain sqlite3, same durability."""
    conn = sqlite3.connect(directory / "raw.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(f"PRAGMA cache_size = {CACHE_SIZE}")
    conn.execute("CREATE TABLE codes (id INTEGER PRIMARY KEY, code TEXT NOT NULL UNIQUE)")
    conn.execute(
        "CREATE TABLE assigned (code_id INTEGER PRIMARY KEY REFERENCES codes (id),"
        " grant_id INTEGER NOT NULL UNIQUE, customer TEXT NOT NULL)"
    )
    conn.execute("CREATE TABLE cursor (id INTEGER PRIMARY KEY, after INTEGER NOT NULL)")
    spec = CodeSpec.build(pattern=PATTERN)
    t0 = time.perf_counter()
    conn.execute("BEGIN")
    codes = sorted(set(spec.generate(count)))
    conn.executemany("INSERT INTO codes (code) VALUES (?)", ((c,) for c in codes))
    conn.execute("INSERT INTO cursor VALUES (1, 0)")
    conn.execute("COMMIT")
    have = len(codes)
    del codes
    load_s = time.perf_counter() - t0
    print(f"load     (raw)    {have:>9,} codes  {load_s:7.2f} s  {have / load_s:>10,.0f} codes/s")
    batches: list[float] = []
    done = 0
    cpu = time.process_time()
    while done < have:
        t0 = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        (after,) = conn.execute("SELECT after FROM cursor WHERE id = 1").fetchone()
        rows = conn.execute(
            "SELECT id, code FROM codes WHERE id > ? ORDER BY id LIMIT ?", (after, batch)
        ).fetchall()
        conn.executemany(
            "INSERT INTO assigned (code_id, grant_id, customer) VALUES (?, ?, ?)",
            [(code_id, done + i + 1, f"c{done + i + 1}") for i, (code_id, _) in enumerate(rows)],
        )
        conn.execute("UPDATE cursor SET after = ? WHERE id = 1", (rows[-1][0],))
        conn.execute("COMMIT")
        batches.append(time.perf_counter() - t0)
        done += len(rows)
    cpu = time.process_time() - cpu
    conn.close()
    return _report("raw", have, batches, batch, cpu)


def bench_same_schema(directory: Path, count: int, batch: int) -> float:
    """Plain sqlite3 on promod's own schema (every migration), without promod's code."""
    migrate_sync(directory / "same.db")
    conn = sqlite3.connect(directory / "same.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(f"PRAGMA cache_size = {CACHE_SIZE}")
    spec = CodeSpec.build(pattern=PATTERN)
    conn.execute("BEGIN")
    conn.execute(
        "INSERT INTO code_pools (id, name, series, created_at, updated_at)"
        " VALUES (1, 'BENCH', 'BENCH', 1, 1)"
    )
    conn.executemany(
        "INSERT INTO codes (pool_id, series, code, created_at) VALUES (1, 'BENCH', ?, 1)",
        ((c,) for c in sorted(set(spec.generate(count)))),
    )
    conn.execute("COMMIT")
    batches: list[float] = []
    done, after = 0, 0
    cpu = time.process_time()
    while True:
        t0 = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        rows = conn.execute(
            "SELECT id, code FROM codes WHERE pool_id = 1 AND id > ? AND state = 'available'"
            " ORDER BY id LIMIT ?",
            (after, batch),
        ).fetchall()
        if not rows:
            conn.execute("COMMIT")
            break
        conn.executemany(
            "UPDATE codes SET state = 'assigned', grant_id = ?, customer_id = ?,"
            " campaign_id = 'bench', assigned_at = ? WHERE id = ?",
            [(done + i + 1, f"c{done + i + 1}", NOW, r[0]) for i, r in enumerate(rows)],
        )
        after = rows[-1][0]
        conn.execute("UPDATE code_pools SET alloc_after = ? WHERE id = 1", (after,))
        conn.execute("COMMIT")
        batches.append(time.perf_counter() - t0)
        done += len(rows)
    cpu = time.process_time() - cpu
    conn.close()
    return _report("same", done, batches, batch, cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codes", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--raw-first", action="store_true", help="run the raw part first")
    parser.add_argument(
        "--same-schema", action="store_true", help="also plain sqlite3 on promod's schema"
    )
    ns = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="promod-bench-codes-") as tmp:
        directory = Path(tmp)
        if ns.raw_first:
            raw = bench_raw(directory, ns.codes, ns.batch)
            promod = anyio.run(bench_promod, directory, ns.codes, ns.batch)
        else:
            promod = anyio.run(bench_promod, directory, ns.codes, ns.batch)
            print(f"peak RSS after the promod part: {_rss_mib():.0f} MiB")
            raw = bench_raw(directory, ns.codes, ns.batch)
        if ns.same_schema:
            same = bench_same_schema(directory, ns.codes, ns.batch)
            print(f"promod / same-schema sqlite3: {promod / same:.2f}")
    print(f"promod / raw allocation speed: {promod / raw:.2f}")
    print(f"peak RSS: {_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
