"""The live-action engine: matches stored events against running live triggers and fires.

Events are read from the ``events`` table after a durable cursor (table
``live_cursor``), so events from ``POST /v1/events``, CRM sync and imports are all
seen, each exactly once: the cursor moves in the transaction that records what the
events fired. A firing adds the customer to the campaign's open live run as a
``pending`` target (due now, or at the customer's local/best time) — at most once per
customer and run, by the ``run_targets (run_id, customer_id)`` unique index — and the
ledger grants it under every cap. Inaction triggers keep durable timers
(``live_timers``): opened by the ``after`` event, cancelled by the ``missing`` one,
fired by the scheduler's tick when the window closes, in one transaction with the
target they add::

    engine = live_engine(app)          # one per app (app.live)
    await engine.process()             # after events were stored: match and fire
    await engine.tick(now)             # from the scheduler: catch up, fire due timers
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter as Tally
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any

from promod.actors.messages import Kick, ProcessDue
from promod.actors.refs import wake
from promod.campaigns.runs import due_times
from promod.campaigns.segments import EventRule, compile_segment
from promod.live.index import IndexCache, LiveCampaign, TriggerIndex
from promod.live.match import aggregate_holds, rule_total, where_matches
from promod.logs import get_logger
from promod.store.seam import TxLike, as_tx

if TYPE_CHECKING:
    from promod.app import App

__all__ = [
    "Fired",
    "LiveEngine",
    "live_engine",
    "next_timer_sync",
]

log = get_logger("promod.live")

EVENTS_PER_TRANSACTION = 2000
TIMERS_PER_TRANSACTION = 1000


@dataclass
class Fired:
    """What one pass did: targets added (due now / later), refusals, timers, errors."""

    events: int = 0
    due_now: int = 0
    due_later: int = 0
    refused: Tally[str] = field(default_factory=Tally)
    timers_opened: int = 0
    timers_cancelled: int = 0
    timers_fired: int = 0
    timers_expired: int = 0
    errors: int = 0
    more: bool = False

    def add(self, other: Fired) -> None:
        self.events += other.events
        self.due_now += other.due_now
        self.due_later += other.due_later
        self.refused.update(other.refused)
        self.timers_opened += other.timers_opened
        self.timers_cancelled += other.timers_cancelled
        self.timers_fired += other.timers_fired
        self.timers_expired += other.timers_expired
        self.errors += other.errors
        self.more = other.more


class _Pass:
    """The writes of one transaction: next ranks, targets per run, refusal counts."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.fired = Fired()
        self.ranks: dict[int, int] = {}
        self.targeted: Tally[int] = Tally()
        self.refusals: Tally[tuple[str, str]] = Tally()

    def refuse(self, campaign_id: str, reason: str) -> None:
        self.refusals[(campaign_id, reason)] += 1
        self.fired.refused[reason] += 1

    def next_rank(self, conn: sqlite3.Connection, run_id: int) -> int:
        rank = self.ranks.get(run_id)
        if rank is None:
            (rank,) = conn.execute(
                "SELECT coalesce(max(rank), -1) + 1 FROM run_targets WHERE run_id = ?", (run_id,)
            ).fetchone()
        self.ranks[run_id] = int(rank) + 1
        return int(rank)

    def flush(self, conn: sqlite3.Connection) -> None:
        conn.executemany(
            "UPDATE runs SET targeted = targeted + ? WHERE id = ?",
            [(n, run_id) for run_id, n in self.targeted.items()],
        )
        conn.executemany(
            "INSERT INTO live_refusals (campaign_id, reason, count) VALUES (?, ?, ?)"
            " ON CONFLICT (campaign_id, reason) DO UPDATE SET count = count + excluded.count",
            [(c, r, n) for (c, r), n in self.refusals.items()],
        )


def _properties(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text, parse_float=Decimal)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def in_segment_sync(
    conn: sqlite3.Connection, campaign: LiveCampaign, customer_id: str, now: float
) -> bool:
    """The campaign's segment (if any) selects the customer as of ``now``."""
    segment = campaign.spec.segment
    if segment is None:
        return True
    sql, params = compile_segment(segment, as_of=int(now))
    row = conn.execute(
        f"SELECT 1 FROM ({sql}) WHERE customer_id = ? LIMIT 1", [*params, customer_id]
    ).fetchone()
    return row is not None


