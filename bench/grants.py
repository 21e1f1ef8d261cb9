"""Grants per second end to end, beside the leanest plain-sqlite3 grant path, same run.

The daemon runs as a subprocess on a fresh ``promod init`` directory holding N
customers (default 1,000,000); a past-behaviour wallet-points campaign with caps is
applied and launched with promodctl, and the time from launch to the last grant
committed is measured (the target snapshot included, and timed on its own from the
daemon's ``run_started`` line).

The baseline is not promod's schema: it is the leanest schema plain sqlite3 can use
to record the same facts per grant with the same durability (WAL, synchronous =
FULL, the same page cache), in batches of the same size as the daemon's: integer
customer keys, the target list read by rank behind a cursor (the run's progress is
one row per batch), a grant row unique per (customer, campaign, run) whose index
also answers the per-customer and the frequency checks against earlier grants
(read for every batch), the wallet credit and the balance (upserted once per
batch), the ``reward.granted`` event with the same payload, and the counters (one
upsert per batch). Prints both rates, their ratio, the snapshot time and the
daemon's peak RSS.

    python bench/grants.py [--customers 1000000] [--batch 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

BIN = Path(sys.executable).parent
SPEC = """
id = "bench"
name = "Benchmark"
kind = "past_behavior"
timezone = "UTC"
[schedule]
start = "now"
[segment]
all = [{ tag = "bonus_interest" }]
[reward]
provider = "wallet_points"
amount = "100"
value = "1.00"
currency = "EUR"
[caps]
budget = "100000000.00"
daily_budget = "100000000.00"
per_customer = 1
"""


def seed(db: Path, n: int) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA synchronous = OFF")
        conn.executemany(
            "INSERT INTO customers (id, email, attributes, created_at, updated_at)"
            " VALUES (?, ?, '{}', '2026-11-01T00:00:00Z', '2026-11-01T00:00:00Z')",
            ((f"c{i:07d}", f"c{i}@example.org") for i in range(n)),
        )
        conn.executemany(
            "INSERT INTO customer_tags (tag, customer_id) VALUES ('bonus_interest', ?)",
            ((f"c{i:07d}",) for i in range(n)),
        )


def ctl(sock: Path, *args: str) -> str:
    out = subprocess.run(
        [str(BIN / "promodctl"), "--socket", str(sock), "--json", "--timeout", "600", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return out.stdout


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def end_to_end(root: Path, n: int, batch: int) -> tuple[float, float, float, float]:
    subprocess.run([str(BIN / "promod"), "init", str(root)], check=True, capture_output=True)
    cfg = root / "promod.toml"
    text = cfg.read_text().replace('listen = "127.0.0.1:8470"', 'listen = "127.0.0.1:0"')
    text = "\n".join(line for line in text.splitlines() if not line.startswith("EUR = {"))
    text = text.replace("frequency = { max = 3, days = 30 }", "")
    # Grants only: no reward.granted webhook per grant to a receiver that is not there.
    text = text.replace('events = "backend"', "")
    head, ledger = text.split("[ledger]\n", 1)
    ledger = re.sub(r"^batch_size = \d+$", f"batch_size = {batch}", ledger, count=1, flags=re.M)
    text = f"{head}[ledger]\n{ledger}"
    cfg.write_text(text)
    db = root / "state" / "promod.db"
    subprocess.run([str(BIN / "promod"), "db", "migrate", "--config", str(cfg)], check=True)
    seed(db, n)
    log = (root / "daemon.log").open("w")
    proc = subprocess.Popen(
        [str(BIN / "promod"), "run", "--config", str(cfg)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},  # run_started is seen when written
    )
    sock = root / "admin.sock"
    try:
        for _ in range(200):
            if sock.exists():
                break
            time.sleep(0.05)
        time.sleep(0.5)
        (root / "spec.toml").write_text(SPEC)
        ctl(sock, "campaign", "apply", "-f", str(root / "spec.toml"))
        log_path = root / "daemon.log"
        ctl(sock, "campaign", "launch", "bench")
        while json.loads(ctl(sock, "campaign", "show", "bench"))["state"] != "completed":
            time.sleep(0.5)
        # Timed by the daemon's own clock, from the launch it recorded to the last grant
        # it committed: the start-up of promodctl and the polling are not counted.
        with sqlite3.connect(db) as conn:
            (launched,) = conn.execute(
                "SELECT launched_at FROM campaigns WHERE id = 'bench'"
            ).fetchone()
            (last,) = conn.execute("SELECT max(created_at) FROM grants").fetchone()
        elapsed = float(last) - float(launched)
        snapshot = float("nan")
        for line in log_path.read_text().splitlines():
            if '"run_started"' in line:
                stamp = json.loads(line)["timestamp"].replace("Z", "+00:00")
                snapshot = datetime.fromisoformat(stamp).timestamp() - float(launched)
        report = json.loads(ctl(sock, "campaign", "report", "bench"))
        granted = report["granted"]
        assert granted == n, report
        rss = peak_rss_mib(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    return granted / elapsed, elapsed, snapshot, rss


LEAN_SCHEMA = """
CREATE TABLE customers (key INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE);
CREATE TABLE runs (id INTEGER PRIMARY KEY, campaign INTEGER NOT NULL, cursor INTEGER NOT NULL,
                   granted INTEGER NOT NULL DEFAULT 0, refused INTEGER NOT NULL DEFAULT 0);
