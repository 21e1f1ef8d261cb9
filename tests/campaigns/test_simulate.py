"""The dry run: clearance in the funnel, projected runs of a recurring campaign."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from promod.campaigns import store
from promod.campaigns.segments import register_sql_functions
from promod.campaigns.simulate import simulate_sync
from promod.campaigns.spec import load_spec
from promod.ledger.grants import GrantJob
from promod.rewards.wallet import WalletPoints
from promod.store.database import Database
from tests.support.data import seed_customers, wallet_spec

DEC1_0900Z = datetime(2026, 12, 1, 9, 0, tzinfo=UTC).timestamp()


def _ts(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


def _simulate(
    root: Path,
    text: str,
    *,
    customers: int = 10,
    horizon: float | None = None,
    frequency: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Seed ``customers`` into a fresh database under ``root``, apply ``text``, dry-run it."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "p.db"
    spec = load_spec(text, "toml", providers={"wallet_points"})

    async def create() -> None:
        db = await Database.open(path)
        await db.close()

    async def apply() -> store.CampaignRow:
        db = await Database.open(path)
        try:
            await store.apply(db, spec, by="test", now=DEC1_0900Z)
            return await store.get(db, spec.id)
        finally:
            await db.close()

    anyio.run(create)
    seed_customers(path, [f"c{i:02d}" for i in range(customers)])
    campaign = anyio.run(apply)
    job = GrantJob(
        campaign.id, 0, campaign.spec, {"wallet_points": WalletPoints()}, frequency=frequency
    )
    conn = sqlite3.connect(path)
    register_sql_functions(conn)
    try:
        return simulate_sync(conn, campaign, job, DEC1_0900Z, horizon=horizon)
    finally:
        conn.close()


CLEARANCE = '\n[clearance]\nrequired = true\nlead = "30m"\non_timeout = "{}"\n'


def test_a_campaign_that_needs_clearance_grants_nobody_without_approval(tmp_path: Path) -> None:
    text = wallet_spec(caps='audience = 8\nbudget = "30.00"') + CLEARANCE.format("reject")
    result = _simulate(tmp_path, text)
    assert (result["granted"], result["spend"]) == (0, "0.00")
    assert result["if_all_approved"] == {"granted": 6, "spend": "30.00"}
    assert result["clearance"] == {
        "required": True,
        "on_timeout": "reject",
        "awaiting_approval": 8,
        "granted_if_unanswered": 0,
    }
    assert result["funnel"] == [
        {"step": "segment", "audience": 10},
        {"step": "after audience_cap", "audience": 8},
        {"step": "sent for clearance", "audience": 8},
        {"step": "granted if all are approved (after caps)", "audience": 6},
    ]
    assert result["refused"] == {"audience_cap": 2, "budget": 2}


def test_unanswered_customers_are_granted_when_the_timeout_approves(tmp_path: Path) -> None:
    result = _simulate(tmp_path, wallet_spec(caps="count = 4") + CLEARANCE.format("approve"))
    assert result["granted"] == result["if_all_approved"]["granted"] == 4
    assert result["clearance"]["granted_if_unanswered"] == 4


def _recurring(caps: str, end: str | None = None) -> str:
    schedule = 'start = "now"\nrecurring = "daily 10:00"\ndelivery = "immediate"'
    if end is not None:
        schedule += f'\nend = "{end}"'
    return wallet_spec(caps=caps, schedule=schedule)


def test_a_recurring_campaign_is_projected_run_by_run_up_to_its_end(tmp_path: Path) -> None:
    # Each run re-targets the segment; per_customer carries from run to run.
    result = _simulate(tmp_path, _recurring("per_customer = 3", end="2026-12-04T00:00:00Z"))
    assert [(r["start"], r["granted"]) for r in result["runs"]] == [
        (DEC1_0900Z, 10),  # launched now
        (_ts(2026, 12, 1, 10, 0), 10),  # the next 10:00 after the first run finished
        (_ts(2026, 12, 2, 10, 0), 10),
        (_ts(2026, 12, 3, 10, 0), 0),  # everyone has had their three
    ]
    assert result["targeted"] == 40
    assert result["granted"] == 30
    assert result["refused"] == {"per_customer": 10}
    assert result["horizon"] == {"until": _ts(2026, 12, 4, 0, 0), "span": "2d15h"}
    assert [d["granted"] for d in result["per_day"]] == [20, 10]


def test_recurring_runs_stop_at_the_horizon_and_when_a_lifetime_cap_binds(
    tmp_path: Path,
) -> None:
    result = _simulate(tmp_path / "a", _recurring("per_customer = 100"), horizon=2 * 86400)
    assert len(result["runs"]) == 3  # Dec 1 09:00 and 10:00, Dec 2 10:00; Dec 3 is past
    assert result["horizon"]["span"] == "2d"
    # A lifetime budget pauses the campaign: no runs are projected after it binds.
    capped = _simulate(tmp_path / "b", _recurring('budget = "120.00"\nper_customer = 100'))
    assert [r["granted"] for r in capped["runs"]] == [10, 10, 4]
    assert capped["stopped_by"] == {"cap": "budget", "day": "2026-12-02", "kind": "lifetime"}


def test_the_default_horizon_is_thirty_days(tmp_path: Path) -> None:
    result = _simulate(tmp_path, _recurring("per_customer = 1000"), customers=2)
    assert result["horizon"]["span"] == "30d"
    assert len(result["runs"]) == 31  # today at 09:00 and 10:00, then daily to Dec 30
    assert result["granted"] == 62


def test_the_frequency_cap_counts_grants_projected_by_earlier_runs(tmp_path: Path) -> None:
    result = _simulate(tmp_path, _recurring("per_customer = 100"), frequency=(2, 30), horizon=3e5)
    assert [r["granted"] for r in result["runs"]] == [10, 10, 0, 0, 0]
    assert result["refused"] == {"frequency": 30}


def test_a_one_off_campaign_has_a_single_run_and_no_horizon(tmp_path: Path) -> None:
    result = _simulate(tmp_path, wallet_spec())
    assert [r["granted"] for r in result["runs"]] == [10]
    assert result["horizon"] is None
    assert "clearance" not in result and "if_all_approved" not in result