def fire_sync(
    conn: sqlite3.Connection,
    work: _Pass,
    campaign: LiveCampaign,
    customer_id: str,
    *,
    source: str,
    event_seq: int | None,
    event_ts: float,
) -> bool:
    """Add the customer to the campaign's live run (once); False with a refusal counted."""
    now = work.now
    run_id = campaign.run_id
    if conn.execute(
        "SELECT 1 FROM run_targets WHERE run_id = ? AND customer_id = ?", (run_id, customer_id)
    ).fetchone():
        work.refuse(campaign.campaign_id, "once_per_customer")
        return False
    if not in_segment_sync(conn, campaign, customer_id, now):
        work.refuse(campaign.campaign_id, "segment")
        return False
    (due,) = due_times(conn, campaign.spec, [customer_id], now)
    cur = conn.execute(
        "INSERT INTO run_targets (run_id, rank, customer_id, due_at, status)"
        " VALUES (?, ?, ?, ?, 'pending') ON CONFLICT (run_id, customer_id) DO NOTHING",
        (run_id, work.next_rank(conn, run_id), customer_id, due),
    )
    if not cur.rowcount:
        work.refuse(campaign.campaign_id, "once_per_customer")
        return False
    conn.execute(
        "INSERT INTO live_firings (run_id, customer_id, campaign_id, source, event_seq,"
        " event_ts, fired_at, due_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (run_id, customer_id, campaign.campaign_id, source, event_seq, event_ts, now, due),
    )
    work.targeted[run_id] += 1
    if due <= now:
        work.fired.due_now += 1
    else:
        work.fired.due_later += 1
    return True


def _missing_seen(
    conn: sqlite3.Connection, customer_id: str, name: str, start: float, end: float
) -> int | None:
    """The seq of a ``name`` event of the customer with ``start <= ts < end``, if any."""
    row = conn.execute(
        "SELECT seq FROM events WHERE name = ? AND customer_id = ? AND ts >= ? AND ts < ?"
        " ORDER BY ts LIMIT 1",
        (name, customer_id, start, end),
    ).fetchone()
    return None if row is None else int(row[0])


class _Event:
    """One stored event being matched, with its properties parsed once."""

    __slots__ = ("_history", "_props", "customer_id", "name", "properties_text", "seq", "ts")

    def __init__(self, seq: int, customer_id: str, name: str, ts: int, properties: str) -> None:
        self.seq = seq
        self.customer_id = customer_id
        self.name = name
        self.ts = ts
        self.properties_text = properties
        self._props: dict[str, Any] | None = None
        self._history: dict[int | None, list[dict[str, Any]]] = {}

    @property
    def properties(self) -> dict[str, Any]:
        if self._props is None:
            self._props = _properties(self.properties_text)
        return self._props

    def history(self, conn: sqlite3.Connection, within: int | None) -> list[dict[str, Any]]:
        """Properties of the customer's events of this name in ``[ts - within, ts]``."""
        found = self._history.get(within)
        if found is None:
            sql = "SELECT properties FROM events WHERE name = ? AND customer_id = ? AND ts <= ?"
            params: list[Any] = [self.name, self.customer_id, self.ts]
            if within is not None:
                sql += " AND ts >= ?"
                params.append(self.ts - within)
            found = [_properties(row[0]) for row in conn.execute(sql, params)]
            self._history[within] = found
        return found


def _threshold_holds(conn: sqlite3.Connection, rule: EventRule, event: _Event) -> bool:
    """The count/sum comparison of ``rule`` holds as of the event (its window ends there)."""
    if rule.sum is None and not rule.where:
        sql = "SELECT count(*) FROM events WHERE name = ? AND customer_id = ? AND ts <= ?"
        params: list[Any] = [event.name, event.customer_id, event.ts]
        if rule.within is not None:
            sql += " AND ts >= ?"
            params.append(event.ts - rule.within)
        (count,) = conn.execute(sql, params).fetchone()
        return aggregate_holds(rule.tests, Decimal(count))
    matching = [p for p in event.history(conn, rule.within) if where_matches(rule.where, p)]
    return aggregate_holds(rule.tests, rule_total(rule, matching))


