"""Campaigns end to end in the daemon subprocess: caps, crashes, days, local time, kill switch."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import Daemon, _script, new_instance_dir, wait_until
from tests.support.data import grants, seed_customers, wallet_spec

pytestmark = pytest.mark.slow

# The sample config caps wallet points site-wide at 5,000.00 a day; these tests
# exercise the campaign's own caps, so they lift that policy.
NO_SITE_BUDGET = {r"^EUR = \{[^\n]*\}": ""}

DEC1_0000Z = datetime(2026, 12, 1, 0, 0, tzinfo=UTC).timestamp()


def _db(d: Daemon) -> Path:
    return d.root / "state" / "promod.db"


def _apply(d: Daemon, text: str, name: str = "spec.toml") -> None:
    path = d.root / name
    path.write_text(text)
    res = d.ctl("campaign", "apply", "-f", str(path))
    assert res.returncode == 0, res.stderr


def _report(d: Daemon, campaign: str = "winback") -> dict[str, Any]:
    report: dict[str, Any] = d.ctl_json("campaign", "report", campaign)
    return report


def _advance(d: Daemon, seconds: float) -> None:
    res = d.request("clock.advance", {"seconds": seconds})
    assert res["ok"], res


def _count(db: Path, sql: str, params: tuple[Any, ...] = ()) -> int:
    with sqlite3.connect(db, timeout=30) as conn:
        return int(conn.execute(sql, params).fetchone()[0])


def test_sigkill_mid_run_then_restart_grants_everyone_exactly_once(daemon_factory) -> None:
    d = daemon_factory(edits={r"^batch_size = \d+": "batch_size = 200", **NO_SITE_BUDGET})
    db = _db(d)
    seed_customers(db, [f"c{i:05d}" for i in range(50_000)])
    _apply(d, wallet_spec(caps='audience = 45000\nbudget = "250000.00"\nper_customer = 1'))
    assert d.ctl("campaign", "launch", "winback").returncode == 0
    # Kill the daemon while the run is being granted.
    wait_until(
        lambda: 0 < _count(db, "SELECT count(*) FROM grants") < 40_000,
        timeout=60,
        what="the run to be under way",
    )
    d.kill()
    at_kill = _count(db, "SELECT count(*) FROM grants")
    assert 0 < at_kill < 45_000
    d.start()
    wait_until(lambda: _report(d)["state"] == "completed", timeout=120, what="the run to complete")
    report = _report(d)
    rows = grants(db, "winback")
    customers = [r[0] for r in rows]
    assert len(customers) == 45_000 == len(set(customers))
    assert report["granted"] == 45_000
    assert report["refused"] == {"audience_cap": 5_000}
    assert report["spend"] == "225000.00"
    assert _count(db, "SELECT count(*) FROM wallet_transactions") == 45_000
    assert _count(db, "SELECT count(DISTINCT grant_id) FROM wallet_transactions") == 45_000
    assert _count(db, "SELECT sum(points) FROM wallet_balances") == 45_000 * 500


def test_daily_caps_carry_into_following_days_and_simulate_matches(daemon_factory) -> None:
    d = daemon_factory(env={"PROMOD_TEST_CLOCK": str(DEC1_0000Z + 9 * 3600)})
    seed_customers(_db(d), [f"c{i:03d}" for i in range(100)])
    _apply(d, wallet_spec(caps='daily_count = 30\nbudget = "450.00"', timezone="Europe/Berlin"))
    simulated = d.ctl_json("campaign", "simulate", "winback")
    assert simulated["granted"] == 90
    assert simulated["binding_cap"] == {"cap": "daily_count", "day": "2026-12-01", "kind": "daily"}
    assert simulated["refused"] == {"budget": 10}

    assert d.ctl("campaign", "launch", "winback").returncode == 0
    wait_until(lambda: _report(d)["granted"] == 30, what="day one")
    report = _report(d)
    assert report["state"] == "paused"
    assert report["paused_reason"] == "daily_cap:daily_count"
    assert report["pending"] == 70
    _advance(d, 3600)  # still the same day in Berlin: nothing more
    d.settle()
    assert _report(d)["granted"] == 30
    _advance(d, 15 * 3600)  # past midnight in Berlin
    wait_until(lambda: _report(d)["granted"] == 60, what="day two")
    _advance(d, 24 * 3600)
    wait_until(
        lambda: _report(d)["state"] == "paused" and _report(d)["granted"] == 90, what="day three"
    )
    report = _report(d)
    assert report["paused_reason"] == "cap:budget"
    assert report["refused"] == {"budget": 10}
    assert report["spend"] == "450.00"
    assert [p["granted"] for p in report["per_day"]] == [30, 30, 30]
    assert report["per_day"] == simulated["per_day"]
    assert report["granted"] == simulated["granted"]
    assert report["refused"] == simulated["refused"]
    # cap.reached was recorded for the notifier, once per cap and period.
    with sqlite3.connect(_db(d)) as conn:
        caps = conn.execute(
            "SELECT json_extract(payload, '$.cap'), json_extract(payload, '$.period')"
            " FROM outbox WHERE type = 'cap.reached' ORDER BY id"
        ).fetchall()
    assert caps == [
        ("daily_count", "2026-12-01"),
        ("daily_count", "2026-12-02"),
        ("budget", "lifetime"),
    ]


def test_local_time_delivery_grants_each_customer_at_their_own_ten_oclock(daemon_factory) -> None:
    d = daemon_factory(env={"PROMOD_TEST_CLOCK": str(DEC1_0000Z)})
    zones = {"tokyo": "Asia/Tokyo", "berlin": "Europe/Berlin", "ny": "America/New_York"}
    seed_customers(_db(d), list(zones), timezones=zones)
    schedule = 'start = "now"\ndelivery = "local_time"\nlocal_time = "10:00"'
    _apply(d, wallet_spec(schedule=schedule))
    assert d.ctl("campaign", "launch", "winback").returncode == 0
    expected = {
        "tokyo": datetime(2026, 12, 1, 1, 0, tzinfo=UTC).timestamp(),  # 10:00 JST
        "berlin": datetime(2026, 12, 1, 9, 0, tzinfo=UTC).timestamp(),  # 10:00 CET
        "ny": datetime(2026, 12, 1, 15, 0, tzinfo=UTC).timestamp(),  # 10:00 EST
    }
    d.settle()
    assert _report(d)["granted"] == 0  # Dec 1, 00:00 UTC: nobody's 10:00 yet
    granted_at: dict[str, float] = {}
    for who in ("tokyo", "berlin", "ny"):
        _advance(d, expected[who] - d.request("clock.advance", {"seconds": 0})["result"]["now"])
        wait_until(
            lambda who=who: who in {r[0] for r in grants(_db(d), "winback")},
            what=f"{who}'s reward",
        )
        with sqlite3.connect(_db(d)) as conn:
            granted_at[who] = conn.execute(
                "SELECT created_at FROM grants WHERE customer_id = ?", (who,)
            ).fetchone()[0]
        assert len(grants(_db(d), "winback")) == len(granted_at)
    assert granted_at == expected
    wait_until(lambda: _report(d)["state"] == "completed", what="completion")


def test_kill_switch_stops_grants_and_survives_a_restart(daemon_factory) -> None:
    d = daemon_factory()
    seed_customers(_db(d), [f"c{i}" for i in range(50)])
    assert d.ctl("kill").returncode == 0
    _apply(d, wallet_spec())
    assert d.ctl("campaign", "launch", "winback").returncode == 0
    d.settle()
    assert _report(d)["granted"] == 0
    assert d.stop() == 0
    d.start()
    assert d.ctl_json("call", "kill.status")["engaged"] is True
    d.settle()
    assert _report(d)["granted"] == 0
    assert d.ctl("kill", "--release").returncode == 0
    wait_until(lambda: _report(d)["granted"] == 50, what="grants after release")
    audit = [r["command"] for r in d.ctl_json("audit")]
    assert "kill.engage" in audit and "kill.release" in audit


def test_kill_switch_halts_a_running_campaign_within_a_second(daemon_factory) -> None:
    d = daemon_factory(edits={r"^batch_size = \d+": "batch_size = 50", **NO_SITE_BUDGET})
    db = _db(d)
    seed_customers(db, [f"c{i:05d}" for i in range(30_000)])
    _apply(d, wallet_spec())
    assert d.ctl("campaign", "launch", "winback").returncode == 0
    wait_until(lambda: _count(db, "SELECT count(*) FROM grants") > 0, what="grants to start")
    assert d.ctl("kill").returncode == 0
    d.settle()
    after = _count(db, "SELECT count(*) FROM grants")
    d.settle()
    assert _count(db, "SELECT count(*) FROM grants") == after < 30_000


def test_pilot_grants_a_slice_then_waits_for_resume(daemon_factory) -> None:
    d = daemon_factory()
    seed_customers(_db(d), [f"c{i:03d}" for i in range(200)])
    _apply(d, wallet_spec())
    assert d.ctl("campaign", "launch", "winback", "--pilot", "10%").returncode == 0
    wait_until(lambda: _report(d)["state"] == "paused", what="the pilot to finish")
    report = _report(d)
    assert report["granted"] == 20
    assert report["paused_reason"] == "pilot"
    assert d.ctl("campaign", "resume", "winback").returncode == 0
    wait_until(lambda: _report(d)["state"] == "completed", what="the rest")
    assert _report(d)["granted"] == 200
    shown = d.ctl_json("customers", "show", "c000")
    assert shown["wallet"] == {"points": 500}
    assert [(r["campaign"], r["value"], r["state"]) for r in shown["rewards"]] == [
        ("winback", "5.00", "issued")
    ]


def test_bad_spec_is_refused_with_every_path(daemon_factory) -> None:
    d = daemon_factory()
    bad = wallet_spec(caps='budget = 500.0\ndaily_count = "x"').replace(
        'tag = "bonus_interest"', 'tag = "bonus_interest", within = "9x"'
    )
    path = d.root / "bad.toml"
    path.write_text(bad)
    res = d.ctl("--json", "campaign", "apply", "-f", str(path))
    assert res.returncode == 1
    assert "caps.budget" in res.stderr and "caps.daily_count" in res.stderr
    assert "segment.all[0]" in res.stderr
    assert d.ctl_json("campaign", "list") == []
    csv = d.ctl("campaign", "report", "nope", "--csv")
    assert csv.returncode == 1 and "not_found" in csv.stderr
    json.dumps(d.ctl_json("status"))  # the daemon lives on


def test_demo_instance_simulates_and_grants_by_an_event_sum_segment(daemon_factory) -> None:
    root = new_instance_dir()
    res = subprocess.run(
        [*_script("promod"), "init", str(root), "--demo"], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    d = Daemon(root)
    d.edit_config({r'^listen = "127\.0\.0\.1:8470"': 'listen = "127.0.0.1:0"'})
    try:
        d.start()
        simulated = d.ctl_json("campaign", "simulate", "demo-welcome-points")
        assert simulated["targeted"] > 0
        assert d.ctl("campaign", "launch", "demo-welcome-points").returncode == 0
        wait_until(
            lambda: _report(d, "demo-welcome-points")["state"] == "paused",
            what="the demo campaign's first day",
        )
        report = _report(d, "demo-welcome-points")
        # Day one as simulated: the daily count binds, the rest waits for tomorrow.
        assert report["paused_reason"] == "daily_cap:daily_count"
        assert report["per_day"][0] == simulated["per_day"][0]
        assert report["granted"] == simulated["per_day"][0]["granted"] > 0
    finally:
        d.close()
        shutil.rmtree(root, ignore_errors=True)


def test_a_campaign_whose_run_cannot_start_is_paused_not_fatal(daemon_factory) -> None:
    d = daemon_factory()
    seed_customers(_db(d), ["a", "b"])
    _apply(d, wallet_spec(segment='all = [{ list = "vip" }]'))
    with sqlite3.connect(_db(d)) as conn:  # a list table the daemon cannot read
        conn.execute("DROP VIEW custom_lists")
    assert d.ctl("campaign", "launch", "winback").returncode == 0
    wait_until(lambda: _report(d)["state"] == "paused", what="the pause")
    # The store seam names the failure, not the driver.
    assert _report(d)["paused_reason"] == "error:SchemaMismatch"
    assert all(a["restarts"] == 0 for a in d.ctl_json("actors")), d.logs()


def test_an_eligibility_plugin_vetoes_customers_before_any_reservation(daemon_factory) -> None:
    plugin_dir = new_instance_dir()
    (plugin_dir / "no_sevens.py").write_text(
        '"""Site rule: customers whose id ends in 7 get nothing."""\n'
        "from promod import hookimpl\n\n"
        "@hookimpl\n"
        "def promod_eligibility_check(customer, campaign):\n"
        "    return 'ends_in_7' if customer['id'].endswith('7') else None\n"
    )
    d = daemon_factory(edits={r"^dirs = \[\]": f'dirs = ["{plugin_dir}"]'})
    seed_customers(_db(d), [f"c{i:02d}" for i in range(30)])
    _apply(d, wallet_spec(caps="count = 27"))
    assert d.ctl("campaign", "launch", "winback").returncode == 0
    wait_until(lambda: _report(d)["state"] != "running", what="completion")
    report = _report(d)
    assert report["state"] == "completed", report
    assert report["refused"] == {"eligibility:ends_in_7": 3}
    assert report["granted"] == 27  # vetoed customers took no room under the count cap
    shutil.rmtree(plugin_dir, ignore_errors=True)


def test_a_daily_recurring_campaign_runs_again_each_day(daemon_factory) -> None:
    d = daemon_factory(env={"PROMOD_TEST_CLOCK": str(DEC1_0000Z + 8 * 3600)})
    seed_customers(_db(d), [f"c{i}" for i in range(5)])
    schedule = 'start = "now"\nrecurring = "daily 09:00"\nend = "2026-12-03T12:00:00Z"'
    _apply(d, wallet_spec(schedule=schedule, caps="per_customer = 2"))
    assert d.ctl("campaign", "launch", "winback").returncode == 0
    wait_until(lambda: _report(d)["granted"] == 5, what="the first run")
    _advance(d, 3600)  # Dec 1, 09:00: the second run; everyone's second reward
    wait_until(lambda: _report(d)["granted"] == 10, what="the second run")
    _advance(d, 86400)  # Dec 2, 09:00: per_customer = 2 refuses everyone
    wait_until(lambda: len(_report(d)["runs"]) == 3 and _report(d)["refused"], what="the third run")
    report = _report(d)
    assert report["refused"] == {"per_customer": 5}
    _advance(d, 86400)  # Dec 3, 09:00 is before the end: a fourth run, then completed
    wait_until(lambda: _report(d)["state"] == "completed", what="completion at the end")
    assert _report(d)["granted"] == 10
