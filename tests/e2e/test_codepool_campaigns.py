"""Code-pool campaigns end to end: crash safety of allocation, fallback and pause at zero."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import Daemon, wait_until
from tests.support.data import seed_customers

pytestmark = pytest.mark.slow

NO_SITE_BUDGET = {r"^EUR = \{[^\n]*\}": ""}


def code_spec(pool: str, fallback: str = "", caps: str = "") -> str:
    return f"""
id = "xmas"
name = "Christmas codes"
kind = "past_behavior"
timezone = "UTC"
[schedule]
start = "now"
[segment]
all = [{{ tag = "bonus_interest" }}]
[reward]
provider = "code_pool"
pool = "{pool}"
value = "10.00"
currency = "EUR"
{fallback}
[caps]
{caps}
"""


def _db(d: Daemon) -> Path:
    return d.root / "state" / "promod.db"


def _q(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db, timeout=30) as conn:
        return conn.execute(sql).fetchall()


def _launch(d: Daemon, spec: str) -> None:
    (d.root / "spec.toml").write_text(spec)
    res = d.ctl("campaign", "apply", "-f", str(d.root / "spec.toml"))
    assert res.returncode == 0, res.stderr
    res = d.ctl("campaign", "launch", "xmas")
    assert res.returncode == 0, res.stderr


def _report(d: Daemon) -> dict[str, Any]:
    report: dict[str, Any] = d.ctl_json("campaign", "report", "xmas")
    return report


def test_sigkill_during_a_code_allocation_assigns_no_code_twice(daemon_factory) -> None:
    # 40 batches: enough for the kill to land mid-allocation (asserted below); the
    # pool's generation at 100,000 codes is tests/codepool/test_generate.py's.
    d = daemon_factory(edits={r"^batch_size = \d+": "batch_size = 500", **NO_SITE_BUDGET})
    n = 20_000
    res = d.ctl("codes", "generate", "XMAS", "--count", str(n), timeout=300)
    assert res.returncode == 0, res.stderr
    seed_customers(_db(d), [f"c{i:06d}" for i in range(n)])
    _launch(d, code_spec("XMAS"))
    wait_until(
        lambda: 0 < _q(_db(d), "SELECT count(*) FROM grants")[0][0] < n * 0.8,
        what="allocation under way",
    )
    d.kill()
    at_kill = _q(_db(d), "SELECT count(*) FROM grants")[0][0]
    assert 0 < at_kill < n, "the allocation was not under way at the kill"
    d.start()
    wait_until(lambda: _report(d)["state"] == "completed", timeout=180, what="completion")
    db = _db(d)
    assert _q(db, "SELECT count(*), count(DISTINCT customer_id), count(code) FROM grants") == [
        (n, n, n)
    ]
    # Every grant holds the code assigned to it, and no code went to two grants.
    assert _q(
        db,
        "SELECT count(*) FROM grants g JOIN codes c ON c.grant_id = g.id"
        " AND c.code = g.code AND c.customer_id = g.customer_id AND c.state = 'assigned'",
    ) == [(n,)]
    assert _q(
        db, "SELECT count(*), count(DISTINCT grant_id) FROM codes WHERE state = 'assigned'"
    ) == [(n, n)]
    assert _q(db, "SELECT count(*) FROM codes WHERE state = 'available'") == [(0,)]
    codes = _report(d)["codes"]
    assert codes["issued_codes"] == n


def test_an_empty_pool_switches_to_the_fallback(daemon_factory) -> None:
    d = daemon_factory(edits=NO_SITE_BUDGET)
    assert d.ctl("codes", "generate", "SMALL", "--count", "10").returncode == 0
    seed_customers(_db(d), [f"c{i:02d}" for i in range(30)])
    fallback = 'fallback = { provider = "wallet_points", amount = "200", value = "2.00" }'
    _launch(d, code_spec("SMALL", fallback=fallback))
    wait_until(lambda: _report(d)["state"] == "completed", what="completion")
    providers = dict(_q(_db(d), "SELECT provider, count(*) FROM grants GROUP BY provider"))
    assert providers == {"code_pool": 10, "wallet_points": 20}
    assert _report(d)["spend"] == "140.00"


def test_an_empty_pool_without_fallback_pauses_the_campaign(daemon_factory) -> None:
    d = daemon_factory(edits=NO_SITE_BUDGET)
    assert d.ctl("codes", "generate", "SMALL", "--count", "10").returncode == 0
    seed_customers(_db(d), [f"c{i:02d}" for i in range(30)])
    _launch(d, code_spec("SMALL"))
    wait_until(lambda: _report(d)["state"] == "paused", what="the pause")
    report = _report(d)
    assert report["granted"] == 10
    assert report["paused_reason"] == "no_inventory:SMALL"
    assert report["pending"] == 20
    paused = [
        json.loads(p)
        for (p,) in _q(_db(d), "SELECT payload FROM outbox WHERE type = 'campaign.paused'")
    ]
    assert paused == [
        {"campaign_id": "xmas", "reason": "no_inventory:SMALL", "until": None, "by": "ledger"}
    ]
    # Replenished and resumed, the rest are granted.
    assert d.ctl("codes", "generate", "SMALL", "--count", "20").returncode == 0
    assert d.ctl("campaign", "resume", "xmas").returncode == 0
    wait_until(lambda: _report(d)["state"] == "completed", what="completion after refill")
    assert _report(d)["granted"] == 30