class LiveEngine:
    """Matches events and fires timers for one app; its methods run in store transactions."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.indexes = IndexCache()
        self.totals: Fired = Fired()

    # -- inside a transaction -----------------------------------------------------

    def process_events_sync(
        self, conn: sqlite3.Connection, now: float, limit: int = EVENTS_PER_TRANSACTION
    ) -> Fired:
        """Match the next events after the cursor; move the cursor past them."""
        work = _Pass(now)
        index = self.indexes.current(conn)
        (cursor,) = conn.execute("SELECT seq FROM live_cursor WHERE id = 1").fetchone()
        names = index.names
        if not names:
            # Only when there are new events: a pass with nothing to do writes nothing.
            conn.execute(
                "UPDATE live_cursor SET seq = (SELECT max(seq) FROM events)"
                " WHERE id = 1 AND seq < (SELECT coalesce(max(seq), 0) FROM events)"
            )
            return work.fired
        rows = conn.execute(
            "SELECT seq, customer_id, name, ts, properties FROM events WHERE seq > ?"
            " ORDER BY seq LIMIT ?",
            (cursor, limit),
        ).fetchall()
        for seq, customer_id, name, ts, properties in rows:
            if name not in names:
                continue
            work.fired.events += 1
            event = _Event(int(seq), str(customer_id), str(name), int(ts), str(properties))
            conn.execute("SAVEPOINT live_event")
            try:
                self._event_sync(conn, index, event, work)
            except Exception as exc:
                # A bad event must not block the stream: record it and move on.
                conn.execute("ROLLBACK TO live_event")
                work.fired.errors += 1
                log.error("live_event_failed", seq=seq, name=name, error=repr(exc))
            conn.execute("RELEASE live_event")
        if rows:
            conn.execute("UPDATE live_cursor SET seq = ? WHERE id = 1", (int(rows[-1][0]),))
        work.fired.more = len(rows) == limit
        work.flush(conn)
        return work.fired

    def _event_sync(
        self, conn: sqlite3.Connection, index: TriggerIndex, event: _Event, work: _Pass
    ) -> None:
        now = work.now
        for campaign in index.on_event.get(event.name, ()):
            trigger = campaign.spec.trigger
            assert trigger is not None and trigger.rule is not None
            rule = trigger.rule
            if not campaign.accepts(event.ts, now):
                continue
            if rule.where and not where_matches(rule.where, event.properties):
                continue
            if rule.tests and not _threshold_holds(conn, rule, event):
                continue
            fire_sync(
                conn,
                work,
                campaign,
                event.customer_id,
                source="event",
                event_seq=event.seq,
                event_ts=float(event.ts),
            )
        for campaign in index.on_missing.get(event.name, ()):
            cur = conn.execute(
                "UPDATE live_timers SET state = 'cancelled', closed_at = ?, closed_by = ?"
                " WHERE campaign_id = ? AND customer_id = ? AND state = 'pending'"
                " AND after_ts <= ? AND fires_at > ?",
                (now, event.seq, campaign.campaign_id, event.customer_id, event.ts, event.ts),
            )
            work.fired.timers_cancelled += cur.rowcount
        for campaign in index.on_after.get(event.name, ()):
            if campaign.accepts(event.ts, now):
                self._open_timer_sync(conn, campaign, event, work)

    def _open_timer_sync(
        self, conn: sqlite3.Connection, campaign: LiveCampaign, event: _Event, work: _Pass
    ) -> None:
        trigger = campaign.spec.trigger
        assert trigger is not None and trigger.missing is not None and trigger.within is not None
        fires_at = event.ts + trigger.within
        if campaign.end is not None and fires_at >= campaign.end:
            work.refuse(campaign.campaign_id, "window_past_end")
            return
        if conn.execute(
            "SELECT 1 FROM run_targets WHERE run_id = ? AND customer_id = ?",
            (campaign.run_id, event.customer_id),
        ).fetchone():
            return  # already rewarded (or refused) by this campaign: nothing to wait for
        if _missing_seen(conn, event.customer_id, trigger.missing, event.ts, fires_at):
            return  # the missing event is already stored (it arrived first)
        cur = conn.execute(
            "INSERT OR IGNORE INTO live_timers (campaign_id, run_id, customer_id, missing,"
            " after_seq, after_ts, fires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                campaign.campaign_id,
                campaign.run_id,
                event.customer_id,
                trigger.missing,
                event.seq,
                float(event.ts),
                float(fires_at),
            ),
        )
        work.fired.timers_opened += cur.rowcount

    def fire_timers_sync(
        self, conn: sqlite3.Connection, now: float, limit: int = TIMERS_PER_TRANSACTION
    ) -> Fired:
        """Close the inaction windows that have ended: fire, cancel or expire each timer.

        Timers of a paused campaign wait (they fire when it resumes, before its end).
        """
        work = _Pass(now)
        index = self.indexes.current(conn)
        rows = conn.execute(
            "SELECT t.id, t.campaign_id, t.run_id, t.customer_id, t.missing, t.after_seq,"
            " t.after_ts, t.fires_at FROM live_timers AS t"
            " JOIN campaigns AS c ON c.id = t.campaign_id"
            " WHERE t.state = 'pending' AND t.fires_at <= ? AND c.state <> 'paused'"
            " ORDER BY t.fires_at, t.id LIMIT ?",
            (now, limit),
        ).fetchall()
        for (
            timer_id,
            campaign_id,
            run_id,
            customer_id,
            missing,
            after_seq,
            after_ts,
            fires_at,
        ) in rows:
            campaign = index.campaigns.get(campaign_id)
            if (
                campaign is None
                or campaign.run_id != run_id
                or (campaign.end is not None and now >= campaign.end)
            ):
                state, closed_by = "expired", None
                work.fired.timers_expired += 1
            else:
                closed_by = _missing_seen(conn, customer_id, missing, after_ts, fires_at)
                if closed_by is not None:
                    state = "cancelled"
                    work.fired.timers_cancelled += 1
                else:
                    state = "fired"
                    work.fired.timers_fired += 1
                    fire_sync(
                        conn,
                        work,
                        campaign,
                        customer_id,
                        source="inaction",
                        event_seq=after_seq,
                        event_ts=float(fires_at),
                    )
            conn.execute(
                "UPDATE live_timers SET state = ?, closed_at = ?, closed_by = ?"
                " WHERE id = ? AND state = 'pending'",
                (state, now, closed_by, timer_id),
            )
        work.fired.more = len(rows) == limit
        work.flush(conn)
        return work.fired

    # -- async entry points -----------------------------------------------------------

    async def process(self) -> Fired:
        """Match every event stored since the cursor; wake the ledger for what is due."""
        total = Fired()
        while True:
            now = self.app.clock.now()
            fired = await self.app.db.run_sync(partial(self.process_events_sync, now=now))
            total.add(fired)
            if not fired.more:
                break
        self._account(total)
        self.wake(total)
        return total

    async def on_events(self, stored: Sequence[Any]) -> None:
        """The HTTP ``on_events`` hook: match the new events before the response."""
        if stored:
            await self.process()

    async def tick(self, now: float) -> Fired:
        """From the scheduler's tick: catch up on events, then fire the timers due at ``now``.

        The scheduler tells the ledger ``ProcessDue`` after its tick and computes its
        next wake afterwards, so nothing is told here.
        """
        total = Fired()
        while True:
            fired = await self.app.db.run_sync(
                lambda conn: self.process_events_sync(conn, self.app.clock.now())
            )
            total.add(fired)
            if not fired.more:
                break
        while True:
            fired = await self.app.db.run_sync(lambda conn: self.fire_timers_sync(conn, now))
            total.add(fired)
            if not fired.more:
                break
        self._account(total)
        return total

    def _account(self, fired: Fired) -> None:
        self.totals.add(fired)
        if fired.errors:
            log.warning("live_errors", errors=fired.errors)

    def wake(self, fired: Fired) -> None:
        """Wake the ledger when targets are due now; the scheduler when targets are due
        later or an inaction window opened (its end is a new moment on the timeline,
        which the scheduler must sleep until, whatever the clock).

        Under load one ledger pass serves many event batches: a ``ProcessDue`` still
        queued absorbs the next (see :func:`promod.actors.refs.wake`).
        """
        if fired.due_now and not wake(self.app.actor("ledger"), ProcessDue()):
            wake(self.app.actor("scheduler"), Kick())  # its tick tells the ledger
        if fired.due_later or fired.timers_opened:
            wake(self.app.actor("scheduler"), Kick())


def live_engine(app: App) -> LiveEngine:
    """The app's live engine (``app.live``), made on first use."""
    engine = app.live
    if engine is None:
        engine = LiveEngine(app)
        app.live = engine
    return engine


def next_timer_sync(conn: TxLike, now: float) -> float | None:
    """The earliest inaction window closing after ``now`` (for the scheduler's next wake)."""
    row = as_tx(conn).fetch_one(
        "SELECT min(fires_at) FROM live_timers WHERE state = 'pending' AND fires_at > ?", (now,)
    )
    return None if row is None or row[0] is None else float(row[0])