CREATE TABLE targets (run INTEGER NOT NULL, rank INTEGER NOT NULL, customer INTEGER NOT NULL,
                      PRIMARY KEY (run, rank)) WITHOUT ROWID;
CREATE TABLE grants (id INTEGER PRIMARY KEY, campaign INTEGER NOT NULL, run INTEGER NOT NULL,
                     customer INTEGER NOT NULL, amount INTEGER NOT NULL, value INTEGER NOT NULL,
                     created_at REAL NOT NULL);
CREATE UNIQUE INDEX grants_once ON grants (customer, campaign, run);
CREATE TABLE wallet (id INTEGER PRIMARY KEY, customer INTEGER NOT NULL, points INTEGER NOT NULL,
                     grant_id INTEGER NOT NULL);
CREATE TABLE balances (customer INTEGER PRIMARY KEY, points INTEGER NOT NULL);
CREATE TABLE outbox (id INTEGER PRIMARY KEY, type TEXT NOT NULL, payload TEXT NOT NULL,
                     created_at REAL NOT NULL);
CREATE TABLE counters (scope TEXT NOT NULL, period TEXT NOT NULL, count INTEGER NOT NULL,
                       spend INTEGER NOT NULL, max_spend INTEGER, PRIMARY KEY (scope, period),
                       CHECK (max_spend IS NULL OR spend <= max_spend)) WITHOUT ROWID;
