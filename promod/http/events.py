"""Group commit for ``POST /v1/events``: requests that arrive together share one transaction.

Every request's events must be durable before its answer (a 2xx means stored), and
a commit costs an fsync: one commit per request would spend the store's writer on
fsyncs under load. So a request queues its batch and the first request to get the
writer stores every queued batch, in arrival order, in one transaction (at most
``MAX_GROUP_EVENTS`` events; the rest wait for the next); each request then gets
its own result. A batch is still all or nothing: when the shared transaction fails
for anything but a store outage, each batch is tried again alone, so one bad batch
fails only its own request::

    writer = EventWriter(app.db)
    stored, duplicates = await writer.store(events)     # committed on return
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import anyio

from promod.customers.records import Event
from promod.customers.store import StoredEvent, insert_events_sync
from promod.store.database import Database
from promod.store.health import is_outage

__all__ = ["MAX_GROUP_EVENTS", "EventWriter"]

MAX_GROUP_EVENTS = 20_000

Stored = tuple[list[StoredEvent], list[str]]


class _Slot:
    """One request's batch and, once its transaction ended, its outcome."""

    __slots__ = ("error", "events", "result")

    def __init__(self, events: Sequence[Event]) -> None:
        self.events = events
        self.result: Stored | None = None
        self.error: BaseException | None = None

    @property
    def pending(self) -> bool:
        return self.result is None and self.error is None


class EventWriter:
    """Stores the batches of concurrent requests in shared transactions."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._queue: list[_Slot] = []
        self._lock = anyio.Lock()
        self.transactions = 0
        self.batches = 0

    async def store(self, events: Sequence[Event]) -> Stored:
        """Store ``events`` (duplicates skipped); (stored, duplicate ids) once committed."""
        slot = _Slot(events)
        self._queue.append(slot)
        async with self._lock:
            if slot.pending:
                group = self._take()
                with anyio.CancelScope(shield=True):  # the others wait on this group too
                    await self._flush(group)
        if slot.error is not None:
            raise slot.error
        assert slot.result is not None
        return slot.result

    def _take(self) -> list[_Slot]:
        """The queued batches up to ``MAX_GROUP_EVENTS`` events (at least one)."""
        size = 0
        cut = 0
        for cut, slot in enumerate(self._queue, start=1):  # noqa: B007
            size += len(slot.events)
            if size >= MAX_GROUP_EVENTS:
                break
        group, self._queue = self._queue[:cut], self._queue[cut:]
        return group

    async def _flush(self, group: list[_Slot]) -> None:
        self.transactions += 1
        self.batches += len(group)
        try:
            results = await self.db.run(
                lambda tx: [insert_events_sync(tx, slot.events) for slot in group]
            )
        except Exception as exc:
            if len(group) == 1 or is_outage(exc):
                for slot in group:
                    slot.error = exc
                return
            for slot in group:  # find the batch that fails: each alone
                try:
                    alone_fn = partial(insert_events_sync, events=slot.events)
                    slot.result = await self.db.run(alone_fn)
                except Exception as alone:
                    slot.error = alone
            return
        for slot, result in zip(group, results, strict=True):
            slot.result = result
