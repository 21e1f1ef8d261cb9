"""Inaction windows on the system clock: the daemon as a subprocess, no test clock.

Windows opened by ``signup`` events posted over HTTP must close within about a
second of their end on the wall clock (nothing else wakes the scheduler), and a
restart while they are open must not change that.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.support.daemon import Daemon, wait_until

pytestmark = pytest.mark.slow

# How late after its end a window may close and still count as "about a second":
# the scheduler wakes at the end itself; the rest is the machine's load.
CLOSE_SLACK = 2.0


def _nudge(within: str) -> str:
    return f"""
id = "nudge"
name = "Signed up, no deposit within {within}"
kind = "live_action"
timezone = "UTC"
trigger = {{ after = "signup", missing = "deposit", within = "{within}" }}

[schedule]
start = "now"
delivery = "immediate"

[reward]
provider = "wallet_points"
amount = "200"
"""


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _post(d: Daemon, events: list[dict[str, Any]]) -> None:
    base, token = _api(d)
    r = httpx.post(
        f"{base}/v1/events",
        json={"events": events},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert r.status_code == 200, r.text


_APIS: dict[str, tuple[str, str]] = {}


def _api(d: Daemon) -> tuple[str, str]:
    """The HTTP API's base URL and token (asked once: promodctl is slow under load)."""
    key = str(d.root)
    if key not in _APIS:
        token = (d.root / "http-token").read_text().strip()
        _APIS[key] = ("http://" + d.ctl_json("status")["http"], token)
    return _APIS[key]


def _query(d: Daemon, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(d.root / "state" / "promod.db", timeout=30) as conn:
        return conn.execute(sql).fetchall()


def _granted(d: Daemon) -> set[str]:
    return {
        str(r[0])
        for r in _query(
            d, "SELECT customer_id FROM grants WHERE campaign_id = 'nudge' AND state = 'issued'"
        )
    }


def _launch(daemon_factory: Callable[..., Daemon], within: str) -> Daemon:
    d = daemon_factory()  # the system clock: no PROMOD_TEST_CLOCK
    (d.root / "nudge.toml").write_text(_nudge(within))
    assert d.ctl("campaign", "apply", "-f", str(d.root / "nudge.toml")).returncode == 0
    assert d.ctl("campaign", "launch", "nudge").returncode == 0
    wait_until(lambda: d.ctl_json("campaign", "report", "nudge")["runs"], what="the live run")
    return d


def _signups_and_deposits(d: Daemon) -> tuple[float, set[str]]:
    """50 signups now, deposits for every other customer; (signup second, quiet ids)."""
    _api(d)
    signed_up = float(int(time.time()))
    customers = [f"c{i:02d}" for i in range(50)]
    _post(
        d,
        [
            {"id": f"s-{c}", "customer_id": c, "name": "signup", "ts": _iso(signed_up)}
            for c in customers
        ],
    )
    depositors = customers[::2]
    _post(
        d,
        [
            {"id": f"d-{c}", "customer_id": c, "name": "deposit", "ts": _iso(signed_up + 1)}
            for c in depositors
        ],
    )
    return signed_up, set(customers) - set(depositors)


def _before(deadline: float) -> None:
    assert time.time() < deadline, "the machine is too slow: the window ended before the test"


def _assert_closed_on_time(d: Daemon, quiet: set[str], window_end: float) -> None:
    try:
        wait_until(
            lambda: _granted(d) == quiet,
            timeout=window_end - time.time() + 10,
            what="the 25 customers without a deposit to be granted",
        )
    except AssertionError as exc:
        timers = _query(d, "SELECT state, count(*) FROM live_timers GROUP BY 1")
        grants = _query(d, "SELECT state, count(*) FROM grants GROUP BY 1")
        raise AssertionError(f"{exc}: timers {timers}, grants {grants}") from None
    closed = _query(
        d,
        "SELECT state, count(*), max(closed_at - fires_at) FROM live_timers"
        " WHERE campaign_id = 'nudge' GROUP BY state",
    )
    by_state = {state: (n, late) for state, n, late in closed}
    assert {s: n for s, (n, _) in by_state.items()} == {"cancelled": 25, "fired": 25}
    fired_late = by_state["fired"][1]
    assert 0 <= fired_late < CLOSE_SLACK, f"windows closed {fired_late:.2f}s after their end"
    report = d.ctl_json("campaign", "report", "nudge")
    assert report["granted"] == 25 and report["pending"] == 0
    assert report["live"]["timers"] == {"cancelled": 25, "fired": 25}


def test_inaction_windows_close_on_the_system_clock(
    daemon_factory: Callable[..., Daemon],
) -> None:
    d = _launch(daemon_factory, "6s")
    signed_up, quiet = _signups_and_deposits(d)
    _before(signed_up + 6)  # the deposits arrived inside the windows
    _assert_closed_on_time(d, quiet, signed_up + 6)
    assert d.stop() == 0


def test_a_restart_while_windows_are_open_does_not_delay_them(
    daemon_factory: Callable[..., Daemon],
) -> None:
    d = _launch(daemon_factory, "10s")
    signed_up, quiet = _signups_and_deposits(d)
    _before(signed_up + 10)
    assert d.stop() == 0
    d.start()
    assert time.time() < signed_up + 10, "the restart took longer than the window"
    assert _granted(d) == set()
    _assert_closed_on_time(d, quiet, signed_up + 10)
    assert d.stop() == 0
