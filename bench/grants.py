"""Grants per second end to end, beside the same atomic grant through raw sqlite3.

The daemon runs as a subprocess on a fresh ``promod init`` directory holding
N customers (default 1,000,000); a past-behaviour wallet-points campaign with
caps is applied and launched with promodctl, and the time from launch to the
last grant committed is measured (target snapshot included). The baseline does
the same writes per grant (grant row, target outcome, per-customer cap, wallet
transaction, counters) with plain sqlite3 in batches of 1,000. Prints both
rates, their ratio and the daemon's peak RSS.

    python bench/grants.py [--customers 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
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
        [str(BIN / "promodctl"), "--socket", str(sock), "--json", *args],
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


def end_to_end(root: Path, n: int) -> tuple[float, float, float]:
    subprocess.run([str(BIN / "promod"), "init", str(root)], check=True, capture_output=True)
    cfg = root / "promod.toml"
    text = cfg.read_text().replace('listen = "127.0.0.1:8470"', 'listen = "127.0.0.1:0"')
    text = "\n".join(line for line in text.splitlines() if not line.startswith("EUR = {"))
    text = text.replace("frequency = { max = 3, days = 30 }", "")
    # Grants only: no reward.granted webhook per grant to a receiver that is not there.
    text = text.replace('events = "backend"', "")
    cfg.write_text(text)
    db = root / "state" / "promod.db"
    subprocess.run([str(BIN / "promod"), "db", "migrate", "--config", str(cfg)], check=True)
    seed(db, n)
    log = (root / "daemon.log").open("w")
    proc = subprocess.Popen(
        [str(BIN / "promod"), "run", "--config", str(cfg)], stdout=log, stderr=subprocess.STDOUT
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
        started = time.perf_counter()
        ctl(sock, "campaign", "launch", "bench")
        while json.loads(ctl(sock, "campaign", "show", "bench"))["state"] != "completed":
            time.sleep(0.5)
        elapsed = time.perf_counter() - started
        report = json.loads(ctl(sock, "campaign", "report", "bench"))
        granted = report["granted"]
        assert granted == n, report
        rss = peak_rss_mib(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    return granted / elapsed, elapsed, rss


def raw_baseline(root: Path, n: int, batch: int = 1000) -> tuple[float, float]:
    """The same atomic grant through plain sqlite3, batched: promod's own schema and
    target list (same seeded order), the same rows written per grant — grant,
    target outcome, per-customer cap, wallet transaction (and balance by trigger),
    outbox event, counters — with no decisions, actors or awaits around them."""
    subprocess.run([str(BIN / "promod"), "init", str(root)], check=True, capture_output=True)
    cfg = root / "promod.toml"
    subprocess.run(
        [str(BIN / "promod"), "db", "migrate", "--config", str(cfg)],
        check=True,
        capture_output=True,
    )
    db = root / "state" / "promod.db"
    seed(db, n)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA wal_autocheckpoint = 10000")
    conn.execute("PRAGMA cache_size = -65536")
    from promod.campaigns.runs import create_run_sync
    from promod.campaigns.segments import register_sql_functions
    from promod.campaigns.spec import load_spec

    register_sql_functions(conn)
    spec = load_spec(SPEC, "toml")
    now = time.time()
    conn.execute(
        "INSERT INTO campaigns (id, version, state, spec, created_at, updated_at)"
        " VALUES ('bench', 1, 'running', ?, ?, ?)",
        (json.dumps(spec.to_dict()), now, now),
    )
    conn.execute("BEGIN IMMEDIATE")
    run_id = create_run_sync(conn, "bench", 1, spec, now=now)
    conn.execute("COMMIT")
    started = time.perf_counter()
    next_id = 1
    while True:
        conn.execute("BEGIN IMMEDIATE")
        rows = conn.execute(
            "SELECT customer_id, rank FROM run_targets WHERE run_id = ? AND status = 'pending'"
            " AND due_at <= ? ORDER BY due_at, rank LIMIT ?",
            (run_id, time.time(), batch),
        ).fetchall()
        if not rows:
            conn.execute("COMMIT")
            break
        now = time.time()
        ids = list(range(next_id, next_id + len(rows)))
        conn.executemany(
            "INSERT INTO grants (id, campaign_id, run_id, customer_id, provider, amount_minor,"
            " value_minor, currency, state, day, created_at, issued_at)"
            " VALUES (?, 'bench', ?, ?, 'wallet_points', 100, 100, 'EUR', 'issued', '-', ?, ?)",
            [(i, run_id, cid, now, now) for i, (cid, _) in zip(ids, rows, strict=True)],
        )
        conn.executemany(
            "INSERT INTO customer_caps (campaign_id, customer_id, grants, max_grants)"
            " VALUES ('bench', ?, 1, 1) ON CONFLICT DO UPDATE SET grants = grants + 1",
            [(cid,) for cid, _ in rows],
        )
        conn.executemany(
            "UPDATE run_targets SET status = 'granted', decided_at = ?"
            " WHERE run_id = ? AND rank = ?",
            [(now, run_id, rank) for _, rank in rows],
        )
        conn.executemany(
            "INSERT INTO wallet_transactions (customer_id, points, grant_id, reason, created_at)"
            " VALUES (?, 100, ?, 'campaign:bench', ?)",
            [(cid, i, now) for i, (cid, _) in zip(ids, rows, strict=True)],
        )
        conn.executemany(
            "INSERT INTO outbox (event_id, type, payload, created_at)"
            " VALUES (?, 'reward.granted', ?, ?)",
            [
                (f"reward.granted:{i}", json.dumps({"grant_id": i, "customer_id": cid}), now)
                for i, (cid, _) in zip(ids, rows, strict=True)
            ],
        )
        conn.execute(
            "INSERT INTO cap_counters (scope, period, count, spend) VALUES ('campaign:bench',"
            " 'lifetime', ?, ?) ON CONFLICT DO UPDATE SET count = count + excluded.count,"
            " spend = spend + excluded.spend",
            (len(rows), 100 * len(rows)),
        )
        conn.execute("COMMIT")
        next_id += len(rows)
    elapsed = time.perf_counter() - started
    conn.close()
    return n / elapsed, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pmbench"))
    try:
        raw_rate, raw_s = raw_baseline(root / "raw", args.customers)
        rate, elapsed, rss = end_to_end(root / "daemon", args.customers)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"customers:                {args.customers:,}")
    print(f"raw sqlite3, batches 1000: {raw_rate:,.0f} grants/s ({raw_s:.1f} s, same schema)")
    print(f"promod end to end:        {rate:,.0f} grants/s ({elapsed:.1f} s, snapshot included)")
    print(f"ratio promod / raw:       {rate / raw_rate:.2f}")
    print(f"daemon peak RSS:          {rss:.0f} MiB")


if __name__ == "__main__":
    os.environ.pop("NOTIFY_SOCKET", None)
    main()
