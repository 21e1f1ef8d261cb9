"""An operator's hold on a campaign in the store: drafts, automatic resumes, final states."""

from __future__ import annotations

import pytest

from promod.campaigns import store
from promod.campaigns.spec import load_spec
from promod.store.database import Database
from tests.support.data import wallet_spec

pytestmark = pytest.mark.anyio

NOW = 1_796_000_000.0


async def _draft(db: Database, campaign_id: str = "held") -> None:
    spec = load_spec(wallet_spec(campaign_id), "toml", providers={"wallet_points"})
    await store.apply(db, spec, by="test", now=NOW)


async def test_a_held_draft_is_launched_paused_until_an_operator_resumes(db: Database) -> None:
    await _draft(db)
    await store.pause(db, "held", now=NOW, by="alice")
    row = await store.get(db, "held")
    assert row.state == "draft"
    assert row.pause_info() == {"operator": {"by": "alice", "at": NOW}, "automatic": None}
    launched = await store.launch(db, "held", now=NOW + 1, pilot=None)
    assert (launched.state, launched.paused_reason) == ("paused", "operator")
    assert launched.held_by == "alice" and launched.next_run_at == NOW + 1
    # An automatic resume only lifts an automatic reason; the hold stays.
    assert not await db.run_sync(lambda c: store.resume_sync(c, "held", now=NOW + 2))
    assert (await store.get(db, "held")).state == "paused"
    await store.resume(db, "held", now=NOW + 3)
    resumed = await store.get(db, "held")
    assert (resumed.state, resumed.held_by, resumed.paused_reason) == ("running", None, None)


async def test_resuming_a_held_draft_only_lifts_the_hold(db: Database) -> None:
    await _draft(db)
    await store.pause(db, "held", now=NOW, by="alice")
    await store.resume(db, "held", now=NOW + 1)
    row = await store.get(db, "held")
    assert (row.state, row.held_by, row.pause_info()) == ("draft", None, None)
    launched = await store.launch(db, "held", now=NOW + 2, pilot=None)
    assert launched.state == "running"


async def test_a_final_campaign_cannot_be_paused_and_a_held_one_not_twice(db: Database) -> None:
    await _draft(db)
    await store.launch(db, "held", now=NOW, pilot=None)
    await store.pause(db, "held", now=NOW, by="alice")
    with pytest.raises(store.CampaignError, match="already paused by alice"):
        await store.pause(db, "held", now=NOW, by="bob")
    await store.stop(db, "held", now=NOW + 1)
    with pytest.raises(store.CampaignError, match="stopped; it cannot be paused") as err:
        await store.pause(db, "held", now=NOW + 2, by="bob")
    assert err.value.code == "conflict"
