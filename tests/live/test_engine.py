"""The live engine over a real store: firing, thresholds, segments, windows, inaction timers."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from promod.app import App
from promod.campaigns import store
from promod.campaigns.runs import create_run_sync
from promod.campaigns.segments import register_sql_functions
from promod.campaigns.spec import load_spec
from promod.clock import ManualClock
from promod.customers.records import Event
from promod.customers.store import insert_events_sync
from promod.live.engine import LiveEngine
from promod.live.report import live_report
from promod.live.store import next_timer
from promod.store.database import Database
from promod.testing import Recorder, make_app, supervised

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC).timestamp()


@pytest.fixture
def woken() -> dict[str, Recorder]:
    """The ledger and the scheduler the engine wakes, by name."""
    return {name: Recorder(name) for name in ("ledger", "scheduler")}


@pytest.fixture
async def app(tmp_path: Path, woken: dict[str, Recorder]) -> AsyncIterator[App]:
    db = await Database.open(tmp_path / "live.db")
    await db.register_functions(register_sql_functions)
    try:
        async with supervised(make_app(db, clock=ManualClock(start=T0)), *woken.values()) as app:
            yield app
    finally:
        await db.close()


def spec_text(
    campaign_id: str,
    trigger: str,
    *,
    schedule: str = 'start = "now"\ndelivery = "immediate"',
    segment: str = "",
) -> str:
    return f"""
id = "{campaign_id}"
name = "Live {campaign_id}"
kind = "live_action"
timezone = "UTC"
trigger = {trigger}

[schedule]
{schedule}

{segment}

