"""Live-action campaigns in the daemon subprocess: events over HTTP, duplicates, inaction
windows that close with and without the missing event, across a restart (test clock)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.support.daemon import Daemon, wait_until

pytestmark = pytest.mark.slow

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC).timestamp()
HOUR = 3600

DEPOSIT = """
id = "first-deposit"
name = "Reward a first deposit of 10 or more"
kind = "live_action"
timezone = "UTC"
trigger = { event = "deposit", where = { amount = { gte = "10" } } }

[schedule]
start = "now"
delivery = "immediate"

[reward]
provider = "wallet_points"
amount = "500"
"""

NUDGE = """
id = "nudge"
name = "Signed up, no deposit within 72 hours"
kind = "live_action"
timezone = "UTC"
trigger = { after = "signup", missing = "deposit", within = "72h" }

[schedule]
start = "now"
delivery = "immediate"

[reward]
provider = "wallet_points"
amount = "200"
"""


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _grants(d: Daemon) -> list[tuple[str, str]]:
    with sqlite3.connect(d.root / "state" / "promod.db", timeout=30) as conn:
        rows = conn.execute(
            "SELECT campaign_id, customer_id FROM grants WHERE state != 'failed'"
            " ORDER BY campaign_id, customer_id"
        ).fetchall()
    return [(r[0], r[1]) for r in rows]


def _post(d: Daemon, events: list[dict[str, Any]]) -> dict[str, Any]:
    base = "http://" + d.ctl_json("status")["http"]
    token = (d.root / "http-token").read_text().strip()
    r = httpx.post(
        f"{base}/v1/events",
        json={"events": events},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


def _event(eid: str, customer: str, name: str, ts: float, **props: Any) -> dict[str, Any]:
    return {"id": eid, "customer_id": customer, "name": name, "ts": _iso(ts), "properties": props}


def _advance_to(d: Daemon, when: float) -> None:
    res = d.request("clock.advance", {"to": when})
    assert res["ok"], res


def test_live_triggers_duplicates_and_inaction_windows_across_a_restart(
    daemon_factory: Callable[..., Daemon],
) -> None:
    d = daemon_factory(env={"PROMOD_TEST_CLOCK": str(T0)})
    for name, text in (("deposit.toml", DEPOSIT), ("nudge.toml", NUDGE)):
        (d.root / name).write_text(text)
        assert d.ctl("campaign", "apply", "-f", str(d.root / name)).returncode == 0
    for campaign in ("first-deposit", "nudge"):
        assert d.ctl("campaign", "launch", campaign).returncode == 0
    wait_until(
        lambda: all(
            d.ctl_json("campaign", "report", c)["runs"] for c in ("first-deposit", "nudge")
        ),
        what="the live runs",
    )

    # Events trigger grants; the same event delivered twice grants once.
    deposit = _event("d1", "active", "deposit", T0 + 60, amount="25.00")
    small = _event("d2", "small", "deposit", T0 + 60, amount="9.99")
    signups = [_event(f"s-{c}", c, "signup", T0 + 30) for c in ("quiet", "active", "late")]
    assert _post(d, [*signups, deposit, deposit, small])["duplicates"] == 1
    assert _post(d, [deposit])["duplicates"] == 1
    wait_until(lambda: ("first-deposit", "active") in _grants(d), what="the deposit grant")
    d.settle()
    assert _grants(d) == [("first-deposit", "active")]

    # A restart in the middle of the inaction window loses no timer.
    _advance_to(d, T0 + 10 * HOUR)
    assert d.stop() == 0
    d.env["PROMOD_TEST_CLOCK"] = str(T0 + 10 * HOUR)
    d.start()
    _post(d, [_event("d3", "late", "deposit", T0 + 20 * HOUR, amount="1.00")])
    _advance_to(d, T0 + 30 + 72 * HOUR - 1)
    d.settle()
    assert ("nudge", "quiet") not in _grants(d)
    _advance_to(d, T0 + 30 + 72 * HOUR)
    wait_until(lambda: ("nudge", "quiet") in _grants(d), what="the inaction grant")
    d.settle()
    assert _grants(d) == [("first-deposit", "active"), ("nudge", "quiet")]

    live = d.ctl_json("campaign", "report", "nudge")["live"]
    assert live["timers"] == {"cancelled": 1, "fired": 1}  # "active" never opened one
    assert live["grants"] == 1 and live["firings"] == 1
    assert live["event_to_grant"]["samples"] == 1
    report = d.ctl_json("campaign", "report", "first-deposit")
    assert report["granted"] == 1
    assert report["live"]["firings"] == 1 and report["live"]["grants"] == 1
    assert d.stop() == 0
