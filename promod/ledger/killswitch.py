"""The global kill switch: a row in ``meta`` that stops every grant until released.

The ledger reads it inside each grant transaction, so once ``engage`` has
committed no further grant can commit; it survives restarts because it lives in
the database::

    await engage(db, by="alice", now=clock.now())
    assert await is_engaged(db)
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from promod.notify.outbox import enqueue_sync
from promod.store.database import Database

KEY = "killswitch"


def is_engaged_sync(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM meta WHERE key = ?", (KEY,)).fetchone() is not None


async def is_engaged(db: Database) -> bool:
    return await db.fetchone("SELECT 1 FROM meta WHERE key = ?", (KEY,)) is not None


async def state(db: Database) -> dict[str, Any] | None:
    row = await db.fetchone("SELECT value FROM meta WHERE key = ?", (KEY,))
    return None if row is None else dict(json.loads(row[0]))


async def engage(db: Database, *, by: str, now: float) -> bool:
    """Engage; False when it already was. Records a ``killswitch.engaged`` event."""

    def work(conn: sqlite3.Connection) -> bool:
        if is_engaged_sync(conn):
            return False
        value = json.dumps({"engaged_at": now, "by": by})
        conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (KEY, value))
        enqueue_sync(conn, "killswitch.engaged", {"by": by, "engaged_at": now}, now=now)
        return True

    return await db.run_sync(work, essential=True)


async def release(db: Database) -> bool:
    """Release; False when it was not engaged."""

    def work(conn: sqlite3.Connection) -> bool:
        return conn.execute("DELETE FROM meta WHERE key = ?", (KEY,)).rowcount > 0

    return await db.run_sync(work, essential=True)
