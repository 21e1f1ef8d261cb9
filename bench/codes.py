"""Benchmark: generate + load 1,000,000 codes, then allocate them all through ``code_pool``.

Runs against a throw-away database (all migrations) in a temporary directory:

1. generate and load N codes into one pool with ``codes.generate``'s code path
   (``generate_into`` in one ``Database.run_sync`` transaction);
2. allocate all N through :class:`promod.codepool.provider.CodePoolProvider`,
   ``issue_batch`` in batches of 1,000 grants, each batch one ``run_sync``
   transaction (as the ledger does);
3. the same allocation in raw ``sqlite3`` on a minimal table with the same
   partial index and pragmas, in the same run, for comparison.

Prints codes/s for each step, the provider/raw ratio and the peak RSS.

    .venv/bin/python bench/codes.py [--codes N] [--batch N]
"""

from __future__ import annotations

import argparse
import resource
import sqlite3
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
from promod.store.database import Database

NOW = 1_790_000_000.0


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


async def bench_promod(directory: Path, count: int, batch: int) -> tuple[float, float]:
    db = await Database.open(directory / "promod.db")
    try:
        spec = CodeSpec.build(pattern="BENCH-#####-#####")

        def load(conn: sqlite3.Connection) -> int:
            pool = ensure_pool(conn, "BENCH", now=NOW)
            return generate_into(conn, pool, spec, count, now=NOW)

        t0 = time.perf_counter()
        await db.run_sync(load)
        load_s = time.perf_counter() - t0
        rate = count / load_s
        print(f"generate + load   {count:>9,} codes  {load_s:7.2f} s  {rate:>10,.0f} codes/s")

        provider = CodePoolProvider()
        t0 = time.perf_counter()
        for start in range(1, count + 1, batch):
            grants = _grants(start, min(batch, count + 1 - start))
            await db.run_sync(partial(provider.issue_batch, grants=grants, now=NOW))
        alloc_s = time.perf_counter() - t0
        left = await db.fetchone("SELECT available FROM code_pools WHERE name = 'BENCH'")
        assert left is not None and left[0] == 0, "every code should be allocated"
        print(
            f"allocate (promod) {count:>9,} codes  {alloc_s:7.2f} s  "
            f"{count / alloc_s:>10,.0f} codes/s  (batches of {batch:,})"
        )
        return load_s, alloc_s
    finally:
        await db.close()


def bench_raw(directory: Path, count: int, batch: int) -> float:
    """The floor: the same allocation in plain sqlite3 on a minimal table."""
    conn = sqlite3.connect(directory / "raw.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(
        "CREATE TABLE c (id INTEGER PRIMARY KEY, code TEXT NOT NULL UNIQUE,"
        " state TEXT NOT NULL DEFAULT 'available', customer TEXT)"
    )
    conn.execute("CREATE INDEX c_available ON c (id) WHERE state = 'available'")
    spec = CodeSpec.build(pattern="BENCH-#####-#####")
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT OR IGNORE INTO c (code) VALUES (?)", ((c,) for c in spec.generate(count))
    )
    conn.execute("COMMIT")
    have = conn.execute("SELECT count(*) FROM c").fetchone()[0]
    t0 = time.perf_counter()
    done = 0
    while done < have:
        conn.execute("BEGIN IMMEDIATE")
        ids = conn.execute(
            "SELECT id FROM c WHERE state = 'available' ORDER BY id LIMIT ?", (batch,)
        ).fetchall()
        conn.executemany(
            "UPDATE c SET state = 'assigned', customer = ? WHERE id = ? AND state = 'available'",
            [(f"c{i}", i) for (i,) in ids],
        )
        conn.execute("COMMIT")
        done += len(ids)
    raw_s = time.perf_counter() - t0
    conn.close()
    print(f"allocate (raw)    {have:>9,} codes  {raw_s:7.2f} s  {have / raw_s:>10,.0f} codes/s")
    return raw_s * count / have


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codes", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    ns = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="promod-bench-codes-") as tmp:
        directory = Path(tmp)
        _load_s, alloc_s = anyio.run(bench_promod, directory, ns.codes, ns.batch)
        print(f"peak RSS after the promod part: {_rss_mib():.0f} MiB")
        raw_s = bench_raw(directory, ns.codes, ns.batch)
    print(f"promod / raw allocation speed: {raw_s / alloc_s:.2f}")
    print(f"peak RSS: {_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
