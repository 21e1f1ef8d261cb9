"""The tagger actor: keeps tags current by the tag rules (``promodctl tags apply``).

Two kinds of work, each one store transaction (:mod:`promod.tags.store`):

- **events**: on :class:`~promod.actors.messages.EventsStored` (told by the HTTP events
  route once a batch has committed) and at start, the events stored past its cursor
  are read in batches; for their customers only, it evaluates the rules that read
  those event names, and moves the cursor in the same transaction;
- **checks**: every rule is evaluated over every customer when it is new (a
  :class:`~promod.actors.messages.RulesChanged` after an apply) and then every
  ``recheck`` of the app's clock, which removes tags whose event windows expired.

All work runs in the mailbox, one piece at a time; a background task sleeps on the
app's clock until the next check is due (or the clock changes) and tells the actor::

    wake(app.actor("tagger"), EventsStored())
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import anyio

from promod.actors.base import Actor, ActorNotRunning, MailboxFull, UnknownMessage
from promod.actors.messages import EventsStored, Inspect, Recheck, RulesChanged
from promod.clock import sleep_until_woken
from promod.logs import get_logger
from promod.tags import store

if TYPE_CHECKING:
    from promod.app import App

__all__ = ["TaggerActor"]

log = get_logger("promod.tags", actor="tagger")


class TaggerActor(Actor):
    name = "tagger"

    def __init__(self, app: App) -> None:
        super().__init__()
        self.app = app
        self.events_seen = 0
        self.checks = 0
        self.added = 0
        self.removed = 0
        self.next_check_at: float | None = None
        self._kick = anyio.Event()

    async def on_start(self) -> None:
        await self._events()

    async def settle(self) -> None:
        await self._events()
        await self._checks()

    async def receive(self, message: object) -> object:
        if isinstance(message, EventsStored):
            return await self._events()
        if isinstance(message, RulesChanged | Recheck):
            result = await self._checks()
            self._kick.set()
            return result
        if isinstance(message, Inspect):
            return {
                "events_seen": self.events_seen,
                "checks": self.checks,
                "added": self.added,
                "removed": self.removed,
                "next_check_at": self.next_check_at,
            }
        raise UnknownMessage(self, message)

    async def background(self) -> None:
        clock = self.app.clock
        while True:
            self._kick = kick = anyio.Event()
            changed = clock.changed()
            self.next_check_at = await self.app.db.run(store.next_check_at, write=False)
            now = clock.now()
            if self.next_check_at is not None and self.next_check_at <= now:
                try:
                    self.tell(Recheck())
                except MailboxFull:
                    await anyio.sleep(1.0)
                    continue
                except ActorNotRunning:
                    return
                await kick.wait()  # the check has run
                continue
            await sleep_until_woken(clock, self.next_check_at, kick, changed)

    async def _events(self) -> dict[str, Any]:
        total: dict[str, Any] = {"events": 0, "added": 0, "removed": 0}
        while True:
            now = float(self.app.clock.now())
            done = await self.app.db.run(partial(store.process_events, as_of=now))
            for key in ("events", "added", "removed"):
                total[key] += done[key]
            for rule, counts in done["rules"].items():
                log.info("tags_changed", rule=rule, trigger="events", **counts)
            if not done["more"]:
                break
        self.events_seen += total["events"]
        self.added += total["added"]
        self.removed += total["removed"]
        return total

    async def _checks(self) -> dict[str, Any]:
        now = float(self.app.clock.now())
        names = await self.app.db.run(partial(store.due_rules, now=now), write=False)
        result: dict[str, Any] = {}
        for name in names:
            change = await self.app.db.run(partial(store.check_rule, name=name, as_of=now))
            if change is None:
                continue
            self.checks += 1
            self.added += len(change.added)
            self.removed += len(change.removed)
            result[name] = change.counts()
            if change.added or change.removed:
                log.info("tags_changed", rule=name, trigger="check", **change.counts())
        return result
