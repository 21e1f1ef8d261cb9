"""The global kill switch: a row in ``meta`` that stops every grant until released.

The ledger reads it inside each grant transaction, so once ``engage`` has
committed no further grant can commit; it survives restarts because it lives in
the database::

    await engage(db, by="alice", now=clock.now())
    assert await is_engaged(db)
"""

from __future__ import annotations

import json
from typing import Any

from promod.ledger import store
from promod.notify.outbox import enqueue_sync
from promod.store.database import Database
from promod.store.seam import Transaction

KEY = store.KILLSWITCH_KEY


def is_engaged_sync(conn: Transaction | Any) -> bool:
    """Inside a transaction: is the kill switch engaged?"""
    return store.killswitch_engaged(store.as_transaction(conn))


async def is_engaged(db: Database) -> bool:
    return await db.run(store.killswitch_engaged, write=False)


async def state(db: Database) -> dict[str, Any] | None:
    value = await db.run(store.killswitch_value, write=False)
    return None if value is None else dict(json.loads(value))


async def engage(db: Database, *, by: str, now: float) -> bool:
    """Engage; False when it already was. Records a ``killswitch.engaged`` event."""

    def work(tx: Transaction) -> bool:
        if store.killswitch_engaged(tx):
            return False
        store.engage_killswitch(tx, json.dumps({"engaged_at": now, "by": by}))
        enqueue_sync(tx, "killswitch.engaged", {"by": by, "engaged_at": now}, now=now)
        return True

    return await db.run(work, essential=True)


async def release(db: Database) -> bool:
    """Release; False when it was not engaged."""
    return await db.run(store.release_killswitch, essential=True)
