"""The scheduler actor: owns the campaign timeline.

It starts runs when a campaign's start (or its next daily recurrence) comes,
resumes campaigns paused by a daily cap when their next local day begins, and
tells the ledger when targets fall due (at once, or at each customer's local
or best time). Between those moments it sleeps until the earliest next one, a
change of the app's clock, or a ``Kick`` (sent when campaigns change), so tests
can move time with a manual clock and nothing waits on the wall clock.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import anyio

from promod.actors.base import Actor
from promod.actors.messages import Inspect, Kick, ProcessDue, RunsChanged
from promod.actors.refs import wake
from promod.campaigns.store_schedule import next_wake_sync, start_due_runs_sync
from promod.clock import sleep_until_woken
from promod.live.engine import live_engine
from promod.logs import get_logger

if TYPE_CHECKING:
    from promod.app import App

log = get_logger("promod.scheduler", actor="scheduler")


class SchedulerActor(Actor):
    name = "scheduler"

    def __init__(self, app: App) -> None:
        super().__init__()
        self.app = app
        self._kick = anyio.Event()
        self._ticking = anyio.Lock()  # one tick at a time: the timeline's or settle's
        self.next_wake: float | None = None
        self.ticks = 0

    async def receive(self, message: object) -> object:
        if isinstance(message, Inspect):
            return {"clock": self.app.clock.now(), "next_wake": self.next_wake, "ticks": self.ticks}
        if isinstance(message, Kick):
            self._kick.set()
            return None
        raise TypeError(f"scheduler: unknown message {type(message).__name__}")

    async def background(self) -> None:
        clock = self.app.clock
        while True:
            self._kick = anyio.Event()
            changed = clock.changed()  # taken before reading the time: no change is missed
            now = clock.now()
            await self.tick(now)
            self.next_wake = await self.app.db.run(partial(next_wake_sync, now=now), write=False)
            await sleep_until_woken(clock, self.next_wake, self._kick, changed)

    async def settle(self) -> None:
        """One tick at the clock's time now; the timeline then looks again."""
        await self.tick(self.app.clock.now())
        self._kick.set()

    async def tick(self, now: float) -> None:
        """Start due runs, lift daily pauses, then let the ledger grant what is due."""
        async with self._ticking:
            await self._tick(now)

    async def _tick(self, now: float) -> None:
        self.ticks += 1
        started = await self.app.db.run(
            lambda tx: start_due_runs_sync(tx, now=now, on_error=_start_failed)
        )
        for campaign_id, run_id in started:
            log.info("run_started", campaign=campaign_id, run=run_id)
        if started:
            wake(self.app.actor("clearance"), RunsChanged())
        # Live-action campaigns: catch up on stored events, close due inaction windows.
        try:
            await live_engine(self.app).tick(now)
        except Exception as exc:
            log.error("live_tick_failed", error=repr(exc))
        wake(self.app.actor("ledger"), ProcessDue())


def _start_failed(campaign_id: str, exc: Exception) -> None:
    log.error("run_start_failed", campaign=campaign_id, error=repr(exc))
