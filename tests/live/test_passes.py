"""A pass matches its events at once; when that fails it goes again one event at a time.
Both ways give the same targets, refusals, timers and report (real store)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from promod.app import App
from promod.campaigns.segments import register_sql_functions
from promod.clock import ManualClock
from promod.live.engine import LiveEngine
from promod.live.index import TriggerIndex
from promod.live.report import live_report
from promod.store.database import Database
from promod.store.seam import Transaction
from promod.testing import make_app
from tests.live.test_engine import T0, launch, post, spec_text, targets

pytestmark = pytest.mark.anyio


class FailingPass(LiveEngine):
    """An engine whose whole-pass matching fails, as an unforeseen error would."""

    def _match_all(self, tx: Transaction, index: TriggerIndex, events: Any, work: Any) -> None:
        super()._match_all(tx, index, events, work)  # its writes are rolled back
        raise RuntimeError("the pass broke")


async def _scenario(app: App, engine: LiveEngine) -> dict[str, Any]:
    await app.db.execute(
        "INSERT INTO customers (id, attributes, created_at, updated_at) VALUES"
        " ('vip', '{\"tier\": \"gold\"}', 'x', 'x'), ('plain', '{}', 'x', 'x')"
    )
    cart = await launch(
        app, spec_text("cart", '{ event = "cart", where = { total = { gte = 50 } } }')
    )
    gold = await launch(
        app,
        spec_text(
            "gold",
            '{ event = "deposit" }',
            segment='[segment]\nall = [{ attr = "tier", eq = "gold" }]',
        ),
    )
    nudge = await launch(
        app, spec_text("nudge", '{ after = "signup", missing = "deposit", within = "1h" }')
    )
    await post(app, ("c1", "cart", T0, {"total": 60}))
    first = await engine.process()
    await post(
        app,
        ("c1", "cart", T0 + 1, {"total": 70}),  # a target already
        ("c2", "cart", T0 + 1, {"total": 10}),  # below the filter
        ("c3", "cart", T0 + 1, {"total": 50}),
        ("c3", "cart", T0 + 2, {"total": 55}),  # twice in one pass
        ("vip", "deposit", T0 + 1, {}),
        ("plain", "deposit", T0 + 1, {}),  # outside the segment
        ("plain", "deposit", T0 + 2, {}),
        ("quiet", "signup", T0 + 5, {}),
        ("active", "signup", T0 + 5, {}),
    )
    second = await engine.process()
    await post(app, ("active", "deposit", T0 + 10, {}))  # closes its window
    third = await engine.process()
    timers = await engine.tick(T0 + 3606)
    sections = {}
    for campaign in ("cart", "gold", "nudge"):
        section = await app.db.run(lambda tx, c=campaign: live_report(tx, c), write=False)
        assert section is not None
        section.pop("event_to_grant")
        section.pop("firing_to_grant")
        sections[campaign] = section
    return {
        "first": first.due_now,
        "second": (second.due_now, dict(second.refused), second.timers_opened),
        "third": (third.timers_cancelled, dict(third.refused)),
        "timers": (timers.timers_fired, timers.timers_cancelled),
        "targets": [await targets(app, run) for run in (cart, gold, nudge)],
        "reports": sections,
        "errors": second.errors + third.errors,
    }


async def test_matching_one_event_at_a_time_gives_what_the_whole_pass_gives(
    tmp_path: Path,
) -> None:
    outcomes = []
    for name, engine_class in (("whole", LiveEngine), ("each", FailingPass)):
        db = await Database.open(tmp_path / f"{name}.db")
        await db.register_functions(register_sql_functions)
        try:
            app = make_app(db, clock=ManualClock(start=T0))
            outcomes.append(await _scenario(app, engine_class(app)))
        finally:
            await db.close()
    whole, each = outcomes
    assert whole == each
    assert whole["second"] == (2, {"once_per_customer": 2, "segment": 2}, 2)
    assert whole["third"] == (1, {"segment": 1})
    assert whole["timers"] == (1, 0)
    assert [[c for c, _ in t] for t in whole["targets"]] == [["c1", "c3"], ["vip"], ["quiet"]]
    assert whole["errors"] == 0 and each["errors"] == 0
