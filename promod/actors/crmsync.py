"""The crmsync actor: owns the CRM connectors and their schedules.

At start it marks runs a killed daemon left half way as failed (their staged
records dropped, the old list untouched) and refreshes those connectors again at
once. Then it sleeps on the app's clock until the next refresh or response export
of any connector (``schedule`` and ``responses`` of each ``[crm.NAME]``), a change
of the clock, or a :class:`SyncNow`; one refresh of a connector runs at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio

from promod.actors.base import Actor, UnknownMessage
from promod.actors.messages import Inspect
from promod.admin.registry import Caller
from promod.clock import sleep_until_woken
from promod.crm import store
from promod.crm.connector import Connector, build_connectors
from promod.crm.sync import Progress, export_responses, next_time, refresh
from promod.logs import get_logger

log = get_logger("promod.crmsync", actor="crmsync")


@dataclass(frozen=True)
class SyncNow:
    """Refresh connector ``name`` now; answers the new run's id (or the running one's)."""

    name: str
    trigger: str = "manual"


@dataclass(frozen=True)
class Status:
    """Connector ``name`` (or all): schedule, next times, the run in progress."""

    name: str | None = None


if TYPE_CHECKING:
    from promod.app import App


class CrmSyncActor(Actor):
    name = "crmsync"

    def __init__(self, app: App, *, connectors: dict[str, Connector] | None = None) -> None:
        super().__init__()
        self.app = app
        self.connectors: dict[str, Connector] = connectors or {}
        self._given = connectors is not None
        self.next_sync: dict[str, float] = {}
        self.next_responses: dict[str, float] = {}
        self.running: dict[str, Progress] = {}
        self.last_export: dict[str, dict[str, Any]] = {}
        self._due: set[str] = set()
        self._manual: set[str] = set()
        self._kick = anyio.Event()

    async def on_start(self) -> None:
        if not self._given:
            self.connectors = build_connectors(
                self.app.config.crm, self.app.plugins.crm_connector_types
            )
        now = self.app.clock.now()
        interrupted = await self.app.db.run(partial(store.fail_interrupted, now=now))
        for name in interrupted:
            if name in self.connectors:
                log.warning("crm_sync_interrupted", connector=name)
                self._due.add(name)
        last = await self.app.db.run(store.last_runs, write=False)
        zone = self.app.config.daemon.timezone
        for name, cfg in self.app.config.crm.items():
            started = last.get(name, {}).get("last_run", {}).get("started_at")
            base = float(started) if started is not None else now
            self.next_sync[name] = next_time(cfg.schedule, base, zone)
            if started is not None and self.next_sync[name] <= now:
                self._due.add(name)  # a refresh missed while the daemon was down
            self.next_responses[name] = next_time(cfg.responses, now, zone)

    async def on_stop(self) -> None:
        for name, connector in self.connectors.items():
            try:
                await connector.close()
            except Exception as exc:
                log.warning("crm_connector_close_failed", connector=name, error=repr(exc))

    async def receive(self, message: object) -> object:
        if isinstance(message, Inspect):
            return self.status(None)
        if isinstance(message, Status):
            return self.status(message.name)
        if isinstance(message, SyncNow):
            if message.name not in self.connectors:
                raise KeyError(message.name)
            if message.name not in self.running:
                self._due.add(message.name)
                self._manual.add(message.name)
                self._kick.set()
            return None
        raise UnknownMessage(self, message)

    def status(self, name: str | None) -> dict[str, Any]:
        names = [name] if name is not None else sorted(self.app.config.crm)
        return {
            n: {
                "next_sync": self.next_sync.get(n),
                "next_responses": self.next_responses.get(n),
                "running": self.running[n].to_dict() if n in self.running else None,
                "queued": n in self._due,
                "last_export": self.last_export.get(n),
            }
            for n in names
        }

    async def background(self) -> None:
        clock = self.app.clock
        zone = self.app.config.daemon.timezone
        async with anyio.create_task_group() as tg:
            while True:
                self._kick = anyio.Event()
                changed = clock.changed()
                now = clock.now()
                for name, cfg in self.app.config.crm.items():
                    if name not in self.connectors:
                        continue
                    if self.next_sync.get(name, now + 1) <= now:
                        self.next_sync[name] = next_time(cfg.schedule, now, zone)
                        self._due.add(name)
                    if self.next_responses.get(name, now + 1) <= now:
                        self.next_responses[name] = next_time(cfg.responses, now, zone)
                        tg.start_soon(self._responses, name)
                for name in sorted(self._due):
                    if name not in self.running:
                        self._due.discard(name)
                        tg.start_soon(self._refresh, name)
                wake = min([*self.next_sync.values(), *self.next_responses.values()], default=None)
                await sleep_until_woken(clock, wake, self._kick, changed)

    async def _refresh(self, name: str) -> None:
        cfg = self.app.config.crm[name]
        trigger = "manual" if name in self._manual else "schedule"
        self._manual.discard(name)

        def started(progress: Progress) -> None:
            self.running[name] = progress

        try:
            run = await refresh(
                self.app, cfg, self.connectors[name], trigger=trigger, on_start=started
            )
            await self._audit(run)
        except Exception as exc:  # the store down: the next schedule tries again
            log.error("crm_sync_crashed", connector=name, error=repr(exc))
        finally:
            self.running.pop(name, None)
            self._kick.set()

    async def _audit(self, run: dict[str, Any]) -> None:
        """Every refresh is in the audit log, as the daemon's own act."""
        daemon = Caller.daemon("promod")
        args = {
            k: run.get(k)
            for k in (
                "connector",
                "list",
                "trigger",
                "state",
                "fetched",
                "added",
                "removed",
                "suppressed",
                "invalid",
            )
        }
        args["run"] = run.get("id")
        outcome = "error" if run.get("state") == "failed" else "ok"
        await self.app.audit.append(daemon, "crm.refresh", args, outcome, run.get("error"))

    async def _responses(self, name: str) -> None:
        try:
            self.last_export[name] = await export_responses(
                self.app, self.app.config.crm[name], self.connectors[name]
            )
        except Exception as exc:
            log.error("crm_responses_failed", connector=name, error=str(exc))
            self.last_export[name] = {"connector": name, "error": str(exc)}
