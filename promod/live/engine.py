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
target they add.

The live actor (:mod:`promod.actors.live`) owns the app's engine and runs it; every
pass is one store transaction of at most ``EVENTS_PER_TRANSACTION`` events or
``TIMERS_PER_TRANSACTION`` timers, and its SQL is in :mod:`promod.live.store`::

    engine = LiveEngine(app)           # the live actor's
    await engine.process_batch()       # one bounded pass over new events; wakes the ledger
    await engine.process()             # passes until the cursor is at the newest event
    await engine.tick(now)             # catch up, then fire the timers due at ``now``
"""

from __future__ import annotations

import json
from collections import Counter as Tally
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from promod.actors.messages import EventsStored, Kick, ProcessDue
from promod.actors.refs import wake
from promod.campaigns.runs import due_times
from promod.campaigns.segments import EventRule, compile_segment
from promod.live import store
from promod.live.index import IndexCache, LiveCampaign, TriggerIndex
from promod.live.match import aggregate_holds, rule_total, where_matches
from promod.logs import get_logger
from promod.store.seam import Transaction

if TYPE_CHECKING:
    from promod.app import App

__all__ = [
    "EVENTS_PER_TRANSACTION",
    "Fired",
    "LiveEngine",
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
    seen: bool = False  # the cursor moved past new events (matched or not)

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
        self.seen = self.seen or other.seen


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

    def next_rank(self, tx: Transaction, run_id: int) -> int:
        rank = self.ranks.get(run_id)
        if rank is None:
            rank = store.next_rank(tx, run_id)
        self.ranks[run_id] = rank + 1
        return rank

    def flush(self, tx: Transaction) -> None:
        if self.targeted:
            store.add_targeted(tx, self.targeted)
        if self.refusals:
            store.add_refusals(tx, self.refusals)


_DECODER = json.JSONDecoder(parse_float=Decimal)


def _properties(text: str) -> dict[str, Any]:
    try:
        value = _DECODER.decode(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def in_segment(tx: Transaction, campaign: LiveCampaign, customer_id: str, now: float) -> bool:
    """The campaign's segment (if any) selects the customer as of ``now``."""
    segment = campaign.spec.segment
    if segment is None:
        return True
    sql, params = compile_segment(segment, as_of=int(now))
    return store.in_segment(tx, sql, params, customer_id)


