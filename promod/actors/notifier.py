"""The notifier actor: owns the outbox; every message, webhook and alert leaves through it.

It runs one fan-out task (pending outbox events -> deliveries per channel, see
promod.notify.deliveries) and one sender task per configured channel. A sender
takes the channel's due deliveries, sends each (paced by the channel's ``rate``,
``concurrency`` at a time), and marks it ``sent`` in the database right after
the channel accepted it; a failure is retried with exponential backoff and
jitter (or after the receiver's ``Retry-After``) up to ``[notify] max_attempts``,
then dead-lettered. While the kill switch is engaged, marketing deliveries
(customer messages, reward.granted webhooks) are held; alerts still go out.

Whoever enqueues outbox events may wake it instead of waiting for the next poll::

    app.actor("notifier").tell(Wake())
    await app.actor("notifier").ask(Inspect())   # the outbox figures
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio
from anyio.abc import TaskStatus

from promod.actors.base import Actor, UnknownMessage
from promod.actors.messages import Inspect
from promod.clock import Clock, sleep_until_woken
from promod.ledger import killswitch
from promod.logs import get_logger
from promod.notify.channel import Channel, DeliveryFailed, Message, PermanentFailure, RateLimiter
from promod.notify.deliveries import (
    Routing,
    backoff_delay,
    fanout_sync,
    is_marketing,
    message_blocked_sync,
    outbox_stats_sync,
)
from promod.notify.templates import templates_dir
from promod.notify.unsubscribe import suppress_sync
from promod.plugins import isolation
from promod.plugins.circuit import CircuitBreaker, CircuitOpen, CircuitState

__all__ = ["NotifierActor", "Wake"]

log = get_logger("promod.notifier")

KILLSWITCH_TTL = 0.25  # seconds a kill switch reading is trusted
_MARKETING_SQL = "(kind = 'message' OR (kind = 'webhook' AND type = 'reward.granted'))"


@dataclass(frozen=True)
class Wake:
    """New outbox events or deliveries are waiting: look now, not at the next poll."""

    channel: str | None = None


def _counts_against_channel(exc: BaseException) -> bool:
    """A permanent refusal of one message (a bounce) is an answer, not a channel failure."""
    return not (isinstance(exc, DeliveryFailed) and exc.permanent)


@dataclass
class _Sender:
    """One channel's pacing, width and the lock that keeps its batches one at a time."""

    pacer: RateLimiter
    width: int
    limiter: anyio.Semaphore
    lock: anyio.Lock = field(default_factory=anyio.Lock)