"""


def raw_baseline(root: Path, n: int, batch: int) -> tuple[float, float, float]:
    """The leanest plain-sqlite3 grant path recording the same facts (module docstring);
    returns (grants/s, seconds granting, seconds writing the target snapshot)."""
    import random

    root.mkdir(parents=True)
    conn = sqlite3.connect(root / "lean.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA wal_autocheckpoint = 10000")
    conn.execute("PRAGMA cache_size = -65536")
    conn.executescript(LEAN_SCHEMA)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO customers (key, id) VALUES (?, ?)",
        ((i + 1, f"c{i:07d}") for i in range(n)),
    )
    conn.execute("COMMIT")
    started = time.perf_counter()
    order = list(range(1, n + 1))
    random.Random(7).shuffle(order)  # the run's random order, as promod's seeded one
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO runs (id, campaign, cursor) VALUES (1, 1, 0)")
    conn.executemany(
        "INSERT INTO targets (run, rank, customer) VALUES (1, ?, ?)", enumerate(order, start=1)
    )
    conn.execute("COMMIT")
    snapshot = time.perf_counter() - started
    started = time.perf_counter()
    while True:
        conn.execute("BEGIN IMMEDIATE")
        (cursor,) = conn.execute("SELECT cursor FROM runs WHERE id = 1").fetchone()
        rows = conn.execute(
            "SELECT t.rank, t.customer, c.id FROM targets t JOIN customers c ON c.key = t.customer"
            " WHERE t.run = 1 AND t.rank > ? ORDER BY t.rank LIMIT ?",
            (cursor, batch),
        ).fetchall()
        if not rows:
            conn.execute("COMMIT")
            break
        keys = json.dumps([r[1] for r in rows])
        now = time.time()
        # The per-customer (this campaign) and frequency (30 days) checks.
        had = dict(
            conn.execute(
                "SELECT customer, count(*) FROM grants WHERE customer IN"
                " (SELECT value FROM json_each(?)) AND campaign = 1 GROUP BY customer",
                (keys,),
            ).fetchall()
        )
        recent = dict(
            conn.execute(
                "SELECT customer, count(*) FROM grants WHERE customer IN"
                " (SELECT value FROM json_each(?)) AND created_at >= ? GROUP BY customer",
                (keys, now - 30 * 86400),
            ).fetchall()
        )
        chosen = [r for r in rows if had.get(r[1], 0) < 1 and recent.get(r[1], 0) < 3]
        ids = [
            gid
            for (gid,) in conn.execute(
                "INSERT INTO grants (campaign, run, customer, amount, value, created_at)"
                " SELECT 1, 1, value, 100, 100, ? FROM json_each(?) RETURNING id",
                (now, json.dumps([r[1] for r in chosen])),
            ).fetchall()
        ]
        conn.executemany(
            "INSERT INTO wallet (customer, points, grant_id) VALUES (?, 100, ?)",
            [(r[1], gid) for r, gid in zip(chosen, ids, strict=True)],
        )
        conn.executemany(
            "INSERT INTO balances (customer, points) VALUES (?, 100)"
            " ON CONFLICT (customer) DO UPDATE SET points = points + excluded.points",
            [(r[1],) for r in chosen],
        )
        conn.executemany(
            "INSERT INTO outbox (type, payload, created_at) VALUES ('reward.granted', ?, ?)",
            [
                (
                    json.dumps(
                        {
                            "grant_id": gid,
                            "campaign_id": "bench",
                            "run_id": 1,
                            "customer_id": r[2],
                            "provider": "wallet_points",
                            "amount": "100",
                            "value": "1.00",
                            "currency": "EUR",
                            "code": None,
                            "expires_at": None,
                            "reference": None,
                        },
                        separators=(",", ":"),
                    ),
                    now,
                )
                for r, gid in zip(chosen, ids, strict=True)
            ],
        )
        conn.executemany(
            "INSERT INTO counters (scope, period, count, spend, max_spend) VALUES (?, ?, ?, ?,"
            " 10000000000) ON CONFLICT DO UPDATE SET count = count + excluded.count,"
            " spend = spend + excluded.spend",
            [
                (scope, period, len(chosen), 100 * len(chosen))
                for scope in ("campaign:bench", "policy:wallet_points:EUR")
                for period in ("lifetime", "2026-12-01")
            ],
        )
        conn.execute(
            "UPDATE runs SET cursor = ?, granted = granted + ?, refused = refused + ? WHERE id = 1",
            (rows[-1][0], len(chosen), len(rows) - len(chosen)),
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    (granted,) = conn.execute("SELECT count(*) FROM grants").fetchone()
    assert granted == n, granted
    conn.close()
    return n / elapsed, elapsed, snapshot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000, help="[ledger] batch_size")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pmbench"))
    try:
        raw_rate, raw_s, raw_snap = raw_baseline(root / "raw", args.customers, args.batch)
        print(f"lean raw sqlite3 done: {raw_rate:,.0f} grants/s granting", flush=True)
        rate, elapsed, snapshot, rss = end_to_end(root / "daemon", args.customers, args.batch)
    finally:
        if not os.environ.get("KEEP"):
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(root)
    raw_total = raw_s + raw_snap
    print(f"customers:                 {args.customers:,}")
    print(f"batch size:                {args.batch:,}")
    print(
        f"lean raw sqlite3:          {args.customers / raw_total:,.0f} grants/s"
        f" ({raw_total:.1f} s: {raw_snap:.1f} s writing the targets, {raw_s:.1f} s granting"
        f" = {raw_rate:,.0f} grants/s)"
    )
    print(f"promod end to end:         {rate:,.0f} grants/s ({elapsed:.1f} s, snapshot included)")
    print(f"ratio promod / lean raw:   {rate * raw_total / args.customers:.2f}")
    print(f"target snapshot (daemon):  {snapshot:.1f} s")
    print(f"daemon peak RSS:           {rss:.0f} MiB")


if __name__ == "__main__":
    os.environ.pop("NOTIFY_SOCKET", None)
    main()
