"""The clearance actor: owns conditional execution.

The scheduler snapshots a clearance campaign's target list into a run in state
``clearance`` (``lead`` ahead of the start) and tells this actor ``RunsChanged``.
The actor announces every such run once (a ``clearance.required`` outbox event with
a stable id, which the notifier delivers to ``[webhooks] clearance``) and keeps a
durable timer on the earliest deadline: it sleeps on the app's clock until then, a
clock change, or a message, never polling the wall clock. At a deadline it applies
the site's answers in one transaction (see :func:`promod.clearance.store.decide_due_sync`)
and kicks the scheduler so the ledger grants the approved targets. Everything it
needs is in the database, so it simply looks again after a restart::

    wake(app.actor("clearance"), RunsChanged())
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from promod.actors.base import Actor
from promod.actors.messages import Inspect, Kick, RunsChanged, Wake
from promod.actors.refs import wake
from promod.clearance.store import announce_sync, decide_due_sync, next_deadline_sync
from promod.clock import sleep_until_woken
from promod.logs import get_logger

if TYPE_CHECKING:
    from promod.app import App

log = get_logger("promod.clearance", actor="clearance")


class ClearanceActor(Actor):
    name = "clearance"

    def __init__(self, app: App) -> None:
        super().__init__()
        self.app = app
        self._kick = anyio.Event()
        self._ticking = anyio.Lock()  # one tick at a time: the timer's or settle's
        self.next_deadline: float | None = None
        self.announced = 0
        self.decided = 0
        self.ticks = 0

    async def receive(self, message: object) -> object:
        if isinstance(message, Inspect):
            return {
                "next_deadline": self.next_deadline,
                "announced": self.announced,
                "decided": self.decided,
                "ticks": self.ticks,
            }
        if isinstance(message, RunsChanged):
            self._kick.set()
            return None
        raise TypeError(f"clearance: unknown message {type(message).__name__}")

    async def background(self) -> None:
        clock = self.app.clock
        while True:
            self._kick = anyio.Event()
            changed = clock.changed()  # taken before reading the time: no change is missed
            await self.tick(clock.now())
            self.next_deadline = await self.app.db.run(next_deadline_sync, write=False)
            await sleep_until_woken(clock, self.next_deadline, self._kick, changed)

    async def settle(self) -> None:
        """One tick at the clock's time now; the timer then looks again."""
        await self.tick(self.app.clock.now())
        self._kick.set()

    async def tick(self, now: float) -> None:
        """Announce new clearance runs, then decide those whose deadline has come."""
        async with self._ticking:
            await self._tick(now)

    async def _tick(self, now: float) -> None:
        self.ticks += 1
        public_url = self.app.config.http.public_url
        announced = await self.app.db.run(
            lambda tx: announce_sync(tx, now=now, public_url=public_url)
        )
        if announced:
            self.announced += len(announced)
            log.info("clearance_required", runs=announced)
            wake(self.app.actor("notifier"), Wake())
        floor = self.app.config.clearance.min_approval_rate
        decisions = await self.app.db.run(
            lambda tx: decide_due_sync(tx, now=now, min_approval_rate=floor)
        )
        for d in decisions:
            self.decided += 1
            log.info(
                "clearance_decided",
                campaign=d.campaign_id,
                run=d.run_id,
                state=d.state,
                customers=d.listed,
                approved=d.approved,
                rejected=d.rejected,
                unanswered=d.unanswered,
                approval_rate=None if d.approval_rate is None else str(d.approval_rate),
            )
            if d.low_approval:
                log.warning(
                    "clearance_low_approval",
                    campaign=d.campaign_id,
                    run=d.run_id,
                    approval_rate=str(d.approval_rate),
                )
        if decisions:
            wake(self.app.actor("scheduler"), Kick())
            if any(d.low_approval for d in decisions):
                wake(self.app.actor("notifier"), Wake())