class SentMarker:
    """Marks accepted deliveries ``sent``, one commit for all that are waiting.

    Every caller returns only once its delivery is committed as sent; callers
    arriving while a commit is under way share the next one (group commit), so
    concurrent senders do not pay one fsync each.
    """

    def __init__(self, db: Any, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self._queue: list[tuple[int, anyio.Event]] = []
        self._lock = anyio.Lock()

    async def mark_sent(self, delivery_id: int) -> None:
        done = anyio.Event()
        self._queue.append((delivery_id, done))
        async with self._lock:
            if done.is_set():
                return
            batch, self._queue = self._queue, []
            now = self.clock.now()
            async with self.db.transaction() as conn:
                await conn.executemany(
                    "UPDATE deliveries SET state = 'sent', attempts = attempts + 1,"
                    " sent_at = ?, updated_at = ?, last_error = NULL"
                    " WHERE id = ? AND state = 'pending'",
                    [(now, now, item) for item, _ in batch],
                )
            for _, event in batch:
                event.set()


class NotifierActor(Actor):
    name = "notifier"

    def __init__(self, app: Any, *, channels: Mapping[str, Channel] | None = None) -> None:
        super().__init__()
        self.app = app
        self.channels: dict[str, Channel] = dict(channels or {})
        self._given = channels is not None
        self._tg: anyio.abc.TaskGroup | None = None
        self._workers = anyio.CancelScope()
        self._workers_done = anyio.Event()
        self._fanout_wake = anyio.Event()
        self._fanning = anyio.Lock()  # one fan-out pass at a time: the loop's or settle's
        self._wakers: dict[str, anyio.Event] = {}
        self._senders: dict[str, _Sender] = {}
        self._killswitch = (False, -1.0)
        self._marker = SentMarker(app.db, app.clock)
        self.sent = 0
        self.failed = 0
        self.fanned = 0

    # -- lifecycle -----------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            try:
                await super().run(task_status=task_status)
            finally:
                tg.cancel_scope.cancel()

    async def on_start(self) -> None:
        if not self._given:
            self.channels = self._open_channels()
        assert self._tg is not None
        self._tg.start_soon(self._work)

    def _open_channels(self) -> dict[str, Channel]:
        types: Mapping[str, Any] = self.app.plugins.channel_types
        opened: dict[str, Channel] = {}
        for name, cfg in self.app.config.channels.items():
            kind = types.get(cfg.type)
            if kind is None:
                log.error("channel_type_unknown", channel=name, channel_type=cfg.type)
                continue
            try:
                opened[name] = kind.create(name, dict(cfg.options))
            except Exception as exc:
                log.error("channel_create_failed", channel=name, error=str(exc))
        return opened

    async def on_stop(self) -> None:
        self._workers.cancel()
        if self._tg is not None:
            await self._workers_done.wait()
        for name, channel in self.channels.items():
            try:
                await channel.close()
            except Exception as exc:
                log.warning("channel_close_failed", channel=name, error=repr(exc))

    async def receive(self, message: object) -> object:
        if isinstance(message, Inspect):
            return await self.stats()
        if isinstance(message, Wake):
            self.wake(message.channel)
            return None
        raise UnknownMessage(self, message)

    async def settle(self) -> None:
        """Fan out every pending event, then send every channel's due deliveries."""
        while await self._fanout_once():
            pass
        for name, channel in self.channels.items():
            if name in self._senders:  # its sender has started
                while await self._send_due(name, channel) is None:
                    pass
        self.wake()

    def wake(self, channel: str | None = None) -> None:
        """Fan out now and let the sender(s) look for due deliveries."""
        self._fanout_wake.set()
        for name, event in self._wakers.items():
            if channel is None or name == channel:
                event.set()

    async def stats(self) -> dict[str, Any]:
        figures: dict[str, Any] = await self.app.db.run_sync(
            partial(outbox_stats_sync, now=self._now()), write=False
        )
        figures["channels_open"] = sorted(self.channels)
        figures["since_start"] = {"sent": self.sent, "failed": self.failed, "fanned": self.fanned}
        return figures

    # -- workers -------------------------------------------------------------------

    async def _work(self) -> None:
        try:
            with self._workers:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._fanout_loop)
                    for name, channel in self.channels.items():
                        self._wakers[name] = anyio.Event()
                        tg.start_soon(self._channel_loop, name, channel)
        finally:
            self._workers_done.set()

    @property
    def _notify(self) -> Any:
        return self.app.config.notify

    def _now(self) -> float:
        """The app's clock: the time every delivery is stamped and scheduled by."""
        return float(self.app.clock.now())

    async def _wait(
        self, event: anyio.Event, changed: anyio.Event, due: float | None = None
    ) -> None:
        """Until ``event``, a change of the app clock, the clock reaching ``due``, or a poll.

        ``changed`` is ``clock.changed()`` taken before the caller read the time, so
        a clock moved in between still wakes it. The poll interval is real time: a
        safety net for a missed wake, not a schedule.
        """
        with anyio.move_on_after(max(0.0, float(self._notify.poll_interval))):
            await sleep_until_woken(self.app.clock, due, event, changed)

    async def _fanout_loop(self) -> None:
        while True:
            self._fanout_wake = anyio.Event()
            changed = self.app.clock.changed()
            if not await self._fanout_once():
                await self._wait(self._fanout_wake, changed)

    async def _fanout_once(self) -> bool:
        """Fan out one batch of pending outbox events; True when there may be more."""
        async with self._fanning:
            config = self.app.config
            routing = Routing.from_config(config, templates_dir(config))
            limit = max(1, int(self._notify.batch_size)) * 5
            events, counts = await self.app.db.run_sync(
                partial(fanout_sync, routing=routing, now=self._now(), limit=limit)
            )
            if events:
                self.fanned += events
                log.debug("outbox_fanned_out", events=events, deliveries=counts)
                for name in counts:
                    waker = self._wakers.get(name)
                    if waker is not None:
                        waker.set()
            return bool(events >= limit)

    async def _killswitch_engaged(self) -> bool:
        engaged, read_at = self._killswitch
        now = anyio.current_time()
        if now - read_at > KILLSWITCH_TTL:
            engaged = await killswitch.is_engaged(self.app.db)
            self._killswitch = (engaged, now)
        return engaged

    async def _channel_loop(self, name: str, channel: Channel) -> None:
        width = max(1, int(getattr(channel, "concurrency", 1) or 1))
        self._senders[name] = _Sender(
            pacer=RateLimiter(getattr(channel, "rate", None)),
            width=width,
            limiter=anyio.Semaphore(width),
        )
        while True:
            self._wakers[name] = anyio.Event()
            changed = self.app.clock.changed()  # taken before the batch reads the time
            pause = await self._send_due(name, channel)
            if pause is None:
                continue
            closed_in, due = pause
            if closed_in:  # the channel's circuit is open: deliveries wait, nothing is spent
                with anyio.move_on_after(closed_in):
                    await self._wakers[name].wait()
            else:
                await self._wait(self._wakers[name], changed, due)

    async def _send_due(self, name: str, channel: Channel) -> tuple[float, float | None] | None:
        """Send one batch of the channel's due deliveries.

        None when a batch went out (there may be more); otherwise what to wait for:
        ``(cool_down, None)`` while the channel's circuit is open, ``(0.0, due)`` when
        nothing is due now (``due``: the next delivery's time on the app clock, or None).
        """
        sender = self._senders[name]
        async with sender.lock:
            return await self._send_batch(name, channel, sender)

    async def _send_batch(
        self, name: str, channel: Channel, sender: _Sender
    ) -> tuple[float, float | None] | None:
        breaker = isolation.board(self.app).get(
            isolation.channel_circuit(name), counts=_counts_against_channel
        )
        closed_in = breaker.retry_in()
        if closed_in:
            return (closed_in, None)
        now = self._now()
        held = " AND NOT " + _MARKETING_SQL if await self._killswitch_engaged() else ""
        probe = breaker.state is not CircuitState.CLOSED
        rows = await self.app.db.fetchall(
            "SELECT id, event_id, type, kind, message, attempts, customer_id, recipient,"
            " consent FROM deliveries WHERE state = 'pending' AND channel = ?"
            f" AND next_attempt_at <= ?{held} ORDER BY next_attempt_at, id LIMIT ?",
            (name, now, 1 if probe else self._notify.batch_size),
        )
        if not rows:
            row = await self.app.db.fetchone(
                "SELECT min(next_attempt_at) FROM deliveries"
                f" WHERE state = 'pending' AND channel = ?{held}",
                (name,),
            )
            return (0.0, float(row[0]) if row is not None and row[0] is not None else None)
        if sender.width == 1:
            for row in rows:
                await self._deliver(name, channel, row, sender.pacer)
        else:
            async with anyio.create_task_group() as tg:
                for row in rows:
                    await sender.limiter.acquire()
                    tg.start_soon(
                        self._deliver_limited, name, channel, row, sender.pacer, sender.limiter
                    )
        return None

    async def _deliver_limited(
        self,
        name: str,
        channel: Channel,
        row: sqlite3.Row,
        pacer: RateLimiter,
        limiter: anyio.Semaphore,
    ) -> None:
        try:
            await self._deliver(name, channel, row, pacer)
        finally:
            limiter.release()

    async def _deliver(
        self, name: str, channel: Channel, row: sqlite3.Row, pacer: RateLimiter
    ) -> None:
        delivery_id = int(row["id"])
        kind, type_ = str(row["kind"]), str(row["type"])
        if is_marketing(kind, type_) and await self._killswitch_engaged():
            return  # held until the kill switch is released
        if kind == "message" and row["customer_id"]:
            blocked = await self.app.db.run_sync(
                partial(
                    message_blocked_sync,
                    customer_id=str(row["customer_id"]),
                    email=row["recipient"],
                    consent=row["consent"],
                ),
                write=False,
            )
            if blocked:
                await self._finish(delivery_id, "skipped", blocked)
                return
        try:
            message = Message.from_json(str(row["message"]))
        except (ValueError, TypeError) as exc:
            await self._failed(name, row, PermanentFailure(f"unreadable message: {exc}"))
            return
        await pacer.wait()
        timeout = float(getattr(channel, "timeout", 30.0) or 30.0) * 2 + 5
        breaker = isolation.board(self.app).get(
            isolation.channel_circuit(name), counts=_counts_against_channel
        )

        async def send() -> None:
            try:
                with anyio.fail_after(timeout):
                    await channel.send(message)
            except TimeoutError as exc:
                raise DeliveryFailed(f"no answer within {timeout:g}s") from exc

        try:
            await breaker.call(send)
        except CircuitOpen:
            return  # stays pending; the channel loop waits for the probe
        except DeliveryFailed as exc:
            await self._failed(name, row, exc)
            await self._circuit_check(breaker)
            return
        except Exception as exc:
            await self._failed(name, row, DeliveryFailed(f"{type(exc).__name__}: {exc}"))
            await self._circuit_check(breaker)
            return
        isolation.closed_again(self.app, breaker)
        with anyio.CancelScope(shield=True):
            await self._marker.mark_sent(delivery_id)
        self.sent += 1

    async def _circuit_check(self, breaker: CircuitBreaker) -> None:
        """A failure opened the channel's circuit: alert (through the other channels)."""
        opened, alert = isolation.newly_opened(self.app, breaker)
        if not opened or not alert:
            return
        now = self._now()
        with anyio.CancelScope(shield=True):
            await self.app.db.run_sync(
                partial(isolation.record_circuit_open_sync, breaker=breaker, now=now)
            )
        log.warning("channel_circuit_open", circuit=breaker.name, retry_in=breaker.cooldown)
        self._fanout_wake.set()

    async def _finish(self, delivery_id: int, state: str, error: str) -> None:
        await self.app.db.execute(
            "UPDATE deliveries SET state = ?, last_error = ?, updated_at = ?"
            " WHERE id = ? AND state = 'pending'",
            (state, error, self._now(), delivery_id),
        )

    async def _failed(self, name: str, row: sqlite3.Row, exc: DeliveryFailed) -> None:
        self.failed += 1
        attempts = int(row["attempts"]) + 1
        notify = self._notify
        error = str(exc)[:500]
        now = self._now()
        fields = {
            "delivery": int(row["id"]),
            "event_id": str(row["event_id"]),
            "channel": name,
            "attempts": attempts,
            "error": error,
        }
        with anyio.CancelScope(shield=True):
            if exc.permanent or attempts >= notify.max_attempts:
                await self.app.db.execute(
                    "UPDATE deliveries SET state = 'dead', attempts = ?, last_error = ?,"
                    " updated_at = ? WHERE id = ? AND state = 'pending'",
                    (attempts, error, now, int(row["id"])),
                )
                if isinstance(exc, PermanentFailure) and exc.bounced and row["recipient"]:
                    await self.app.db.run_sync(
                        partial(
                            suppress_sync,
                            address=str(row["recipient"]),
                            reason="bounced",
                            source=f"channel:{name}",
                            now=now,
                            customer_id=row["customer_id"],
                            detail=error,
                        )
                    )
                log.error("delivery_dead_letter", **fields)
                return
            delay: float = (
                exc.retry_after
                if exc.retry_after is not None
                else backoff_delay(attempts, notify.backoff_initial, notify.backoff_max)
            )
            await self.app.db.execute(
                "UPDATE deliveries SET attempts = ?, last_error = ?, next_attempt_at = ?,"
                " updated_at = ? WHERE id = ? AND state = 'pending'",
                (attempts, error, now + delay, now, int(row["id"])),
            )
        log.warning("delivery_retry", retry_in=round(delay, 3), **fields)
