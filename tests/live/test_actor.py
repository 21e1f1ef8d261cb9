"""The live actor over a real store and a real supervisor: events handed over by message,
merged wakes, bounded passes, catch-up at start, the scheduler's tick, event listeners."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from promod.actors.live import LiveActor
from promod.actors.messages import EventsStored, Inspect, LiveTick, ProcessDue
from promod.actors.refs import wake
from promod.app import App
from promod.campaigns.segments import register_sql_functions
from promod.clock import ManualClock
from promod.live.store import event_cursor
from promod.store.database import Database
from promod.testing import Recorder, make_app, supervised, wait_until_async
from tests.live.test_engine import T0, launch, post, spec_text, targets

pytestmark = pytest.mark.anyio


@pytest.fixture
def woken() -> dict[str, Recorder]:
    """The actors the live actor tells: the ledger, the scheduler and a listener."""
    return {name: Recorder(name) for name in ("ledger", "scheduler", "tagger")}


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    db = await Database.open(tmp_path / "live.db")
    await db.register_functions(register_sql_functions)
    try:
        app = make_app(db, clock=ManualClock(start=T0))
        app.event_listeners.append("tagger")
        yield app
    finally:
        await db.close()


async def cursor(app: App) -> int:
    return await app.db.run(event_cursor, write=False)


async def test_events_stored_is_matched_by_the_actor_and_wakes_are_merged(
    app: App, woken: dict[str, Recorder]
) -> None:
    run = await launch(app, spec_text("cart", '{ event = "cart" }'))
    live = LiveActor(app)
    async with supervised(app, *woken.values(), live):
        await wait_until_async(lambda: live.passes == 1)  # the look at start
        await post(app, *[(f"c{i}", "cart", T0, {}) for i in range(5)])
        ref = app.actor("live")
        for _ in range(10):  # ten requests in a burst: one pass
            wake(ref, EventsStored())
        await wait_until_async(lambda: live.passes == 2)
        assert [c for c, _ in await targets(app, run)] == [f"c{i}" for i in range(5)]
        info = await ref.ask(Inspect())
        assert info["passes"] == 2 and info["totals"]["due_now"] == 5
        assert ProcessDue() in woken["ledger"].told
        assert EventsStored() in woken["tagger"].told  # the listener hears of new events


async def test_a_pass_is_bounded_and_the_rest_follows(app: App, woken: dict[str, Recorder]) -> None:
    run = await launch(app, spec_text("cart", '{ event = "cart" }'))
    live = LiveActor(app)
    live.engine.batch_size = 4
    async with supervised(app, *woken.values(), live):
        await wait_until_async(lambda: live.passes == 1)
        await post(app, *[(f"c{i}", "cart", T0, {}) for i in range(10)])
        wake(app.actor("live"), EventsStored())
        # 4 + 4 + 2: each pass one transaction of at most four events.
        await wait_until_async(lambda: live.passes == 4)
        assert len(await targets(app, run)) == 10
        assert await cursor(app) == 10


async def test_events_left_by_a_crash_are_matched_when_the_actor_starts(
    app: App, woken: dict[str, Recorder]
) -> None:
    run = await launch(app, spec_text("cart", '{ event = "cart" }'))
    # Stored and answered, then the daemon died before the match: nobody is told.
    await post(app, ("early", "cart", T0, {}))
    live = LiveActor(app)
    async with supervised(app, *woken.values(), live):
        await wait_until_async(lambda: live.passes == 1)
        assert [c for c, _ in await targets(app, run)] == ["early"]
        assert ProcessDue() in woken["ledger"].told


async def test_the_scheduler_tick_closes_windows_through_the_actor(
    app: App, woken: dict[str, Recorder]
) -> None:
    run = await launch(
        app, spec_text("nudge", '{ after = "signup", missing = "deposit", within = "1h" }')
    )
    live = LiveActor(app)
    async with supervised(app, *woken.values(), live):
        await wait_until_async(lambda: live.passes == 1)
        await post(app, ("quiet", "signup", T0, {}))
        ref = app.actor("live")
        opened = await ref.ask(LiveTick(T0))
        assert opened["timers_opened"] == 1 and opened["timers_fired"] == 0
        fired = await ref.ask(LiveTick(T0 + 3600))
        assert fired["timers_fired"] == 1 and fired["due_now"] == 1
        assert [c for c, _ in await targets(app, run)] == ["quiet"]
