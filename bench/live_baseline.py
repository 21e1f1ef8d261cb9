"""The leanest plain baseline for ``bench/live.py``: the same facts per event, same durability.

A plain asyncio HTTP/1.1 server (no framework, keep-alive, minimal parsing) and plain
sqlite3 (WAL, ``synchronous = FULL``) over a lean schema, doing for each event what
the daemon does: the event is stored (once per id) and committed before the answer,
requests arriving together share that commit; then, in a second transaction, each
event is matched (by name, then ``amount >= i`` as an exact decimal), and a match
records one grant per (campaign, customer) — unique — credits the customer's wallet
balance and records a ``reward.granted`` outbox event. One writer thread does both
transactions in turn. The ``grants`` table has ``id``, ``customer_id`` and
``created_at`` as the daemon's, so the same poller measures both::

    python bench/live_baseline.py DB PORT CAMPAIGNS     # prints "listening" when ready
"""

from __future__ import annotations

import asyncio
import json
import queue
import sqlite3
import sys
import threading
import time
from decimal import Decimal

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY, event_id TEXT UNIQUE, customer_id TEXT NOT NULL,
    name TEXT NOT NULL, ts TEXT NOT NULL, properties TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS grants (
    id INTEGER PRIMARY KEY, campaign INTEGER NOT NULL, customer_id TEXT NOT NULL,
    points INTEGER NOT NULL, created_at REAL NOT NULL, UNIQUE (campaign, customer_id));
CREATE TABLE IF NOT EXISTS wallet (customer_id TEXT PRIMARY KEY, points INTEGER NOT NULL)
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY, type TEXT NOT NULL,
    payload TEXT NOT NULL);
"""


class Store:
    """The writer thread: stores queued batches, answers them, then matches and grants."""

    def __init__(self, path: str, campaigns: int, loop: asyncio.AbstractEventLoop) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = FULL")
        self.conn.executescript(SCHEMA)
        self.names = {f"action{i}": i for i in range(campaigns)}
        self.loop = loop
        self.inbox: queue.Queue[tuple[list[dict[str, object]], asyncio.Future[int]]] = queue.Queue()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            group = [self.inbox.get()]
            while True:
                try:
                    group.append(self.inbox.get_nowait())
                except queue.Empty:
                    break
            conn = self.conn
            conn.execute("BEGIN IMMEDIATE")
            stored: list[tuple[int, dict[str, object]]] = []
            counts = []
            for events, _ in group:
                n = 0
                for e in events:
                    cur = conn.execute(
                        "INSERT INTO events (event_id, customer_id, name, ts, properties)"
                        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
                        (e["id"], e["customer_id"], e["name"], e["ts"],
                         json.dumps(e.get("properties", {}))),
                    )  # fmt: skip
                    if cur.rowcount:
                        n += 1
                        stored.append((int(cur.lastrowid or 0), e))
                counts.append(n)
            conn.execute("COMMIT")
            for (_, future), n in zip(group, counts, strict=True):
                self.loop.call_soon_threadsafe(future.set_result, n)
            self._grant(stored)

    def _grant(self, stored: list[tuple[int, dict[str, object]]]) -> None:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        now = time.time()
        credit: dict[str, int] = {}
        for _, e in stored:
            campaign = self.names.get(str(e["name"]))
            if campaign is None:
                continue
            props = e.get("properties")
            amount = props.get("amount") if isinstance(props, dict) else None
            if amount is None or Decimal(str(amount)) < campaign:
                continue
            customer = str(e["customer_id"])
            cur = conn.execute(
                "INSERT INTO grants (campaign, customer_id, points, created_at)"
                " VALUES (?, ?, 10, ?) ON CONFLICT DO NOTHING",
                (campaign, customer, now),
            )
            if cur.rowcount:
                credit[customer] = credit.get(customer, 0) + 10
                conn.execute(
                    "INSERT INTO outbox (type, payload) VALUES ('reward.granted', ?)",
                    (json.dumps({"campaign": campaign, "customer": customer, "points": 10}),),
                )
        conn.executemany(
            "INSERT INTO wallet (customer_id, points) VALUES (?, ?)"
            " ON CONFLICT (customer_id) DO UPDATE SET points = points + excluded.points",
            credit.items(),
        )
        conn.execute("COMMIT")


async def _serve(store: Store, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
            events = json.loads(body)["events"]
            future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            store.inbox.put((events, future))
            accepted = await future
            answer = json.dumps({"accepted": accepted}).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                + str(len(answer)).encode()
                + b"\r\n\r\n"
                + answer
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


async def main(path: str, port: int, campaigns: int) -> None:
    store = Store(path, campaigns, asyncio.get_running_loop())
    server = await asyncio.start_server(lambda r, w: _serve(store, r, w), "127.0.0.1", port)
    print("listening", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