[reward]
provider = "wallet_points"
amount = "100"
"""


async def launch(app: App, text: str) -> int:
    spec = load_spec(text, "toml")
    now = app.clock.now()
    await store.apply(app.db, spec, by="test", now=now)
    await store.launch(app.db, spec.id, now=now, pilot=None)

    def start(conn: sqlite3.Connection) -> int:
        run_id = create_run_sync(conn, spec.id, 1, spec, now=now)
        conn.execute("UPDATE campaigns SET next_run_at = NULL WHERE id = ?", (spec.id,))
        return run_id

    return await app.db.run_sync(start)


async def post(app: App, *events: tuple[str, str, float, dict[str, Any]]) -> None:
    """Store events (customer, name, ts, properties), as the HTTP API does."""
    records = [
        Event.model_construct(event_id=None, customer_id=c, name=n, ts=int(ts), properties=p)
        for c, n, ts, p in events
    ]
    await app.db.run_sync(lambda conn: insert_events_sync(conn, records))


async def targets(app: App, run_id: int) -> list[tuple[str, float]]:
    rows = await app.db.fetchall(
        "SELECT customer_id, due_at FROM run_targets WHERE run_id = ? ORDER BY rank", (run_id,)
    )
    return [(r[0], r[1]) for r in rows]


async def report(app: App, campaign_id: str) -> dict[str, Any]:
    section = await app.db.run(lambda tx: live_report(tx, campaign_id), write=False)
    assert section is not None
    return section


async def test_event_trigger_fires_once_per_customer_with_exact_where(
    app: App, woken: dict[str, Recorder]
) -> None:
    run = await launch(
        app, spec_text("cart", '{ event = "cart", where = { total = { gte = 50 } } }')
    )
    engine = LiveEngine(app)
    await post(
        app,
        ("c1", "cart", T0, {"total": "50.00"}),
        ("c2", "cart", T0, {"total": "49.99"}),
        ("c3", "cart", T0, {"total": 51}),
        ("c4", "view", T0, {"total": 500}),
    )
    fired = await engine.process()
    assert fired.due_now == 2
    assert [c for c, _ in await targets(app, run)] == ["c1", "c3"]
    assert woken["ledger"].told  # the ledger is told once per batch
    await post(app, ("c1", "cart", T0 + 5, {"total": 80}))
    fired = await engine.process()
    assert fired.due_now == 0 and fired.refused == {"once_per_customer": 1}
    assert [c for c, _ in await targets(app, run)] == ["c1", "c3"]
    # A fresh engine (a restart) starts at the durable cursor: nothing fires again.
    again = await LiveEngine(app).process()
    assert again.events == 0
    section = await report(app, "cart")
    assert section["firings"] == 3
    assert section["targeted"] == 2
    assert section["refused"] == {"once_per_customer": 1}
    row = await app.db.fetchone("SELECT targeted FROM runs WHERE id = ?", (run,))
    assert row is not None and row[0] == 2


async def test_count_and_sum_thresholds_within_the_window(app: App) -> None:
    third = await launch(app, spec_text("third", '{ event = "buy", within = "30d", gte = 3 }'))
    spent = await launch(
        app,
        spec_text("spent", '{ event = "buy", within = "7d", sum = "amount", gte = "100" }'),
    )
    engine = LiveEngine(app)
    day = 86400
    await post(
        app, ("a", "buy", T0, {"amount": "33.33"}), ("a", "buy", T0 + 1, {"amount": "33.33"})
    )
    await engine.process()
    assert await targets(app, third) == [] and await targets(app, spent) == []
    # 40 days later the first two have left the 30-day window.
    app.clock.advance(40 * day)
    await post(app, ("a", "buy", T0 + 40 * day, {"amount": "33.34"}))
    await engine.process()
    assert await targets(app, third) == [] and await targets(app, spent) == []
    await post(
        app,
        ("b", "buy", T0 + 40 * day, {"amount": "33.33"}),
        ("b", "buy", T0 + 40 * day + 1, {"amount": "33.33"}),
        ("b", "buy", T0 + 40 * day + 2, {"amount": "33.34"}),
    )
    await engine.process()
    assert [c for c, _ in await targets(app, third)] == ["b"]
    assert [c for c, _ in await targets(app, spent)] == ["b"]


async def test_segment_narrows_and_activity_is_bounded_by_start_end_and_state(
    app: App,
) -> None:
    await app.db.execute(
        "INSERT INTO customers (id, attributes, created_at, updated_at) VALUES"
        " ('vip', '{\"tier\": \"gold\"}', 'x', 'x'), ('plain', '{}', 'x', 'x'),"
        " ('vip2', '{\"tier\": \"gold\"}', 'x', 'x')"
    )
    end = datetime.fromtimestamp(T0 + 3600, UTC).isoformat()
    run = await launch(
        app,
        spec_text(
            "gold",
            '{ event = "deposit" }',
            schedule=f'start = "now"\nend = "{end}"\ndelivery = "immediate"',
            segment='[segment]\nall = [{ attr = "tier", eq = "gold" }]',
        ),
    )
    engine = LiveEngine(app)
    await post(app, ("vip", "deposit", T0 - 60, {}), ("plain", "deposit", T0, {}))
    fired = await engine.process()
    assert await targets(app, run) == []  # before the start; not in the segment
    assert fired.refused == {"segment": 1}
    await store.pause(app.db, "gold", now=T0)
    await post(app, ("vip", "deposit", T0 + 1, {}))
    await engine.process()
    assert await targets(app, run) == []  # paused: nothing listens
    await app.db.execute("UPDATE campaigns SET state = 'running' WHERE id = 'gold'")
    await post(app, ("vip", "deposit", T0 + 10, {}))
    await engine.process()
    assert [c for c, _ in await targets(app, run)] == ["vip"]
    app.clock.advance(3600)
    await post(app, ("vip2", "deposit", T0 + 3600, {}))
    await engine.process()
    assert [c for c, _ in await targets(app, run)] == ["vip"]  # at the end: over


async def test_local_time_delivery_is_due_at_the_customers_next_ten(
    app: App, woken: dict[str, Recorder]
) -> None:
    await app.db.execute(
        "INSERT INTO customers (id, timezone, created_at, updated_at) VALUES"
        " ('tokyo', 'Asia/Tokyo', 'x', 'x')"
    )
    run = await launch(
        app,
        spec_text(
            "later",
            '{ event = "signup" }',
            schedule='start = "now"\ndelivery = "local_time"\nlocal_time = "10:00"',
        ),
    )
    engine = LiveEngine(app)
    await post(app, ("tokyo", "signup", T0, {}))
    fired = await engine.process()
    assert fired.due_later == 1 and fired.due_now == 0
    assert await targets(app, run) == [
        ("tokyo", datetime(2026, 12, 2, 1, 0, tzinfo=UTC).timestamp())
    ]
    assert woken["scheduler"].told and not woken["ledger"].told


async def test_inaction_timers_open_cancel_fire_once_and_survive_a_restart(app: App) -> None:
    run = await launch(
        app, spec_text("nudge", '{ after = "signup", missing = "deposit", within = "72h" }')
    )
    engine = LiveEngine(app)
    await post(
        app,
        ("quiet", "signup", T0, {}),
        ("active", "signup", T0, {}),
        ("early", "deposit", T0 + 10, {}),  # deposit stored before its signup
        ("early", "signup", T0 + 5, {}),
    )
    fired = await engine.process()
    assert fired.timers_opened == 2
    assert await app.db.run(lambda tx: next_timer(tx, T0), write=False) == T0 + 72 * 3600
    app.clock.advance(3600)
    await post(app, ("active", "deposit", T0 + 3600, {}))
    assert (await engine.process()).timers_cancelled == 1
    # Restart: a new engine, the same store.
    engine = LiveEngine(app)
    app.clock.advance(71 * 3600 - 1)
    assert (await engine.tick(app.clock.now())).timers_fired == 0
    app.clock.advance(1)
    fired = await engine.tick(app.clock.now())
    assert fired.timers_fired == 1 and fired.due_now == 1
    assert [c for c, _ in await targets(app, run)] == ["quiet"]
    assert (await LiveEngine(app).tick(app.clock.now() + 10)).timers_fired == 0
    section = await report(app, "nudge")
    assert section["timers"] == {"cancelled": 1, "fired": 1}
    assert section["by_source"] == {"inaction": 1}
    row = await app.db.fetchone("SELECT event_ts FROM live_firings WHERE customer_id = 'quiet'")
    assert row is not None and row[0] == T0 + 72 * 3600


async def test_events_stored_while_nothing_listens_never_fire_later(app: App) -> None:
    engine = LiveEngine(app)
    await post(app, ("old", "deposit", T0, {}), ("old2", "deposit", T0, {}))
    assert (await engine.process()).events == 0
    row = await app.db.fetchone("SELECT seq FROM live_cursor")
    assert row is not None and row[0] == 2
    run = await launch(app, spec_text("late", '{ event = "deposit" }'))
    assert (await engine.process()).events == 0
    assert await targets(app, run) == []
