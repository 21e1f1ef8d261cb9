"""The live actor: owns the live-action engine and runs its passes, one at a time.

``POST /v1/events`` commits its batch and tells this actor ``EventsStored``; the
request does not wait for matching (docs/architecture.md, "Message flow"). Each
``EventsStored`` runs one bounded pass (:meth:`LiveEngine.process_batch`: at most
``EVENTS_PER_TRANSACTION`` events in one transaction, the cursor moved in it), and
the pass wakes the ledger for targets due now. Wakes told while a pass runs merge
into one, so under load one pass serves many requests; a pass that left events
after the cursor tells the actor again, so a scheduler's ``LiveTick`` or an
``Inspect`` never waits for more than one pass. At start it looks once: events
stored while no live actor ran (a crash between a POST's answer and the match)
are matched then, and inaction windows that closed meanwhile are closed.

The scheduler asks ``LiveTick(now)`` on each tick: catch up on events (also those
stored by CRM sync and imports, which tell nobody) and close the inaction windows
due at ``now``::

    wake(app.actor("live"), EventsStored())
    await app.actor("live").ask(LiveTick(now))      # {"timers_fired": 1, ...}
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from promod.actors.base import Actor, ActorNotRunning, MailboxFull
from promod.actors.messages import EventsStored, Inspect, LiveTick
from promod.live.engine import Fired, LiveEngine

if TYPE_CHECKING:
    from promod.app import App

__all__ = ["LiveActor", "summary"]


def summary(fired: Fired) -> dict[str, Any]:
    """What a pass did, JSON-able (refusals by reason as a plain dict)."""
    out = asdict(fired)
    out["refused"] = dict(fired.refused)
    return out


class LiveActor(Actor):
    name = "live"

    def __init__(self, app: App) -> None:
        super().__init__()
        self.app = app
        self.engine = LiveEngine(app)
        self.passes = 0

    async def on_start(self) -> None:
        # Events and windows the last instance left: matched and closed first thing.
        self.tell(EventsStored())

    async def receive(self, message: object) -> object:
        if isinstance(message, EventsStored):
            await self._pass()
            return None
        if isinstance(message, LiveTick):
            fired = await self.engine.tick(message.now)
            self.engine.tell_listeners(fired)
            return summary(fired)
        if isinstance(message, Inspect):
            return {"passes": self.passes, "totals": summary(self.engine.totals)}
        raise TypeError(f"live: unknown message {type(message).__name__}")

    async def settle(self) -> None:
        """Match every event stored so far."""
        await self.engine.process()

    async def _pass(self) -> None:
        if not self.passes:
            # A scheduler tick missed while this actor restarted closes no window
            # later (the scheduler sleeps until the next one): close them now.
            fired = await self.engine.tick(self.app.clock.now())
            self.engine.wake(fired)
        else:
            fired = await self.engine.process_batch()
        self.passes += 1
        if not fired.more:
            return
        try:
            self.tell(EventsStored())  # the rest after whatever else is waiting
        except MailboxFull:
            await self.engine.process()
        except ActorNotRunning:
            return  # stopping: the next instance starts at the cursor
