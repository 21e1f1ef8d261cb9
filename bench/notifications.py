"""Notification campaign fan-out: rendering N personal messages, against a plain loop.

A notification campaign's run records one ``notification.due`` outbox event per
selected customer; the notifier's fan-out turns each into a delivery whose
message is rendered from the customer's profile, tags, consents, wallet and
rewards (Jinja2, sandboxed) with the footer links. Two phases, each in its own
process (its own peak RSS), over the same seeded database and the same events:

- ``plain``: the leanest loop for the same facts and durability — sqlite3 with the
  daemon's pragmas, per batch of 500 events one transaction that reads the same
  rows per customer, renders the same templates (compiled once), signs the same
  two links and inserts the delivery, then commits;
- ``promod``: ``fanout_sync`` through ``Database.run`` in batches of 500.

It prints throughput, p50/p99 per batch, peak RSS and the ratio to the plain loop,
and the load average (the machine may be shared). Not part of the test run::

    .venv/bin/python bench/notifications.py                  # 20,000 messages
    .venv/bin/python bench/notifications.py --messages 5000
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from promod.campaigns.spec import load_spec
from promod.notify.deliveries import Routing, fanout_sync
from promod.notify.outbox import enqueue_many_sync
from promod.store.database import Database

BATCH = 500
PHASES = ("plain", "promod")
SPEC = """
id = "loyalty"
name = "Loyalty"
kind = "notification"
[schedule]
start = "now"
[segment]
tag = "revenue_incomplete_profile"
[notify]
channel = "mail"
consent = "loyalty_reminders"
subject = "{{ customer.attributes.nick }}, {{ missing_steps | length }} steps to your bonus"
text = '''
Hello {{ customer.attributes.nick }},
{% for step in missing_steps %}
- {{ step.text }}
{% endfor %}
Wallet: {{ wallet.points }} points. Tags: {{ tags | join(", ") }}.
'''
html = '''<p>Hello {{ customer.attributes.nick }}</p>
<ul>{% for step in missing_steps %}<li>{{ step.text }}</li>{% endfor %}</ul>'''
[[notify.steps]]
id = "complete_profile"
text = "Complete your profile"
done = { attr = "profile_complete", eq = true }
[[notify.steps]]
id = "verify"
text = "Verify your account"
done = { attr = "verified", eq = true }
"""


def _seed(conn: sqlite3.Connection, count: int) -> None:
    stamp = "2026-01-01T00:00:00Z"
    spec = load_spec(SPEC, "toml").to_dict()
    conn.execute(
        "INSERT INTO campaigns (id, version, state, spec, created_at, updated_at)"
        " VALUES ('loyalty', 1, 'running', ?, 0, 0)",
        (json.dumps(spec),),
    )
    ids = [f"c{i:06d}" for i in range(count)]
    conn.executemany(
        "INSERT INTO customers (id, email, attributes, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?)",
        [
            (c, f"{c}@example.org", json.dumps({"nick": c, "verified": i % 2 == 0}), stamp, stamp)
            for i, c in enumerate(ids)
        ],
    )
    conn.executemany(
        "INSERT INTO customer_tags (tag, customer_id) VALUES (?, ?)",
        [(t, c) for c in ids for t in ("revenue_incomplete_profile", "bonus_interest")],
    )
    conn.executemany(
        "INSERT INTO customer_consents (customer_id, consent, granted, updated_at, source)"
        " VALUES (?, 'loyalty_reminders', 1, ?, 'import')",
        [(c, stamp) for c in ids],
    )
    conn.executemany(
        "INSERT INTO wallet_transactions (customer_id, points, reason, created_at)"
        " VALUES (?, 100, 'bench', 0)",
        [(c,) for c in ids],
    )
    enqueue_many_sync(
        conn,
        "notification.due",
        [
            (
                f"ntf:loyalty:1:{c}",
                {
                    "campaign_id": "loyalty",
                    "run_id": None,
                    "customer_id": c,
                    "done_steps": ["verify"] if i % 2 == 0 else [],
                },
            )
            for i, c in enumerate(ids)
        ],
        now=time.time(),
    )


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _result(phase: str, count: int, elapsed: float, batches: list[float]) -> dict[str, Any]:
    ordered = sorted(batches)
    return {
        "phase": phase,
        "messages": count,
        "seconds": round(elapsed, 3),
        "rate": round(count / elapsed, 1),
        "p50_batch_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_batch_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 1),
        "peak_rss_mb": round(_rss_mb(), 1),
    }


async def _promod(path: Path, count: int) -> dict[str, Any]:
    db = await Database.open(path)
    try:
        await db.run_sync(lambda conn: _seed(conn, count))
        routing = Routing(channel_types={"mail": "smtp"}, public_url="https://promo.example.org")
        batches: list[float] = []
        started = time.perf_counter()
        while True:
            t = time.perf_counter()
            done, _ = await db.run(
                lambda tx: fanout_sync(tx, routing, now=time.time(), limit=BATCH)
            )
            batches.append(time.perf_counter() - t)
            if done < BATCH:
                break
        elapsed = time.perf_counter() - started
        pending = await db.fetchone("SELECT count(*) FROM deliveries WHERE state = 'pending'")
        assert pending is not None and int(pending[0]) == count, pending
    finally:
        await db.close()
    return _result("promod", count, elapsed, batches)


def _plain(path: Path, count: int) -> dict[str, Any]:
    # The schema and data through promod (same file layout), then a bare loop on them.
    async def setup() -> None:
        db = await Database.open(path)
        try:
            await db.run_sync(lambda conn: _seed(conn, count))
        finally:
            await db.close()

    asyncio.run(setup())
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    spec = json.loads(conn.execute("SELECT spec FROM campaigns").fetchone()[0])
    notify = spec["notify"]
    text_env = SandboxedEnvironment(
        undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True
    )
    html_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=True)
    templates = {
        "subject": text_env.from_string(notify["subject"]),
        "text": text_env.from_string(notify["text"]),
        "html": html_env.from_string(notify["html"]),
    }
    key = os.urandom(32)
    batches: list[float] = []
    started = time.perf_counter()
    while True:
        t = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        rows = conn.execute(
            "SELECT id, event_id, payload FROM outbox WHERE state = 'pending' ORDER BY id LIMIT ?",
            (BATCH,),
        ).fetchall()
        for event_pk, event_id, payload_text in rows:
            payload = json.loads(payload_text)
            cid = payload["customer_id"]
            consent = conn.execute(
                "SELECT granted FROM customer_consents WHERE customer_id = ? AND consent = ?",
                (cid, notify["consent"]),
            ).fetchone()
            if not consent or not consent[0]:
                continue
            row = conn.execute(
                "SELECT email, timezone, attributes, created_at FROM customers WHERE id = ?",
                (cid,),
            ).fetchone()
            tags = [
                r[0]
                for r in conn.execute(
                    "SELECT tag FROM customer_tags WHERE customer_id = ? ORDER BY tag", (cid,)
                )
            ]
            points = conn.execute(
                "SELECT points FROM wallet_balances WHERE customer_id = ?", (cid,)
            ).fetchone()
            grants = conn.execute(
                "SELECT campaign_id, code FROM grants WHERE customer_id = ? LIMIT 50", (cid,)
            ).fetchall()
            done = set(payload["done_steps"])
            steps = [
                {"id": s["id"], "text": s["text"], "done": s["id"] in done} for s in notify["steps"]
            ]
            sig = hmac.new(key, cid.encode(), hashlib.sha256).hexdigest()
            context = {
                "customer": {"id": cid, "email": row[0], "attributes": json.loads(row[2])},
                "tags": tags,
                "wallet": {"points": points[0] if points else 0},
                "rewards": grants,
                "missing_steps": [s for s in steps if not s["done"]],
                "unsubscribe_url": f"https://promo.example.org/v1/unsubscribe?token={sig}",
            }
            rendered = {k: t.render(context) for k, t in templates.items()}
            message = json.dumps({"to": row[0], **rendered})
            conn.execute(
                "INSERT INTO deliveries (event_id, type, kind, channel, customer_id, recipient,"
                " consent, campaign_id, message, state, next_attempt_at, created_at, updated_at)"
                " VALUES (?, 'notification.due', 'message', 'mail', ?, ?, ?, 'loyalty', ?,"
                " 'pending', 0, 0, 0)",
                (event_id, cid, row[0], notify["consent"], message),
            )
            conn.execute("UPDATE outbox SET state = 'done' WHERE id = ?", (event_pk,))
        conn.execute("COMMIT")
        batches.append(time.perf_counter() - t)
        if len(rows) < BATCH:
            break
    elapsed = time.perf_counter() - started
    assert conn.execute("SELECT count(*) FROM deliveries").fetchone()[0] == count
    conn.close()
    return _result("plain", count, elapsed, batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "promod.db"
            if args.phase == "plain":
                result = _plain(path, args.messages)
            else:
                result = asyncio.run(_promod(path, args.messages))
        print(json.dumps(result), flush=True)
        return
    load_before = os.getloadavg()
    results: dict[str, dict[str, Any]] = {}
    for phase in PHASES:
        child = subprocess.run(
            [sys.executable, __file__, "--phase", phase, "--messages", str(args.messages)],
            capture_output=True,
            text=True,
            check=False,
        )
        if child.returncode != 0:
            raise SystemExit(f"phase {phase} failed:\n{child.stderr}")
        results[phase] = json.loads(child.stdout.strip().splitlines()[-1])
    load_after = os.getloadavg()
    print(f"messages: {args.messages}, batch: {BATCH}, cpus: {os.cpu_count()}")
    print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")
    plain = results["plain"]["rate"]
    for r in results.values():
        print(
            f"{r['phase']:>7}: {r['rate']:>9.1f} messages/s  {r['seconds']:>7.2f} s"
            f"  batch p50 {r['p50_batch_ms']:.1f} ms  p99 {r['p99_batch_ms']:.1f} ms"
            f"  peak RSS {r['peak_rss_mb']:.1f} MiB  ratio to plain {r['rate'] / plain:.2f}"
        )
    print(f"load average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")


if __name__ == "__main__":
    main()
