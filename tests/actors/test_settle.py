"""promod.actors.settle: rounds of Settle until the store stops changing."""

from __future__ import annotations

import anyio
import pytest

from promod.actors.base import Actor
from promod.actors.settle import NotSettled, settle
from promod.store.database import Database

pytestmark = pytest.mark.anyio


class Mover(Actor):
    """Settles by moving one row from ``todo`` to ``done`` (nothing when ``todo`` is empty)."""

    def __init__(self, db: Database) -> None:
        super().__init__()
        self.db = db
        self.settled = 0

    async def settle(self) -> None:
        self.settled += 1
        async with self.db.transaction() as conn:
            cur = await conn.execute("SELECT min(id) FROM todo")
            row = await cur.fetchone()
            if row is not None and row[0] is not None:
                await conn.execute("DELETE FROM todo WHERE id = ?", (row[0],))
                await conn.execute("INSERT INTO done (id) VALUES (?)", (row[0],))


class Forwarder(Actor):
    """Settles by handing what is ``done`` on to ``sent``: work one actor leaves another."""

    def __init__(self, db: Database) -> None:
        super().__init__()
        self.db = db

    async def settle(self) -> None:
        await self.db.execute("INSERT INTO sent (id) SELECT id FROM done")
        await self.db.execute("DELETE FROM done")


class Restless(Actor):
    """Writes on every Settle: never idle."""

    def __init__(self, db: Database) -> None:
        super().__init__()
        self.db = db

    async def settle(self) -> None:
        await self.db.execute("INSERT INTO sent (id) VALUES (NULL)")


async def _tables(db: Database, todo: int) -> None:
    for table in ("todo", "done", "sent"):
        await db.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY)")
    await db.executemany("INSERT INTO todo (id) VALUES (?)", [(i,) for i in range(todo)])


async def _count(db: Database, table: str) -> int:
    row = await db.fetchone(f"SELECT count(*) FROM {table}")
    assert row is not None
    return int(row[0])


async def test_settle_runs_rounds_until_one_changes_nothing(db: Database) -> None:
    await _tables(db, todo=3)
    forwarder, mover = Forwarder(db), Mover(db)
    async with anyio.create_task_group() as tg:
        await tg.start(forwarder.run)
        await tg.start(mover.run)
        # The forwarder goes first: what the mover leaves is forwarded in the next round.
        rounds = await settle([forwarder, mover], db)
        assert rounds == 5  # three moves, the last forward, then a round with nothing to do
        assert (await _count(db, "todo"), await _count(db, "done")) == (0, 0)
        assert await _count(db, "sent") == 3
        assert await settle([forwarder, mover], db) == 1
        assert mover.settled == 6
        forwarder.request_stop()
        mover.request_stop()


async def test_settle_gives_up_when_the_actors_never_rest(db: Database) -> None:
    await _tables(db, todo=0)
    restless = Restless(db)
    async with anyio.create_task_group() as tg:
        await tg.start(restless.run)
        with pytest.raises(NotSettled, match=r"3 rounds \(still changing the store: actor\)"):
            await settle([restless], db, max_rounds=3)
        assert await _count(db, "sent") == 3
        restless.request_stop()


async def test_an_actor_without_due_work_answers_settle(db: Database) -> None:
    idle = Actor()
    async with anyio.create_task_group() as tg:
        await tg.start(idle.run)
        assert await settle([idle], db) == 1
        idle.request_stop()