def fire(
    tx: Transaction,
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
    if store.has_target(tx, run_id, customer_id):
        work.refuse(campaign.campaign_id, "once_per_customer")
        return False
    if not in_segment(tx, campaign, customer_id, now):
        work.refuse(campaign.campaign_id, "segment")
        return False
    (due,) = due_times(tx, campaign.spec, [customer_id], now)
    if not store.insert_target(tx, run_id, work.next_rank(tx, run_id), customer_id, due):
        work.refuse(campaign.campaign_id, "once_per_customer")
        return False
    store.insert_firing(
        tx,
        run_id=run_id,
        customer_id=customer_id,
        campaign_id=campaign.campaign_id,
        source=source,
        event_seq=event_seq,
        event_ts=event_ts,
        fired_at=now,
        due_at=due,
    )
    work.targeted[run_id] += 1
    if due <= now:
        work.fired.due_now += 1
    else:
        work.fired.due_later += 1
    return True


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

    def history(self, tx: Transaction, within: int | None) -> list[dict[str, Any]]:
        """Properties of the customer's events of this name in ``[ts - within, ts]``."""
        found = self._history.get(within)
        if found is None:
            texts = store.event_properties(tx, self.name, self.customer_id, self.ts, within)
            found = [_properties(text) for text in texts]
            self._history[within] = found
        return found


def _threshold_holds(tx: Transaction, rule: EventRule, event: _Event) -> bool:
    """The count/sum comparison of ``rule`` holds as of the event (its window ends there)."""
    if rule.sum is None and not rule.where:
        count = store.count_events(tx, event.name, event.customer_id, event.ts, rule.within)
        return aggregate_holds(rule.tests, Decimal(count))
    matching = [p for p in event.history(tx, rule.within) if where_matches(rule.where, p)]
    return aggregate_holds(rule.tests, rule_total(rule, matching))


class LiveEngine:
    """Matches events and fires timers for one app; its passes run in store transactions."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.indexes = IndexCache()
        self.totals: Fired = Fired()
        self.batch_size = EVENTS_PER_TRANSACTION  # events per pass (one transaction)

    # -- inside a transaction -----------------------------------------------------

    def process_events(self, tx: Transaction, now: float, limit: int | None = None) -> Fired:
        """Match the next events after the cursor (``batch_size`` by default); move the
        cursor past them."""
        limit = self.batch_size if limit is None else limit
        work = _Pass(now)
        index = self.indexes.current(tx)
        names = index.names
        if not names:
            work.fired.seen = store.move_cursor_to_newest(tx)
            return work.fired
        rows = store.events_after(tx, store.event_cursor(tx), limit)
        events = [_Event(*row) for row in rows if row[2] in names]
        try:
            with store.savepoint(tx, "live_pass"):
                self._match_all(tx, index, events, work)
        except Exception:
            # Rolled back: again one event at a time, so that a bad event is recorded
            # and skipped without blocking the stream.
            work = _Pass(now)
            for event in events:
                try:
                    with store.savepoint(tx, "live_event"):
                        self._event(tx, index, event, work)
                except Exception as exc:
                    work.fired.errors += 1
                    log.error("live_event_failed", seq=event.seq, name=event.name, error=repr(exc))
        work.fired.events = len(events)
        if rows:
            store.move_cursor(tx, rows[-1][0])
            work.fired.seen = True
        work.fired.more = len(rows) == limit
        work.flush(tx)
        return work.fired

    def _match_all(
        self, tx: Transaction, index: TriggerIndex, events: list[_Event], work: _Pass
    ) -> None:
        """The pass's events at once: the same outcome as :meth:`_event` one by one, with
        the targets looked up in one query and written in one statement per table.

        Only event triggers add targets here, and a campaign has either an event
        trigger or an inaction one, so the timers (kept per event, in order) never
        depend on the targets written at the end.
        """
        now = work.now
        fired: list[tuple[LiveCampaign, _Event]] = []
        for event in events:
            fired.extend((c, event) for c in self._triggered(tx, index, event, now))
            self._timers(tx, index, event, work)
        if not fired:
            return
        taken = store.existing_targets(
            tx, {c.run_id for c, _ in fired}, {e.customer_id for _, e in fired}
        )
        chosen: dict[str, tuple[LiveCampaign, list[_Event]]] = {}
        for campaign, event in fired:
            key = (campaign.run_id, event.customer_id)
            if key in taken:
                work.refuse(campaign.campaign_id, "once_per_customer")
            elif not in_segment(tx, campaign, event.customer_id, now):
                work.refuse(campaign.campaign_id, "segment")
            else:
                taken.add(key)
                chosen.setdefault(campaign.campaign_id, (campaign, []))[1].append(event)
        targets: list[store.NewTarget] = []
        firings: list[store.NewFiring] = []
        for campaign, chosen_events in chosen.values():
            customers = [e.customer_id for e in chosen_events]
            dues = due_times(tx, campaign.spec, customers, now)
            run_id = campaign.run_id
            for event, due in zip(chosen_events, dues, strict=True):
                rank = work.next_rank(tx, run_id)
                targets.append((run_id, rank, event.customer_id, due))
                firings.append(
                    (run_id, event.customer_id, campaign.campaign_id, "event", event.seq,
                     float(event.ts), now, due)
                )  # fmt: skip
                work.targeted[run_id] += 1
                if due <= now:
                    work.fired.due_now += 1
                else:
                    work.fired.due_later += 1
        store.insert_targets(tx, targets)
        store.insert_firings(tx, firings)

    def _triggered(
        self, tx: Transaction, index: TriggerIndex, event: _Event, now: float
    ) -> list[LiveCampaign]:
        """The campaigns whose event trigger the event makes true."""
        found = []
        for campaign in index.on_event.get(event.name, ()):
            trigger = campaign.spec.trigger
            assert trigger is not None and trigger.rule is not None
            rule = trigger.rule
            if not campaign.accepts(event.ts, now):
                continue
            if rule.where and not where_matches(rule.where, event.properties):
                continue
            if rule.tests and not _threshold_holds(tx, rule, event):
                continue
            found.append(campaign)
        return found

    def _event(self, tx: Transaction, index: TriggerIndex, event: _Event, work: _Pass) -> None:
        """One event on its own (after a pass failed): fire, then the timers."""
        now = work.now
        for campaign in self._triggered(tx, index, event, now):
            fire(
                tx,
                work,
                campaign,
                event.customer_id,
                source="event",
                event_seq=event.seq,
                event_ts=float(event.ts),
            )
        self._timers(tx, index, event, work)

    def _timers(self, tx: Transaction, index: TriggerIndex, event: _Event, work: _Pass) -> None:
        """Cancel the windows the event was missing from; open those it starts."""
        now = work.now
        for campaign in index.on_missing.get(event.name, ()):
            work.fired.timers_cancelled += store.cancel_timers(
                tx,
                campaign.campaign_id,
                event.customer_id,
                event_seq=event.seq,
                event_ts=event.ts,
                now=now,
            )
        for campaign in index.on_after.get(event.name, ()):
            if campaign.accepts(event.ts, now):
                self._open_timer(tx, campaign, event, work)

    def _open_timer(
        self, tx: Transaction, campaign: LiveCampaign, event: _Event, work: _Pass
    ) -> None:
        trigger = campaign.spec.trigger
        assert trigger is not None and trigger.missing is not None and trigger.within is not None
        fires_at = event.ts + trigger.within
        if campaign.end is not None and fires_at >= campaign.end:
            work.refuse(campaign.campaign_id, "window_past_end")
            return
        if store.has_target(tx, campaign.run_id, event.customer_id):
            return  # already rewarded (or refused) by this campaign: nothing to wait for
        if store.first_event_seq(tx, event.customer_id, trigger.missing, event.ts, fires_at):
            return  # the missing event is already stored (it arrived first)
        work.fired.timers_opened += store.open_timer(
            tx,
            campaign_id=campaign.campaign_id,
            run_id=campaign.run_id,
            customer_id=event.customer_id,
            missing=trigger.missing,
            after_seq=event.seq,
            after_ts=float(event.ts),
            fires_at=float(fires_at),
        )

    def fire_timers(
        self, tx: Transaction, now: float, limit: int = TIMERS_PER_TRANSACTION
    ) -> Fired:
        """Close the inaction windows that have ended: fire, cancel or expire each timer.

        Timers of a paused campaign wait (they fire when it resumes, before its end).
        """
        work = _Pass(now)
        index = self.indexes.current(tx)
        rows = store.due_timers(tx, now, limit)
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
            closed_by: int | None = None
            if (
                campaign is None
                or campaign.run_id != run_id
                or (campaign.end is not None and now >= campaign.end)
            ):
                state = "expired"
                work.fired.timers_expired += 1
            else:
                closed_by = store.first_event_seq(tx, customer_id, missing, after_ts, fires_at)
                if closed_by is not None:
                    state = "cancelled"
                    work.fired.timers_cancelled += 1
                else:
                    state = "fired"
                    work.fired.timers_fired += 1
                    fire(
                        tx,
                        work,
                        campaign,
                        customer_id,
                        source="inaction",
                        event_seq=after_seq,
                        event_ts=fires_at,
                    )
            store.close_timer(tx, timer_id, state, now, closed_by)
        work.fired.more = len(rows) == limit
        work.flush(tx)
        return work.fired

    # -- async entry points -----------------------------------------------------------

    async def process_batch(self) -> Fired:
        """One pass over at most ``batch_size`` new events; wakes whoever must act on it.

        ``more`` on the result says events are left after the cursor.
        """
        now = self.app.clock.now()
        fired = await self.app.db.run(lambda tx: self.process_events(tx, now))
        self._account(fired)
        self.wake(fired)
        return fired

    async def process(self) -> Fired:
        """Match every event stored since the cursor, pass by pass, waking as it goes."""
        total = Fired()
        while True:
            fired = await self.process_batch()
            total.add(fired)
            if not fired.more:
                return total

    async def tick(self, now: float) -> Fired:
        """From the scheduler's tick: catch up on events, then fire the timers due at ``now``.

        The scheduler tells the ledger ``ProcessDue`` after its tick and computes its
        next wake afterwards, so nothing is told here (see :meth:`tell_listeners`).
        """
        total = Fired()
        while True:
            fired = await self.app.db.run(lambda tx: self.process_events(tx, self.app.clock.now()))
            total.add(fired)
            if not fired.more:
                break
        while True:
            fired = await self.app.db.run(lambda tx: self.fire_timers(tx, now))
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
        which the scheduler must sleep until, whatever the clock); the event listeners
        when the pass moved past new events.

        Under load one ledger pass serves many event batches: a ``ProcessDue`` still
        queued absorbs the next (see :func:`promod.actors.refs.wake`).
        """
        if fired.due_now and not wake(self.app.actor("ledger"), ProcessDue()):
            wake(self.app.actor("scheduler"), Kick())  # its tick tells the ledger
        if fired.due_later or fired.timers_opened:
            wake(self.app.actor("scheduler"), Kick())
        self.tell_listeners(fired)

    def tell_listeners(self, fired: Fired) -> None:
        """``EventsStored`` to every actor in ``app.event_listeners`` (e.g. a tagger)."""
        if fired.seen:
            for name in self.app.event_listeners:
                wake(self.app.actor(name), EventsStored())
