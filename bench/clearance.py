"""Benchmark: from an approval batch of 10,000 to the grant decision of each customer.

A daemon runs as a subprocess on a fresh ``promod init`` directory with a manual
test clock and N customers (default 10,000). Each round applies and launches a
wallet-points campaign with ``[clearance] required = true``, moves the clock to
``start - lead`` (the target list is snapshotted into a clearance run), then:

1. posts one approval batch for every customer of the list
   (``POST /v1/campaigns/{id}/runs/{run}/customers/status``, 10,000 answers);
2. moves the clock to the deadline at once (in production it is ``lead`` later);
3. watches the database until every approved customer is granted.

For every customer, the time from the start of the approval request to the commit
of their grant is a sample; the figures are p50/p99 over all customers of all
rounds, beside the approval request's own latency and the deadline-to-last-grant
time. Clock moves go through the admin socket, so they are included.

    .venv/bin/python bench/clearance.py [--customers 10000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from promod.testing import start_promod

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC).timestamp()
LEAD = 1800.0
SPEC = """
id = "{id}"
name = "Clearance benchmark"
kind = "past_behavior"
timezone = "UTC"
[schedule]
start = "{start}"
delivery = "immediate"
[segment]
all = [{{ tag = "bonus_interest" }}]
[reward]
provider = "wallet_points"
amount = "100"
value = "1.00"
currency = "EUR"
[caps]
budget = "100000000.00"
per_customer = 1
[clearance]
required = true
lead = "30m"
"""


def seed(db: Path, n: int) -> None:
    with sqlite3.connect(db, timeout=30) as conn:
        conn.executemany(
            "INSERT INTO customers (id, email, attributes, created_at, updated_at)"
            " VALUES (?, ?, '{}', '2026-11-01T00:00:00Z', '2026-11-01T00:00:00Z')",
            ((f"c{i:06d}", f"c{i}@example.org") for i in range(n)),
        )
        conn.executemany(
            "INSERT INTO customer_tags (tag, customer_id) VALUES ('bonus_interest', ?)",
            ((f"c{i:06d}",) for i in range(n)),
        )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def wait_for(conn: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> object:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        row = conn.execute(sql, params).fetchone()
        if row is not None and row[0] is not None:
            return row[0]
        time.sleep(0.005)
    raise SystemExit(f"timed out: {sql}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if not 1 <= args.customers <= 10_000:
        parser.error("--customers: one approval batch holds 1 to 10,000 customers")

    daemon = start_promod(
        clock=T0,
        edits={
            r"^frequency = \{[^\n]*\}": "",
            r"^wallet_points = \{[^\n]*\}": "",
            r'^max_body = "1MiB"': 'max_body = "4MiB"',
        },
    )
    try:
        db = daemon.root / "state" / "promod.db"
        seed(db, args.customers)
        token = (daemon.root / "http-token").read_text().strip()
        base = daemon.http_url
        assert base is not None
        watch = sqlite3.connect(db, timeout=30)
        per_customer: list[float] = []
        requests: list[float] = []
        decisions: list[float] = []
        now = T0
        with httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=120
        ) as client:
            for round_no in range(args.rounds):
                campaign = f"bench-{round_no}"
                start = now + 2 * LEAD
                text = SPEC.format(
                    id=campaign,
                    start=datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                )
                daemon.call("campaign.apply", {"spec": text})
                daemon.call("campaign.launch", {"campaign": campaign})
                daemon.call("clock.advance", {"to": start - LEAD})
                run_id = wait_for(
                    watch,
                    "SELECT id FROM runs WHERE campaign_id = ? AND state = 'clearance'",
                    (campaign,),
                )
                ids = [
                    row[0]
                    for row in watch.execute(
                        "SELECT customer_id FROM run_targets WHERE run_id = ? ORDER BY rank",
                        (run_id,),
                    )
                ]
                body = {"customers": [{"customer_id": c, "approved": True} for c in ids]}
                path = f"/v1/campaigns/{campaign}/runs/{run_id}/customers/status"

                began = time.perf_counter()
                response = client.post(path, json=body)
                answered = time.perf_counter()
                response.raise_for_status()
                daemon.call("clock.advance", {"to": start})
                deadline_at = time.perf_counter()
                seen = 0
                decided_at: float | None = None
                first_at: float | None = None
                while seen < len(ids):
                    if decided_at is None:
                        (state,) = watch.execute(
                            "SELECT state FROM runs WHERE id = ?", (run_id,)
                        ).fetchone()
                        if state != "clearance":
                            decided_at = time.perf_counter()
                    (granted,) = watch.execute(
                        "SELECT count(*) FROM run_targets WHERE run_id = ? AND status = 'granted'",
                        (run_id,),
                    ).fetchone()
                    if granted > seen:
                        if first_at is None:
                            first_at = time.perf_counter()
                        at = time.perf_counter() - began
                        per_customer += [at] * (granted - seen)
                        seen = granted
                    else:
                        time.sleep(0.002)
                        if time.perf_counter() - began > 120:
                            raise SystemExit("timed out waiting for the grants")
                done = time.perf_counter()
                requests.append(answered - began)
                decisions.append(done - deadline_at)
                now = start
                print(
                    f"round {round_no + 1}: approve {len(ids)} in {answered - began:.3f}s,"
                    f" deadline to answers applied {(decided_at or done) - deadline_at:.3f}s,"
                    f" to first grant {(first_at or done) - deadline_at:.3f}s,"
                    f" to last grant {done - deadline_at:.3f}s,"
                    f" request to last grant {done - began:.3f}s",
                    file=sys.stderr,
                )
        watch.close()
    finally:
        daemon.close()
        shutil.rmtree(daemon.root, ignore_errors=True)

    ms = 1000.0
    print(f"customers per approval batch: {args.customers}, rounds: {args.rounds}")
    print(
        f"approval request (POST .../customers/status, {args.customers} answers):"
        f" p50 {statistics.median(requests) * ms:.0f} ms, max {max(requests) * ms:.0f} ms"
    )
    print(
        f"deadline to last grant committed: p50 {statistics.median(decisions) * ms:.0f} ms,"
        f" max {max(decisions) * ms:.0f} ms"
    )
    print(
        "request to grant decision, per customer:"
        f" p50 {percentile(per_customer, 0.50) * ms:.0f} ms,"
        f" p99 {percentile(per_customer, 0.99) * ms:.0f} ms"
        f" ({len(per_customer)} customers)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
