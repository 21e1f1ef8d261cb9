"""The notifier actor: owns the outbox; every message, webhook and alert leaves through it.

It runs one fan-out task (pending outbox events -> deliveries per channel, see
promod.notify.deliveries) and one sender per configured channel. A sender
claims a batch of the channel's due deliveries in one transaction (skipping, in
that transaction, customer messages whose consent or address no longer allows
them) and hands them to ``concurrency`` workers (an SMTP channel's
``connections``, a webhook channel's ``connections``), paced by the channel's
token bucket (``rate``, ``burst``); the next batch is claimed when half of this
one is done. Accepted deliveries are marked ``sent`` by :class:`SentMarker` in
groups of ``MARK_GROUP`` (at the latest ``MARK_INTERVAL`` seconds later), and a
claimed delivery is not claimed again before its mark is committed: a SIGKILL
repeats at most two groups plus the sends in flight, and loses none. A failure
is retried with exponential backoff and jitter, or after the receiver's
``Retry-After`` (the whole channel then waits that long), up to ``[notify]
max_attempts``, then dead-lettered; a hard bounce suppresses the address at
once. While the kill switch is engaged, marketing deliveries (customer
messages, reward.granted webhooks) are held; alerts still go out.

Whoever enqueues outbox events may wake it instead of waiting for the next poll::

    wake(app.actor("notifier"), Wake())
    await app.actor("notifier").ask(Inspect())   # the outbox figures
    await app.actor("notifier").ask(Channels())  # {name: Channel} of the open channels
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskStatus

from promod.actors.base import Actor, UnknownMessage
from promod.actors.messages import Channels, Inspect, Wake
from promod.clock import Clock, sleep_until_woken
from promod.ledger import killswitch
from promod.logs import get_logger
from promod.notify import store
from promod.notify.channel import Channel, DeliveryFailed, Message, PermanentFailure, TokenBucket
from promod.notify.deliveries import (
    Routing,
    backoff_delay,
    claim_due_sync,
    fanout_sync,
    is_marketing,
    outbox_stats_sync,
)
from promod.notify.templates import templates_dir
from promod.notify.unsubscribe import suppress_sync
from promod.plugins import isolation
from promod.plugins.circuit import CircuitBreaker, CircuitOpen, CircuitState

if TYPE_CHECKING:
    from promod.app import App

__all__ = ["NotifierActor"]

log = get_logger("promod.notifier")

KILLSWITCH_TTL = 0.25  # seconds a kill switch reading is trusted
MARK_GROUP = 32  # accepted deliveries marked sent in one commit
MARK_INTERVAL = 0.05  # seconds an accepted delivery waits at most for its commit


def _counts_against_channel(exc: BaseException) -> bool:
    """A permanent refusal of one message (a bounce) is an answer, not a channel failure."""
    return not (isinstance(exc, DeliveryFailed) and exc.permanent)


class SentMarker:
    """Marks accepted deliveries ``sent`` in small groups, committed in the background.

    ``mark_sent`` queues the id and returns at once; ``run`` commits what is
    queued as soon as ``group`` ids wait, or ``MARK_INTERVAL`` seconds after the
    first, one commit for all. A sender waits only when ``group`` more ids were
    accepted while a commit is still under way (two groups at most are
    uncommitted). A SIGKILL therefore repeats at most two groups plus the sends
    in flight, and loses none (at-least-once). ``done`` callbacks run once their
    id is committed (the notifier then lets the delivery be claimed no more).
    """

    def __init__(self, db: Any, clock: Clock, group: int = MARK_GROUP) -> None:
        self.db = db
        self.clock = clock
        self.group = max(1, group)
        self._queue: list[tuple[int, Callable[[], None] | None]] = []
        self._lock = anyio.Lock()
        self._waiting = anyio.Event()
        self._full = anyio.Event()
        self.commits = 0

    @property
    def waiting(self) -> int:
        return len(self._queue)

    async def mark_sent(self, delivery_id: int, done: Callable[[], None] | None = None) -> None:
        self._queue.append((delivery_id, done))
        self._waiting.set()
        if len(self._queue) >= self.group:
            self._full.set()
            if self._lock.locked():  # the previous group is still being committed
                await self.flush()

    async def run(self) -> None:
        """Commit queued ids: when a group is full, or ``MARK_INTERVAL`` after the first."""
        while True:
            await self._waiting.wait()
            with anyio.move_on_after(MARK_INTERVAL):
                await self._full.wait()
            self._waiting, self._full = anyio.Event(), anyio.Event()
            await self.flush()

    async def flush(self) -> None:
        """Commit every queued id as sent; return once they are committed."""
        async with self._lock:
            batch, self._queue = self._queue, []
            if not batch:
                return
            now = self.clock.now()
            try:
                await self.db.run(partial(store.mark_sent, ids=[i for i, _ in batch], now=now))
            except BaseException:
                self._queue[:0] = batch  # not committed: try again with the next group
                raise
            self.commits += 1
            for _, done in batch:
                if done is not None:
                    done()


class NotifierActor(Actor):
    name = "notifier"

    def __init__(self, app: App, *, channels: Mapping[str, Channel] | None = None) -> None:
        super().__init__()
        self.app = app
        self.channels: dict[str, Channel] = dict(channels or {})
        self._given = channels is not None
        self._tg: anyio.abc.TaskGroup | None = None
        self._workers = anyio.CancelScope()
        self._workers_done = anyio.Event()
        self._fanout_wake = anyio.Event()
        self._fanning = anyio.Lock()  # one fan-out pass at a time: the loop's or settle's
        self._busy: dict[str, set[int]] = {}  # channel -> deliveries claimed, not finished
        # One claim at a time per channel, its rows added to busy before the next: the
        # sender and a settle never claim the same delivery.
        self._claiming: dict[str, anyio.Lock] = {}
        self._wakers: dict[str, anyio.Event] = {}
        self._killswitch = (False, -1.0)
        self._killswitch_lock = anyio.Lock()
        self._marker = SentMarker(app.db, app.clock)
        self._paused: dict[str, float] = {}  # channel -> app time its Retry-After ends
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
        with anyio.CancelScope(shield=True):
            await self._marker.flush()
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
        if isinstance(message, Channels):
            return dict(self.channels)
        raise UnknownMessage(self, message)

    def wake(self, channel: str | None = None) -> None:
        """Fan out now and let the sender(s) look for due deliveries."""
        self._fanout_wake.set()
        for name, event in self._wakers.items():
            if channel is None or name == channel:
                event.set()

    async def stats(self) -> dict[str, Any]:
        figures: dict[str, Any] = await self.app.db.run(
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
                    tg.start_soon(self._marker.run)
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
            limit = max(1, int(self._notify.batch_size))
            events, counts = await self.app.db.run(
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

    async def settle(self) -> None:
        """Fan out every pending event, send every channel's due deliveries, commit the marks."""
        while await self._fanout_once():
            pass
        for name, channel in self.channels.items():
            busy = self._busy.get(name)
            if busy is None:  # its sender has not started
                continue
            while await self._send_due(name, channel, busy):
                pass
        await self._marker.flush()
        self.wake()

    async def _send_due(self, name: str, channel: Channel, busy: set[int]) -> bool:
        """Claim and send one batch of due deliveries not already claimed; True if any."""
        breaker = isolation.board(self.app).get(
            isolation.channel_circuit(name), counts=_counts_against_channel
        )
        if breaker.retry_in():
            return False
        hold = await self._killswitch_engaged()
        async with self._claiming.setdefault(name, anyio.Lock()):
            rows = await self.app.db.run(
                partial(
                    claim_due_sync,
                    channel=name,
                    now=self._now(),
                    limit=max(1, int(self._notify.batch_size)),
                    hold_marketing=hold,
                    exclude=frozenset(busy),
                )
            )
            busy.update(int(row["id"]) for row in rows)
        pacer = TokenBucket(getattr(channel, "rate", None), getattr(channel, "burst", None))
        for row in rows:
            delivery_id = int(row["id"])
            sent = False
            try:  # an accepted delivery stays busy until its sent mark is committed
                sent = await self._deliver(
                    name, channel, row, pacer, partial(busy.discard, delivery_id)
                )
            finally:
                if not sent:
                    busy.discard(delivery_id)
        await self._marker.flush()
        return bool(rows)

    async def _killswitch_engaged(self) -> bool:
        engaged, read_at = self._killswitch
        if anyio.current_time() - read_at > KILLSWITCH_TTL:
            async with self._killswitch_lock:  # one reading for every sender waiting on it
                engaged, read_at = self._killswitch
                now = anyio.current_time()
                if now - read_at > KILLSWITCH_TTL:
                    engaged = await killswitch.is_engaged(self.app.db)
                    self._killswitch = (engaged, now)
        return engaged

    def _paused_for(self, name: str) -> float:
        """Seconds (app clock) the receiver asked the channel to wait (``Retry-After``)."""
        return max(0.0, self._paused.get(name, 0.0) - self._now())

    async def _channel_loop(self, name: str, channel: Channel) -> None:
        """Claims due deliveries and hands them to ``concurrency`` workers, batch after batch.

        A claimed delivery stays in ``busy`` until it is finished (its ``sent``
        mark committed, its failure recorded, or handed back), so the next claim,
        made while the workers still send, never takes it twice.
        """
        pacer = TokenBucket(getattr(channel, "rate", None), getattr(channel, "burst", None))
        width = max(1, int(getattr(channel, "concurrency", 1) or 1))
        breaker = isolation.board(self.app).get(
            isolation.channel_circuit(name), counts=_counts_against_channel
        )
        busy: set[int] = self._busy.setdefault(name, set())
        batch = max(1, int(self._notify.batch_size))
        low = batch // 2  # the next claim is made once no more than this many are busy
        room = [anyio.Event()]
        send, receive = anyio.create_memory_object_stream[Mapping[str, Any]](batch)

        def release(delivery_id: int) -> None:
            busy.discard(delivery_id)
            if len(busy) <= low:
                room[0].set()

        async def worker() -> None:
            async for row in receive:
                delivery_id = int(row["id"])
                sent = False
                try:
                    sent = await self._deliver(
                        name, channel, row, pacer, partial(release, delivery_id)
                    )
                finally:
                    if not sent:  # finished, or handed back: claimable again
                        release(delivery_id)
                        self._wakers[name].set()

        async with anyio.create_task_group() as tg:
            for _ in range(width):
                tg.start_soon(worker)
            while True:
                self._wakers[name] = anyio.Event()
                closed_in = breaker.retry_in()
                if closed_in:  # the channel's circuit is open: deliveries wait, nothing is spent
                    with anyio.move_on_after(closed_in):
                        await self._wakers[name].wait()
                    continue
                changed = self.app.clock.changed()
                now = self._now()
                if self._paused_for(name):  # the receiver said Retry-After: nothing before
                    await self._wait(self._wakers[name], changed, self._paused[name])
                    continue
                engaged = await self._killswitch_engaged()
                probe = breaker.state is not CircuitState.CLOSED
                if probe and busy:  # a probe is under way: wait for its answer
                    await self._wait(self._wakers[name], changed)
                    continue
                if len(busy) > low:  # enough in hand: claim more when half is done
                    room[0] = anyio.Event()
                    await room[0].wait()
                    continue
                async with self._claiming.setdefault(name, anyio.Lock()):
                    rows = await self.app.db.run(
                        partial(
                            claim_due_sync,
                            channel=name,
                            now=now,
                            limit=1 if probe else max(1, batch - len(busy)),
                            hold_marketing=engaged,
                            exclude=frozenset(busy),
                        )
                    )
                    busy.update(int(row["id"]) for row in rows)
                if not rows:
                    due = await self.app.db.run(
                        partial(
                            store.next_due_at,
                            channel=name,
                            hold_marketing=engaged,
                            exclude=frozenset(busy),
                        ),
                        write=False,
                    )
                    await self._wait(self._wakers[name], changed, due)
                    continue
                for row in rows:
                    await send.send(row)

    async def _deliver(
        self,
        name: str,
        channel: Channel,
        row: Mapping[str, Any],
        pacer: TokenBucket,
        done: Callable[[], None] | None = None,
    ) -> bool:
        """Send one claimed delivery; True once accepted (``done`` runs when marked sent)."""
        delivery_id = int(row["id"])
        kind, type_ = str(row["kind"]), str(row["type"])
        if is_marketing(kind, type_) and await self._killswitch_engaged():
            return False  # held until the kill switch is released
        if self._paused_for(name):
            return False  # stays due; the channel loop waits out the receiver's Retry-After
        try:
            message = Message.from_json(str(row["message"]))
        except (ValueError, TypeError) as exc:
            await self._failed(name, row, PermanentFailure(f"unreadable message: {exc}"))
            return False
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
            return False  # stays pending; the channel loop waits for the probe
        except DeliveryFailed as exc:
            await self._failed(name, row, exc)
            await self._circuit_check(breaker)
            return False
        except Exception as exc:
            await self._failed(name, row, DeliveryFailed(f"{type(exc).__name__}: {exc}"))
            await self._circuit_check(breaker)
            return False
        isolation.closed_again(self.app, breaker)
        self.sent += 1
        with anyio.CancelScope(shield=True):
            await self._marker.mark_sent(delivery_id, done)
        return True

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
        await self.app.db.run(
            partial(
                store.finish, delivery_id=delivery_id, state=state, error=error, now=self._now()
            )
        )

    async def _failed(self, name: str, row: Mapping[str, Any], exc: DeliveryFailed) -> None:
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
                await self.app.db.run(
                    partial(
                        store.dead_letter,
                        delivery_id=int(row["id"]),
                        attempts=attempts,
                        error=error,
                        now=now,
                    )
                )
                if isinstance(exc, PermanentFailure) and exc.bounced and row["recipient"]:
                    await self.app.db.run(
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
            if exc.retry_after is not None:
                self._paused[name] = max(self._paused.get(name, 0.0), now + delay)
            await self.app.db.run(
                partial(
                    store.retry_later,
                    delivery_id=int(row["id"]),
                    attempts=attempts,
                    error=error,
                    at=now + delay,
                    now=now,
                )
            )
        log.warning("delivery_retry", retry_in=round(delay, 3), **fields)
