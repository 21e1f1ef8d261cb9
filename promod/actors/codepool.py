"""The codepool actor: owns the unique code inventory's schedule — the expiry sweep.

Generation, import, allocation (inside the ledger's grant transactions) and
redemption are functions of :mod:`promod.codepool` that run in one database
transaction each; the actor runs the expiry sweep when it starts and then every
``sweep_interval`` seconds of the app's clock (``codepool.low`` alerts of pools
drained by expiry are emitted in the sweep's transaction)::

    await app.actor("codepool").ask(Sweep())      # {"expired": {"XMAS25": 12}}
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskStatus

from promod.actors.base import Actor, ActorNotRunning, MailboxFull
from promod.actors.messages import Inspect, Sweep
from promod.codepool.store import expire_sync
from promod.logs import get_logger

if TYPE_CHECKING:
    from promod.app import App

log = get_logger("promod.codepool")


class CodePoolActor(Actor):
    name = "codepool"
    sweep_interval = 60.0

    def __init__(self, app: App) -> None:
        super().__init__()
        self.app = app
        self.last_sweep_at: float | None = None
        self.expired_total = 0

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._schedule)
            try:
                await super().run(task_status=task_status)
            finally:
                tg.cancel_scope.cancel()

    async def _schedule(self) -> None:
        clock = self.app.clock
        while True:
            try:
                self.tell(Sweep())
            except MailboxFull:
                pass
            except ActorNotRunning:
                if self.state in ("stopping", "stopped", "failed"):
                    return
            await clock.sleep_until(clock.now() + self.sweep_interval)

    async def settle(self) -> None:
        """Sweep now (the mailbox runs one sweep at a time)."""
        await self._sweep()

    async def receive(self, message: object) -> object:
        if isinstance(message, Sweep):
            return await self._sweep()
        if isinstance(message, Inspect):
            return {
                "last_sweep_at": self.last_sweep_at,
                "expired_total": self.expired_total,
                "sweep_interval": self.sweep_interval,
            }
        raise TypeError(f"codepool: unknown message {type(message).__name__}")

    async def _sweep(self) -> dict[str, Any]:
        now = float(self.app.clock.now())
        total: dict[str, int] = {}
        while True:
            done = await self.app.db.run(partial(expire_sync, now=now))
            if not done:
                break
            for pool, n in done.items():
                total[pool] = total.get(pool, 0) + n
        self.last_sweep_at = now
        count = sum(total.values())
        self.expired_total += count
        if count:
            log.info("codes_expired", expired=count, pools=sorted(total))
        return {"expired": total}
