"""What customers hold, end to end: real reward states, and campaign coupon codes redeemed."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.daemon import Daemon, wait_until
from tests.support.data import seed_customers

pytestmark = pytest.mark.slow

NO_SITE_BUDGET = {r"^EUR = \{[^\n]*\}": ""}
T0 = 1_796_083_200.0  # 2026-12-01T00:00:00Z

COUPON_SPEC = """
id = "welcome"
name = "Welcome coupon"
kind = "past_behavior"
timezone = "UTC"
[schedule]
start = "now"
[segment]
all = [{ tag = "bonus_interest" }]
[reward]
provider = "coupon"
code = "WELCOME10"
value = "10.00"
currency = "EUR"
"""

POOL_SPEC = COUPON_SPEC.replace('id = "welcome"', 'id = "xmas"').replace(
    'provider = "coupon"\ncode = "WELCOME10"', 'provider = "code_pool"\npool = "XMAS"'
)


def _db(d: Daemon) -> Path:
    return d.root / "state" / "promod.db"


def _launch(d: Daemon, spec: str, campaign: str) -> None:
    path = d.root / f"{campaign}.toml"
    path.write_text(spec)
    res = d.ctl("campaign", "apply", "-f", str(path))
    assert res.returncode == 0, res.stderr
    res = d.ctl("campaign", "launch", campaign)
    assert res.returncode == 0, res.stderr
    wait_until(
        lambda: d.ctl_json("campaign", "report", campaign)["state"] == "completed",
        timeout=60,
        what=f"{campaign} to complete",
    )


def _http(d: Daemon) -> httpx.Client:
    base = "http://" + d.ctl_json("status")["http"]
    token = (d.root / "http-token").read_text().strip()
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def _redeem(c: httpx.Client, code: str, customer: str) -> tuple[bool, str | None]:
    r = c.post("/v1/redemptions", json={"code": code, "customer_id": customer, "ip": "192.0.2.5"})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body["redeemed"], body["reason"]


def _states(c: httpx.Client, customer: str, query: str = "") -> list[str]:
    r = c.get(f"/v1/customers/{customer}/rewards{query}")
    assert r.status_code == 200, r.text
    return [g["state"] for g in r.json()["rewards"]]


def test_a_campaign_coupon_code_is_redeemed_by_each_grantee_once_and_counted(
    daemon_factory,
) -> None:
    d = daemon_factory(edits=NO_SITE_BUDGET)
    seed_customers(_db(d), ["c0", "c1", "c2"])
    seed_customers(_db(d), ["outsider"], tags=())
    _launch(d, COUPON_SPEC, "welcome")
    with _http(d) as c:
        assert _redeem(c, "WELCOME10", "c0") == (True, None)
        assert _redeem(c, "WELCOME10", "c0") == (False, "already_redeemed")
        assert _redeem(c, "WELCOME10", "outsider") == (False, "invalid_code")
        assert _redeem(c, "WELCOME10", "c1") == (True, None)
        assert _states(c, "c0") == []  # used up: no longer offered
        assert _states(c, "c0", "?include=all") == ["redeemed"]
        assert _states(c, "c2") == ["issued"]
    report = d.ctl_json("campaign", "report", "welcome")
    assert report["codes"] == {"issued_codes": 3, "redemptions": 2, "redemption_rate": 0.6667}
    shown = d.ctl_json("customers", "show", "c0")
    assert [(r["code"], r["state"]) for r in shown["rewards"]] == [("WELCOME10", "redeemed")]
    human = d.ctl("customers", "show", "c0")
    assert "redeemed" in human.stdout and " issued" not in human.stdout


def test_revoked_and_expired_codes_are_shown_as_such_and_left_out_by_default(
    daemon_factory,
) -> None:
    d = daemon_factory(edits=NO_SITE_BUDGET, env={"PROMOD_TEST_CLOCK": str(T0)})
    res = d.ctl("codes", "generate", "XMAS", "--count", "3", "--expires", "2d")
    assert res.returncode == 0, res.stderr
    seed_customers(_db(d), ["c0", "c1", "c2"])
    _launch(d, POOL_SPEC, "xmas")
    with sqlite3.connect(_db(d)) as conn:
        codes = dict(
            conn.execute("SELECT customer_id, code FROM grants WHERE campaign_id = 'xmas'")
        )
    with _http(d) as c:
        assert [_states(c, who) for who in ("c0", "c1", "c2")] == [["issued"]] * 3
        assert d.ctl("codes", "revoke", "XMAS", codes["c0"]).returncode == 0
        assert _redeem(c, codes["c2"], "c2") == (True, None)
        assert d.request("clock.advance", {"seconds": 3 * 86_400})["ok"]
        assert [_states(c, who) for who in ("c0", "c1", "c2")] == [[], [], []]
        assert _states(c, "c0", "?include=all") == ["revoked"]
        assert _states(c, "c1", "?include=all") == ["expired"]
        assert _states(c, "c2", "?state=redeemed") == ["redeemed"]
        r = c.get("/v1/customers/c1/rewards?include=all").json()["rewards"][0]
        assert r["code"] == codes["c1"]
        assert r["expires_at"] == "2026-12-03T00:00:00Z"
        assert r["ended_at"] >= r["expires_at"]  # the sweep marks it at its next round
    shown = {
        who: [r["state"] for r in d.ctl_json("customers", "show", who)["rewards"]]
        for who in ("c0", "c1", "c2")
    }
    assert shown == {"c0": ["revoked"], "c1": ["expired"], "c2": ["redeemed"]}
