"""Site-wide policy budgets per currency, end to end in the daemon subprocess.

A EUR and a JPY campaign share the ``wallet_points`` provider: each is bound by
the provider's budget in its own currency, spend in one never counts against the
other, and yen are whole yen.
"""

from __future__ import annotations

import signal
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import Daemon, wait_until
from tests.support.data import seed_customers, wallet_spec

pytestmark = pytest.mark.slow

DEC1_0900Z = datetime(2026, 12, 1, 9, 0, tzinfo=UTC).timestamp()

# 10.00 EUR and 1000 JPY a day for wallet points, across campaigns.
BUDGETS = {
    r"^EUR = \{[^\n]*\}": (
        'EUR = { lifetime = "100000.00", daily = "10.00" }\nJPY = { daily = "1000" }'
    )
}


def _db(d: Daemon) -> Path:
    return d.root / "state" / "promod.db"


def _spec(campaign_id: str, currency: str, value: str, caps: str) -> str:
    text = wallet_spec(
        campaign_id, caps=caps, value=value, segment=f'all = [{{ tag = "{campaign_id}" }}]'
    )
    return text.replace('currency = "EUR"', f'currency = "{currency}"')


def _apply(d: Daemon, text: str) -> Any:
    path = d.root / "spec.toml"
    path.write_text(text)
    return d.ctl("--json", "campaign", "apply", "-f", str(path))


def _report(d: Daemon, campaign: str) -> dict[str, Any]:
    report: dict[str, Any] = d.ctl_json("campaign", "report", campaign)
    return report


def _policy_counters(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db, timeout=30) as conn:
        return conn.execute(
            "SELECT scope, period, count, spend, customers FROM cap_counters"
            " WHERE scope NOT LIKE 'campaign:%' ORDER BY scope, period"
        ).fetchall()


