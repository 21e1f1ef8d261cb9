"""A SIGKILL right after ``POST /v1/events`` answered: the events were durable, so after a
restart every one of them is matched and granted, exactly once (daemon subprocess)."""

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
EVENTS = 3000

DEPOSIT = """
id = "first-deposit"
name = "Reward a first deposit"
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


def _rows(d: Daemon, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(d.root / "state" / "promod.db", timeout=30) as conn:
        return conn.execute(sql).fetchall()


def _granted(d: Daemon) -> int:
    return int(_rows(d, "SELECT count(*) FROM grants WHERE state != 'failed'")[0][0])


def test_events_answered_before_a_crash_are_all_granted_once_after_the_restart(
    daemon_factory: Callable[..., Daemon],
) -> None:
    d = daemon_factory(env={"PROMOD_TEST_CLOCK": str(T0)})
    (d.root / "deposit.toml").write_text(DEPOSIT)
    assert d.ctl("campaign", "apply", "-f", str(d.root / "deposit.toml")).returncode == 0
    assert d.ctl("campaign", "launch", "first-deposit").returncode == 0
    wait_until(lambda: d.ctl_json("campaign", "report", "first-deposit")["runs"], what="the run")

    ts = datetime.fromtimestamp(T0 + 60, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    events = [
        {"id": f"d{n}", "customer_id": f"c{n}", "name": "deposit", "ts": ts,
         "properties": {"amount": "25.00"}}
        for n in range(EVENTS)
    ]  # fmt: skip
    base = "http://" + d.ctl_json("status")["http"]
    token = (d.root / "http-token").read_text().strip()
    r = httpx.post(
        f"{base}/v1/events",
        json={"events": events},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    d.kill()  # the answer is in: the daemon dies while it matches and grants
    assert r.status_code == 200 and r.json()["accepted"] == EVENTS
    assert _granted(d) < EVENTS  # the kill came between the answer and the last grant
    assert _rows(d, "SELECT count(*) FROM events")[0][0] == EVENTS  # durable on the answer

    d.start()
    wait_until(lambda: _granted(d) == EVENTS, timeout=60, what="every grant")
    d.settle()
    assert _granted(d) == EVENTS
    customers = _rows(d, "SELECT customer_id, count(*) FROM grants GROUP BY customer_id")
    assert len(customers) == EVENTS and {n for _, n in customers} == {1}
    assert _rows(d, "SELECT count(*), min(points), max(points) FROM wallet_balances")[0] == (
        EVENTS,
        500,
        500,
    )
    assert _rows(d, "SELECT count(*) FROM live_firings")[0][0] == EVENTS
    assert _rows(d, "SELECT seq FROM live_cursor")[0][0] == EVENTS
    report = d.ctl_json("campaign", "report", "first-deposit")
    assert report["granted"] == EVENTS and report["live"]["grants"] == EVENTS
    assert d.stop() == 0
