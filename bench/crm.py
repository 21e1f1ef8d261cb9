"""CRM refresh throughput: a 1,000,000-recipient CSV drop with 50,000 suppressed addresses.

Writes ``recipients.csv`` into a temporary drop directory, records the suppressions
in a fresh database, runs one full refresh of a ``csv`` connector (suppressions
export, streamed fetch, plan and atomic apply; promod.crm.sync.refresh) and prints
records per second, the time of the apply step and the peak RSS; then loads the
same rows with plain ``sqlite3`` (csv reader, executemany, one transaction) in the
same run, for comparison. Not part of the test run::

    .venv/bin/python bench/crm.py                     # 1,000,000 rows, 50,000 suppressed
    .venv/bin/python bench/crm.py --rows 100000 --suppressed 5000
    .venv/bin/python bench/crm.py --daily             # and a next-day refresh, 5% changed
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from promod.clock import SystemClock
from promod.config import CrmConfig
from promod.crm.csvdrop import CsvConnector
from promod.crm.sync import Progress, refresh
from promod.logs import configure_logging
from promod.store.database import Database
from promod.store.seam import Transaction

COLUMNS = ["id", "email", "opt_in_id", "description", "media_type", "entity_type", "entity_id"]


def write_csv(path: Path, rows: int, start: int = 0) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for i in range(start, start + rows):
            writer.writerow(
                [
                    f"c{i}",
                    f"c{i}@example.org",
                    f"oi-{i}",
                    "newsletter",
                    "email",
                    "contact",
                    f"E{i:08d}",
                ]
            )


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class BenchApp:
    db: Database
    clock: SystemClock = field(default_factory=SystemClock)


async def one_refresh(app: BenchApp, cfg: CrmConfig, connector: CsvConnector) -> dict[str, Any]:
    marks: dict[str, float] = {}
    progress: list[Progress] = []

    async def watch() -> None:
        while True:
            if progress and progress[0].step == "apply" and "apply" not in marks:
                marks["apply"] = time.perf_counter()
            await anyio.sleep(0.05)

    start, cpu = time.perf_counter(), time.process_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        run = await refresh(app, cfg, connector, trigger="manual", on_start=progress.append)
        tg.cancel_scope.cancel()
    end = time.perf_counter()
    return {
        "run": run,
        "seconds": end - start,
        "cpu_seconds": time.process_time() - cpu,
        "apply_seconds": end - marks.get("apply", end),
        "peak_rss_mb": peak_rss_mb(),
    }


async def promod_refresh(
    root: Path, drop: Path, rows: int, suppressed: int, daily: bool
) -> list[dict[str, Any]]:
    db = await Database.open(root / "promod.db")
    now = time.time()

    def seed(tx: Transaction) -> None:
        tx.executemany(
            "INSERT INTO suppressions (address, reason, source, customer_id, created_at)"
            " VALUES (?, 'unsubscribed', 'bench', ?, ?)",
            ((f"c{i * 20}@example.org", f"c{i * 20}", now - 3600) for i in range(suppressed)),
        )

    await db.run(seed)
    cfg = CrmConfig(
        name="bench",
        connector="csv",
        consent="marketing_email",
        list="crm-bench",
        max_change="1",
    )
    connector = CsvConnector("bench", {"dir": drop})
    app = BenchApp(db)
    results = [await one_refresh(app, cfg, connector)]
    if daily:
        # The next day: 2.5% of the list left the CRM's list, as many joined.
        write_csv(drop / "recipients.csv", rows, start=rows // 40)
        results.append(await one_refresh(app, cfg, connector))
    await db.close()
    return results


def raw_sqlite(root: Path, path: Path) -> tuple[float, float]:
    """The leanest plain load of the same rows with promod's durability (WAL, synchronous=FULL).

    One table keyed by the customer id, the CSV reader's rows bound as they come,
    one transaction: no validation, no suppression filter, no consent or list.
    """
    conn = sqlite3.connect(root / "raw.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(
        "CREATE TABLE recipients (id TEXT PRIMARY KEY, email TEXT, opt_in_id TEXT,"
        " description TEXT, media_type TEXT, entity_type TEXT, entity_id TEXT) WITHOUT ROWID"
    )
    start, cpu = time.perf_counter(), time.process_time()
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO recipients VALUES (?, ?, ?, ?, ?, ?, ?)", reader)
        conn.execute("COMMIT")
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    conn.close()
    return seconds, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--suppressed", type=int, default=50_000)
    parser.add_argument(
        "--daily", action="store_true", help="then refresh again with 5%% of the list changed"
    )
    args = parser.parse_args()
    configure_logging(level="warning", fmt="console")
    with tempfile.TemporaryDirectory(prefix="promod-bench-crm-") as tmp:
        root = Path(tmp)
        drop = root / "drop"
        drop.mkdir()
        recipients = drop / "recipients.csv"
        write_csv(recipients, args.rows)
        results = anyio.run(promod_refresh, root, drop, args.rows, args.suppressed, args.daily)
        if args.daily:
            write_csv(recipients, args.rows)  # the first day's list again, for the raw load
        raw, raw_cpu = raw_sqlite(root, recipients)
    result = results[0]
    run = result["run"]
    rate = args.rows / result["seconds"]
    raw_rate = args.rows / raw
    print(
        f"rows {args.rows:,}, suppressed {args.suppressed:,}; run state {run['state']},"
        f" members {run['members']:,}, skipped as suppressed {run['suppressed']:,}"
    )
    print(
        f"promod refresh: {result['seconds']:.1f} s, {rate:,.0f} records/s,"
        f" apply step {result['apply_seconds']:.1f} s, peak RSS {result['peak_rss_mb']:.0f} MB,"
        f" CPU {result['cpu_seconds']:.1f} s"
    )
    print(f"plain sqlite3:  {raw:.1f} s, {raw_rate:,.0f} records/s, CPU {raw_cpu:.1f} s")
    print(
        f"ratio to raw:   {rate / raw_rate:.2f}"
        f" (CPU time: {raw_cpu / result['cpu_seconds']:.2f}; load {os.getloadavg()[0]:.1f})"
    )
    if len(results) > 1:
        again = results[1]
        print(
            f"daily refresh:  {again['seconds']:.1f} s, {args.rows / again['seconds']:,.0f}"
            f" records/s, added {again['run']['added']:,}, removed {again['run']['removed']:,},"
            f" apply step {again['apply_seconds']:.1f} s, peak RSS {again['peak_rss_mb']:.0f} MB"
        )


if __name__ == "__main__":
    main()
