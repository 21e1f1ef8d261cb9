"""An operator's pause in the daemon subprocess: it works on a campaign that a daily cap,
a pilot or an empty code pool already paused, outlasts every automatic resume, and
lasts until an operator's resume; ``campaign show`` says who or what paused it."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import Daemon, wait_until
from tests.support.data import seed_customers, wallet_spec

pytestmark = pytest.mark.slow

NO_SITE_BUDGET = {r"^EUR = \{[^\n]*\}": ""}
DEC1_0900Z = datetime(2026, 12, 1, 9, 0, tzinfo=UTC).timestamp()
DAY = 86400.0


def _db(d: Daemon) -> Path:
    return d.root / "state" / "promod.db"


def _apply_and_launch(d: Daemon, text: str, campaign: str, *launch: str) -> None:
    path = d.root / f"{campaign}.toml"
    path.write_text(text)
    res = d.ctl("campaign", "apply", "-f", str(path))
    assert res.returncode == 0, res.stderr
    res = d.ctl("campaign", "launch", campaign, *launch)
    assert res.returncode == 0, res.stderr


def _show(d: Daemon, campaign: str) -> dict[str, Any]:
    shown: dict[str, Any] = d.ctl_json("campaign", "show", campaign)
    return shown


def _granted(d: Daemon, campaign: str) -> int:
    with sqlite3.connect(_db(d), timeout=30) as conn:
        (n,) = conn.execute(
            "SELECT count(*) FROM grants WHERE campaign_id = ? AND state = 'issued'", (campaign,)
        ).fetchone()
    return int(n)


def _advance_to(d: Daemon, when: float) -> None:
    res = d.request("clock.advance", {"to": when})
    assert res["ok"], res


def test_operator_pause_holds_a_campaign_a_daily_cap_paused_until_resumed(
    daemon_factory: Callable[..., Daemon],
) -> None:
    d = daemon_factory(edits=NO_SITE_BUDGET, env={"PROMOD_TEST_CLOCK": str(DEC1_0900Z)})
    seed_customers(_db(d), [f"c{i:02d}" for i in range(20)])
    _apply_and_launch(d, wallet_spec("daily", caps="daily_count = 5"), "daily")
    wait_until(
        lambda: _show(d, "daily")["paused_reason"] == "daily_cap:daily_count",
        what="the daily cap to pause the campaign",
    )
    assert _granted(d, "daily") == 5

    # Before: "conflict". Now the operator's pause takes hold over the cap's.
    res = d.ctl("campaign", "pause", "daily")
    assert res.returncode == 0, res.stderr
    shown = _show(d, "daily")
    assert shown["state"] == "paused"
    hold = shown["paused"]["operator"]
    assert hold["by"] and hold["at"] == DEC1_0900Z
    assert shown["paused"]["automatic"]["reason"] == "daily_cap:daily_count"
    assert shown["paused"]["automatic"]["by"] == "ledger"
    assert shown["paused"]["automatic"]["until"] == DEC1_0900Z - 9 * 3600 + DAY
    human = d.ctl("campaign", "show", "daily")
    assert human.returncode == 0
    assert f"by operator {hold['by']} at 2026-12-01T09:00:00Z" in human.stdout
    assert "daily_cap:daily_count by ledger" in human.stdout
    again = d.ctl("campaign", "pause", "daily")
    assert again.returncode == 1 and "already paused" in again.stderr

    # The next day the daily window opens, but the operator's pause wins.
    _advance_to(d, DEC1_0900Z + DAY)
    wait_until(
        lambda: _show(d, "daily")["paused_reason"] == "operator",
        what="the scheduler to lift the daily cap's pause (only)",
    )
    shown = _show(d, "daily")
    assert shown["state"] == "paused" and shown["paused_until"] is None
    assert shown["paused"]["automatic"] is None and shown["paused"]["operator"] == hold
    assert _granted(d, "daily") == 5
    report = d.ctl_json("campaign", "report", "daily")
    assert report["state"] == "paused" and report["pending"] == 15

    # A restart does not lift it either: once the timeline has run a whole other
    # campaign after the restart, the held one is still paused.
    assert d.stop() == 0
    d.env["PROMOD_TEST_CLOCK"] = str(DEC1_0900Z + DAY + 60)
    d.start()
    _apply_and_launch(d, wallet_spec("probe"), "probe")
    wait_until(lambda: _show(d, "probe")["state"] == "completed", what="the probe campaign")
    assert _show(d, "daily")["state"] == "paused" and _granted(d, "daily") == 5

    # Only an operator's resume does; the day's cap then applies again.
    assert d.ctl("campaign", "resume", "daily").returncode == 0
    wait_until(lambda: _granted(d, "daily") == 10, what="the second day's grants")
    wait_until(
        lambda: _show(d, "daily")["paused_reason"] == "daily_cap:daily_count",
        what="the daily cap again",
    )
    assert _show(d, "daily")["paused"]["operator"] is None
    assert d.stop() == 0


def test_operator_pause_holds_a_finished_pilot_and_an_empty_code_pool(
    daemon_factory: Callable[..., Daemon],
) -> None:
    d = daemon_factory(edits=NO_SITE_BUDGET, env={"PROMOD_TEST_CLOCK": str(DEC1_0900Z)})
    seed_customers(_db(d), [f"c{i:02d}" for i in range(20)])

    _apply_and_launch(d, wallet_spec("pilot"), "pilot", "--pilot", "4")
    wait_until(lambda: _show(d, "pilot")["paused_reason"] == "pilot", what="the pilot")
    assert _granted(d, "pilot") == 4
    assert d.ctl("campaign", "pause", "pilot").returncode == 0
    shown = _show(d, "pilot")
    assert shown["paused"]["automatic"]["reason"] == "pilot"
    assert shown["paused"]["operator"]["by"]
    # The operator's resume both lifts the hold and releases the pilot's rest.
    assert d.ctl("campaign", "resume", "pilot").returncode == 0
    wait_until(lambda: _granted(d, "pilot") == 20, what="the rest after the pilot")
    wait_until(lambda: _show(d, "pilot")["state"] == "completed", what="the pilot campaign")

    # A code pool with 3 codes and no fallback pauses for inventory; held by the operator
    # through a refill, it stays paused until resumed.
    assert d.ctl("codes", "generate", "POOL", "--count", "3").returncode == 0
    spec = wallet_spec("codes").replace(
        'provider = "wallet_points"\namount = "500"', 'provider = "code_pool"\npool = "POOL"'
    )
    _apply_and_launch(d, spec, "codes")
    wait_until(
        lambda: (_show(d, "codes")["paused_reason"] or "").startswith("no_inventory"),
        what="the empty pool to pause the campaign",
    )
    assert d.ctl("campaign", "pause", "codes").returncode == 0
    assert d.ctl("codes", "generate", "POOL", "--count", "50").returncode == 0
    shown = _show(d, "codes")
    assert shown["state"] == "paused" and shown["paused"]["operator"]["by"]
    assert _granted(d, "codes") == 3
    assert d.ctl("campaign", "resume", "codes").returncode == 0
    wait_until(lambda: _granted(d, "codes") == 20, what="the codes after the refill")
    assert d.stop() == 0
