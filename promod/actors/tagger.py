"""The tagger actor: keeps tags current by the tag rules (``promodctl tags apply``).

Two kinds of work, each one store transaction (:mod:`promod.tags.store`):

- **events**: on :class:`~promod.actors.messages.EventsStored` (told by the HTTP events
  route and the events import once new events have committed) and at start, the
  events stored past its cursor are read in batches; for their customers only, it
  evaluates the rules that read those event names, and moves the cursor in the same
  transaction;
- **checks**: every rule is evaluated over every customer when it is new (a
  :class:`~promod.actors.messages.RulesChanged` after an apply) and then every
  ``recheck`` of the app's clock, which removes tags whose event windows expired.

All work runs in the mailbox, one piece at a time; a background task sleeps on the
app's clock until the next check is due (or the clock changes) and tells the actor
:class:`~promod.actors.messages.Recheck`::

    wake(app.actor("tagger"), EventsStored())

A store outage stops the actor (the supervisor restarts it when the store is back);
any other failure of an evaluation is logged and the actor carries on: a failed
check is tried again after the rule's ``recheck``, failed events at the next wake.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import anyio

from promod.actors.base import Actor, ActorNotRunning, MailboxFull, UnknownMessage
from promod.actors.messages import EventsStored, Inspect, Recheck, RulesChanged
from promod.clock import sleep_until_woken
from promod.logs import get_logger
from promod.store.health import is_outage
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
        self.failures = 0
        self.next_check_at: float | None = None
        self._retry_at: dict[str, float] = {}  # rule -> when a failed check is tried again
        self._kick = anyio.Event()

    async def on_start(self) -> None:
        await self._events()
        await self._plan_next()

    async def settle(self) -> None:
        await self._events()
        await self._checks()

    async def receive(self, message: object) -> object:
        if isinstance(message, EventsStored):
            return await self._events()
        if isinstance(message, RulesChanged | Recheck):
            return await self._checks()
        if isinstance(message, Inspect):
            return {
                "events_seen": self.events_seen,
                "checks": self.checks,
                "added": self.added,
                "removed": self.removed,
                "failures": self.failures,
                "next_check_at": self.next_check_at,
            }
        raise UnknownMessage(self, message)

    async def background(self) -> None:
        clock = self.app.clock
        while True:
            kick = self._kick
            changed = clock.changed()
            due = self.next_check_at
            if due is not None and due <= clock.now():
                self._kick = anyio.Event()
                try:
                    self.tell(Recheck())
                except MailboxFull:
                    await anyio.sleep(1.0)
                    continue
                except ActorNotRunning:
                    return
                await self._kick.wait()  # the check has run and planned the next one
                continue
            await sleep_until_woken(clock, due, kick, changed)
            if kick.is_set():
                self._kick = anyio.Event()

    def _failed(self, what: str, exc: Exception, **fields: Any) -> None:
        if is_outage(exc):
            raise exc
        self.failures += 1
        log.error("tags_evaluation_failed", work=what, error=repr(exc), **fields)

    async def _events(self) -> dict[str, Any]:
        total: dict[str, Any] = {"events": 0, "added": 0, "removed": 0}
        while True:
            now = float(self.app.clock.now())
            try:
                done = await self.app.db.run(partial(store.process_events, as_of=now))
            except Exception as exc:
                self._failed("events", exc)
                break
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
        rules = await self.app.db.run(store.active_rules, write=False)
        result: dict[str, Any] = {}
        for stored in rules:
            name = stored.rule.name
            if self._due_at(stored) > now:
                continue
            try:
                change = await self.app.db.run(partial(store.check_rule, name=name, as_of=now))
            except Exception as exc:
                self._failed("check", exc, rule=name)
                self._retry_at[name] = now + stored.rule.recheck
                continue
            self._retry_at.pop(name, None)
            if change is None:
                continue
            self.checks += 1
            self.added += len(change.added)
            self.removed += len(change.removed)
            result[name] = change.counts()
            if change.added or change.removed:
                log.info("tags_changed", rule=name, trigger="check", **change.counts())
        await self._plan_next()
        return result

    def _due_at(self, stored: store.StoredRule) -> float:
        due = (
            float("-inf") if stored.checked_at is None else stored.checked_at + stored.rule.recheck
        )
        return max(due, self._retry_at.get(stored.rule.name, float("-inf")))

    async def _plan_next(self) -> None:
        """When the next check is due (None without rules), and wake the timer."""
        rules = await self.app.db.run(store.active_rules, write=False)
        self.next_check_at = min((self._due_at(r) for r in rules), default=None)
        self._kick.set()
