"""The scheduler actor: owns the campaign timeline.

It starts runs when a campaign's start (or its next daily recurrence) comes,
resumes campaigns paused by a daily cap when their next local day begins, and
tells the ledger when targets fall due (at once, or at each customer's local
or best time). Between those moments it sleeps until the earliest next one, a
change of the app's clock, or a ``Kick`` (sent when campaigns change), so tests
can move time with a manual clock and nothing waits on the wall clock.
"""

from __future__ import annotations

import sqlite3
from functools import partial
from typing import TYPE_CHECKING

import anyio

from promod.actors.base import Actor
from promod.actors.messages import Inspect, Kick, LiveTick, ProcessDue, RunsChanged
from promod.actors.refs import wake
from promod.campaigns import store as campaigns
from promod.campaigns.runs import create_run_sync
from promod.clock import sleep_until_woken
from promod.live.store import next_timer
from promod.logs import get_logger
from promod.store.seam import SqliteTransaction

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
            self.next_wake = await self.app.db.run_sync(
                partial(next_wake_sync, now=now), write=False
            )
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
        started = await self.app.db.run_sync(lambda conn: self._start_runs(conn, now))
        for campaign_id, run_id in started:
            log.info("run_started", campaign=campaign_id, run=run_id)
        if started:
            wake(self.app.actor("clearance"), RunsChanged())
        # Live-action campaigns: catch up on stored events, close due inaction windows.
        try:
            await self.app.actor("live").ask(LiveTick(now), timeout=LIVE_TICK_TIMEOUT)
        except Exception as exc:
            log.error("live_tick_failed", error=repr(exc))
        wake(self.app.actor("ledger"), ProcessDue())

    def _start_runs(self, conn: sqlite3.Connection, now: float) -> list[tuple[str, int]]:
        for (campaign_id,) in conn.execute(
            "SELECT id FROM campaigns WHERE state = 'paused' AND paused_until IS NOT NULL"
            " AND paused_until <= ?",
            (now,),
        ).fetchall():
            campaigns.resume_sync(conn, campaign_id, now=now)
        started = []
        due = conn.execute(
            "SELECT id FROM campaigns WHERE state IN ('scheduled', 'running')"
            " AND next_run_at IS NOT NULL AND next_run_at <= ? + ?",
            (now, MAX_CLEARANCE_LEAD),
        ).fetchall()
        for (campaign_id,) in due:
            conn.execute("SAVEPOINT start_run")
            try:
                run = self._start_one(conn, campaign_id, now)
            except Exception as exc:
                # One broken campaign must not stop the timeline: pause it, say why.
                conn.execute("ROLLBACK TO start_run")
                conn.execute("RELEASE start_run")
                log.error("run_start_failed", campaign=campaign_id, error=repr(exc))
                campaigns.pause_sync(
                    conn, campaign_id, f"error:{type(exc).__name__}", now=now, by="scheduler"
                )
                continue
            conn.execute("RELEASE start_run")
            if run is not None:
                started.append((campaign_id, run))
        return started

    def _start_one(self, conn: sqlite3.Connection, campaign_id: str, now: float) -> int | None:
        campaign = campaigns.get_sync(conn, campaign_id)
        if campaign is None or campaigns.active_run_sync(conn, campaign_id) is not None:
            return None
        assert campaign.next_run_at is not None
        if needs_clearance(campaign):
            # The site approves the target list before execution: snapshot it
            # ``lead`` ahead of the run's time; the clearance actor takes over.
            if campaign.next_run_at - campaign.spec.clearance.lead > now:
                return None
            run_id = create_run_sync(
                conn,
                campaign_id,
                campaign.version,
                campaign.spec,
                now=now,
                pilot=campaign.pilot,
                clearance_deadline=max(campaign.next_run_at, now),
            )
            conn.execute(
                "UPDATE campaigns SET next_run_at = NULL, updated_at = ? WHERE id = ?",
                (now, campaign_id),
            )
            return run_id
        if campaign.next_run_at > now:
            return None
        end = campaign.spec.schedule.end
        if end is not None and end.timestamp() <= now:
            conn.execute(
                "UPDATE campaigns SET state = 'completed', next_run_at = NULL,"
                " updated_at = ? WHERE id = ?",
                (now, campaign_id),
            )
            return None
        run_id = create_run_sync(
            conn, campaign_id, campaign.version, campaign.spec, now=now, pilot=campaign.pilot
        )
        conn.execute(
            "UPDATE campaigns SET state = 'running', next_run_at = NULL, updated_at = ?"
            " WHERE id = ?",
            (now, campaign_id),
        )
        return run_id


# How long a tick waits for the live actor's catch-up and timers (it carries on after).
LIVE_TICK_TIMEOUT = 60.0

# Clearance leads longer than this are not looked ahead for (a week).
MAX_CLEARANCE_LEAD = 7 * 86400.0


def needs_clearance(campaign: campaigns.CampaignRow) -> bool:
    return campaign.spec.clearance.required and campaign.spec.kind != "live_action"


def next_wake_sync(conn: sqlite3.Connection, now: float) -> float | None:
    """The earliest future moment the timeline has anything to do."""
    clearance_starts = []
    for (campaign_id,) in conn.execute(
        "SELECT id FROM campaigns WHERE state IN ('scheduled', 'running')"
        " AND next_run_at IS NOT NULL AND json_extract(spec, '$.clearance.required') = 1"
    ).fetchall():
        campaign = campaigns.get_sync(conn, campaign_id)
        if campaign is not None and campaign.next_run_at is not None and needs_clearance(campaign):
            start = campaign.next_run_at - campaign.spec.clearance.lead
            if start > now:
                clearance_starts.append(start)
    candidates = [*clearance_starts] + [
        row[0]
        for row in conn.execute(
            "SELECT min(next_run_at) FROM campaigns WHERE state IN ('scheduled', 'running')"
            " AND next_run_at > ?"
            " UNION ALL SELECT min(paused_until) FROM campaigns WHERE state = 'paused'"
            " AND paused_until > ?"
            " UNION ALL SELECT min(t.due_at) FROM run_targets t JOIN runs r ON r.id = t.run_id"
            " JOIN campaigns c ON c.id = r.campaign_id WHERE c.state = 'running'"
            " AND r.state IN ('pilot', 'running') AND t.status = 'pending' AND t.due_at > ?",
            (now, now, now),
        )
        if row[0] is not None
    ]
    live_timer = next_timer(SqliteTransaction(conn), now)  # live-action inaction windows
    if live_timer is not None:
        candidates.append(live_timer)
    # A running live-action campaign completes when its schedule ends.
    for (campaign_id,) in conn.execute(
        "SELECT id FROM campaigns WHERE state = 'running'"
        " AND json_extract(spec, '$.kind') = 'live_action'"
        " AND json_extract(spec, '$.schedule.end') IS NOT NULL"
    ).fetchall():
        campaign = campaigns.get_sync(conn, campaign_id)
        end = None if campaign is None else campaign.spec.schedule.end
        if end is not None and end.timestamp() > now:
            candidates.append(end.timestamp())
    return min(candidates) if candidates else None
