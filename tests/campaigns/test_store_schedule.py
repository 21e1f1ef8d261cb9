"""The scheduler's store functions: starting due runs, and the next moment to wake."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from promod.campaigns import store as campaigns
from promod.campaigns.spec import load_spec
from promod.campaigns.store_schedule import next_wake_sync, start_due_runs_sync
from promod.store.database import Database
from tests.support.data import seed_customers, wallet_spec

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 12, 1, 9, tzinfo=UTC).timestamp()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _launch(db: Database, text: str) -> str:
    spec = load_spec(text, "toml")
    await campaigns.apply(db, spec, by="test", now=T0)
    await campaigns.launch(db, spec.id, now=T0, pilot=None)
    return spec.id


async def test_next_wake_sees_clearance_leads_live_ends_and_pauses(tmp_path: Path) -> None:
    async with await Database.open(tmp_path / "s.db") as db:
        assert await db.run(lambda tx: next_wake_sync(tx, T0), write=False) is None
        start = T0 + 7200
        schedule = f'start = "{_iso(start)}"\ndelivery = "immediate"'
        clearance = '\n[clearance]\nrequired = true\nlead = "30m"\n'
        await _launch(db, wallet_spec("cleared", schedule=schedule) + clearance)
        # The clearance snapshot is due ``lead`` before the start.
        assert await db.run(lambda tx: next_wake_sync(tx, T0), write=False) == start - 1800

        live = f"""
id = "live"
name = "Live"
kind = "live_action"
timezone = "UTC"
trigger = {{ event = "purchase" }}

[schedule]
start = "now"
end = "{_iso(T0 + 600)}"
delivery = "immediate"

[reward]
provider = "wallet_points"
amount = "100"
"""
        await _launch(db, live)
        await db.run(
            lambda tx: tx.execute(
                "UPDATE campaigns SET state = 'running', next_run_at = NULL WHERE id = 'live'"
            )
        )
        # A running live-action campaign wakes the timeline at its end.
        assert await db.run(lambda tx: next_wake_sync(tx, T0), write=False) == T0 + 600
        await db.run(
            lambda tx: tx.execute(
                "UPDATE campaigns SET state = 'paused', paused_until = :at WHERE id = 'live'",
                {"at": T0 + 60},
            )
        )
        assert await db.run(lambda tx: next_wake_sync(tx, T0), write=False) == T0 + 60


async def test_a_run_that_fails_to_start_pauses_only_its_campaign(tmp_path: Path) -> None:
    async with await Database.open(tmp_path / "s.db") as db:
        seed_customers(db.path, ["c1", "c2"])
        await _launch(db, wallet_spec("good"))
        await _launch(db, wallet_spec("bad"))
        # The store refuses the bad campaign's run.
        await db.run(
            lambda tx: tx.execute(
                "CREATE TRIGGER no_bad BEFORE INSERT ON runs WHEN NEW.campaign_id = 'bad'"
                " BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        )
        failed: list[str] = []
        started = await db.run(
            lambda tx: start_due_runs_sync(
                tx, now=T0, on_error=lambda campaign, exc: failed.append(campaign)
            )
        )
        assert [c for c, _ in started] == ["good"] and failed == ["bad"]
        bad = await campaigns.get(db, "bad")
        good = await campaigns.get(db, "good")
        assert bad.state == "paused" and (bad.paused_reason or "").startswith("error:")
        assert good.state == "running"
        runs = await db.run(
            lambda tx: [r[0] for r in tx.fetch_all("SELECT campaign_id FROM runs")], write=False
        )
        assert runs == ["good"]