def test_eur_and_jpy_campaigns_are_each_bound_by_their_own_currencys_budget(
    daemon_factory: Callable[..., Daemon],
) -> None:
    d = daemon_factory(edits=BUDGETS, env={"PROMOD_TEST_CLOCK": str(DEC1_0900Z)})
    db = _db(d)
    seed_customers(db, [f"e{i}" for i in range(10)], tags=["eur"])
    seed_customers(db, [f"j{i}" for i in range(10)], tags=["jpy"])

    # A cap above the policy budget that binds the campaign first: applied, with a warning.
    res = _apply(d, _spec("eur", "EUR", "5.00", 'budget = "100.00"\ndaily_budget = "50.00"'))
    assert res.returncode == 0, res.stderr
    assert d.ctl_json("campaign", "show", "eur")["state"] == "draft"
    human = d.ctl("campaign", "apply", "-f", str(d.root / "spec.toml"))
    assert (
        "warning: caps.daily_budget: 50.00 EUR is above the policy budget of wallet_points"
        " (10.00 EUR daily, shared by every campaign): the policy budget binds first"
    ) in human.stdout
    res = _apply(d, _spec("jpy", "JPY", "500", 'budget = "100000"'))
    assert res.returncode == 0, res.stderr

    assert d.ctl("campaign", "launch", "eur").returncode == 0
    wait_until(lambda: _report(d, "eur")["state"] == "paused", what="the EUR daily budget to bind")
    eur = _report(d, "eur")
    assert (eur["granted"], eur["spend"], eur["pending"]) == (2, "10.00", 8)
    assert eur["paused_reason"] == "daily_cap:provider_daily_budget:wallet_points"

    # EUR spend has used up the EUR budget; the JPY campaign still has its 1000 yen,
    # two rewards a day, as the dry run projects and the run then grants.
    simulated = d.ctl_json("campaign", "simulate", "jpy")
    assert simulated["binding_cap"] == {
        "cap": "provider_daily_budget:wallet_points",
        "day": "2026-12-01",
        "kind": "daily",
    }
    assert [p["granted"] for p in simulated["per_day"]] == [2, 2, 2, 2, 2]
    assert d.ctl("campaign", "launch", "jpy").returncode == 0
    wait_until(lambda: _report(d, "jpy")["state"] == "paused", what="the JPY daily budget to bind")
    jpy = _report(d, "jpy")
    assert (jpy["granted"], jpy["spend"], jpy["pending"]) == (2, "1000", 8)
    assert jpy["paused_reason"] == "daily_cap:provider_daily_budget:wallet_points"

    # Each report lists the policy budgets that bind it, in its currency, with usage.
    assert {k: v for k, v in eur["caps"].items() if k.startswith("provider")} == {
        "provider_budget:wallet_points": {
            "used": "10.00",
            "limit": "100000.00",
            "policy": True,
            "currency": "EUR",
        },
        "provider_daily_budget:wallet_points": {
            "used": {"2026-12-01": "10.00"},
            "limit": "10.00",
            "policy": True,
            "currency": "EUR",
        },
    }
    assert {k: v for k, v in jpy["caps"].items() if k.startswith("provider")} == {
        "provider_daily_budget:wallet_points": {
            "used": {"2026-12-01": "1000"},
            "limit": "1000",
            "policy": True,
            "currency": "JPY",
        },
    }
    text = d.ctl("campaign", "report", "jpy").stdout
    assert "provider_daily_budget:wallet_points (policy)" in text

    # A currency the provider has no budget in, while it has others: refused at apply.
    res = _apply(d, _spec("usd", "USD", "5.00", 'budget = "100.00"'))
    assert res.returncode == 1
    assert "reward.currency" in res.stderr
    assert "policy budgets are in EUR, JPY only: none binds spend in USD" in res.stderr
    assert d.ctl("campaign", "show", "usd").returncode == 1

    # Counters written before budgets had a currency are keyed by currency at start.
    counters = _policy_counters(db)
    assert [(c[0], c[1], c[3]) for c in counters] == [
        ("policy:wallet_points:EUR", "2026-12-01", 1000),
        ("policy:wallet_points:EUR", "lifetime", 1000),
        ("policy:wallet_points:JPY", "2026-12-01", 1000),
        ("policy:wallet_points:JPY", "lifetime", 1000),
    ]
    assert d.stop() == 0
    with sqlite3.connect(db, timeout=30) as conn:
        conn.execute("DELETE FROM cap_counters WHERE scope LIKE 'policy:%'")
        conn.execute(
            "INSERT INTO cap_counters (scope, period, count, spend, customers)"
            " VALUES ('provider:wallet_points', 'lifetime', 4, 2000, 4),"
            " ('provider:wallet_points', '2026-12-01', 4, 2000, 4)"
        )
    d.start()
    assert _policy_counters(db) == counters
    # ... and still bind: the next day's 1000 yen go to two more JPY customers.
    assert d.request("clock.advance", {"seconds": 86400})["ok"]
    wait_until(lambda: _report(d, "jpy")["granted"] == 4, what="day two in JPY")
    assert _report(d, "jpy")["caps"]["provider_daily_budget:wallet_points"]["used"] == {
        "2026-12-01": "1000",
        "2026-12-02": "1000",
    }


def test_a_campaign_left_without_a_budget_in_its_currency_by_a_reload_spends_nothing(
    daemon_factory: Callable[..., Daemon],
) -> None:
    d = daemon_factory(env={"PROMOD_TEST_CLOCK": str(DEC1_0900Z)})
    seed_customers(_db(d), [f"u{i}" for i in range(3)], tags=["usd"])
    coupon = (
        _spec("usd", "USD", "5.00", 'budget = "100.00"')
        .replace('provider = "wallet_points"', 'provider = "coupon"\ncode = "WELCOME10"')
        .replace('amount = "500"\n', "")
    )
    res = _apply(d, coupon)  # coupon has no policy budgets yet: nothing to refuse
    assert res.returncode == 0, res.stderr
    d.append_config('[policy.budgets.coupon]\nEUR = { daily = "100.00" }')
    d.signal(signal.SIGHUP)
    wait_until(lambda: d.ctl_json("status")["reloads"] == 1, what="the reload")
    assert d.ctl("campaign", "launch", "usd").returncode == 0
    wait_until(lambda: _report(d, "usd")["state"] == "paused", what="the campaign to pause")
    report = _report(d, "usd")
    assert report["granted"] == 0
    assert report["paused_reason"] == "cap:provider_budget:coupon"
    assert report["refused"] == {"provider_budget:coupon": 3}
    row = report["caps"]["provider_budget:coupon"]
    assert (row["used"], row["limit"], row["currency"]) == ("0.00", "0.00", "USD")
    assert "other currencies only" in row["note"]
