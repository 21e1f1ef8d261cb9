"""Time for everything that schedules: the system clock, or a manual one for tests.

Actors never call ``time.time()`` or sleep on the wall clock for scheduled work;
they ask the app's clock, so tests (and ``PROMOD_TEST_CLOCK``) can move time::

    clock = ManualClock(start=1_700_000_000)
    await clock.sleep_until(clock.now() + 3600)   # returns when a test advances time
    clock.advance(3600)
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Protocol

import anyio


class Clock(Protocol):
    """Seconds since the epoch, and waiting for a moment."""

    def now(self) -> float: ...

    async def sleep_until(self, when: float) -> None: ...

    def changed(self) -> anyio.Event: ...


class SystemClock:
    """The wall clock."""

    def __init__(self) -> None:
        self._changed = anyio.Event()

    def now(self) -> float:
        return time.time()

    async def sleep_until(self, when: float) -> None:
        delay = when - time.time()
        if delay > 0:
            await anyio.sleep(delay)

    def changed(self) -> anyio.Event:
        """An event that never fires: the wall clock never jumps on purpose."""
        return self._changed


class ManualClock:
    """A clock that only moves when told to; sleepers wake when it passes their time."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else float(start)
        self._changed = anyio.Event()

    def now(self) -> float:
        return self._now

    def set(self, when: float) -> None:
        if when < self._now:
            raise ValueError("the manual clock cannot go backwards")
        self._now = float(when)
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    def advance(self, seconds: float) -> None:
        self.set(self._now + seconds)

    def changed(self) -> anyio.Event:
        """Fires at the next change of time."""
        return self._changed

    async def sleep_until(self, when: float) -> None:
        while self._now < when:
            await self._changed.wait()


async def sleep_until_woken(clock: Clock, until: float | None, *events: anyio.Event) -> None:
    """Return when ``clock`` reaches ``until`` (never, for None) or any of ``events`` is set.

    Actors that keep a timeline pass their kick event and ``clock.changed()``,
    taken *before* they last read the time, so no change slips between.
    """
    async with anyio.create_task_group() as tg:

        async def wake(waiter: Any) -> None:
            await waiter()
            tg.cancel_scope.cancel()

        for event in events:
            tg.start_soon(wake, event.wait)
        if until is not None:
            tg.start_soon(wake, lambda: clock.sleep_until(until))


def utc_iso(ts: float) -> str:
    """``2026-11-23T15:00:00Z`` for a timestamp."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
