"""``debug.settle`` in the daemon subprocess: every actor idle at the daemon's clock."""

from __future__ import annotations

import os
import pwd
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from promod.ctl.client import CommandError
from tests.support.daemon import Daemon
from tests.support.data import seed_customers, wallet_spec

pytestmark = pytest.mark.slow

DEC1_0000Z = datetime(2026, 12, 1, 0, 0, tzinfo=UTC).timestamp()
TOKYO_10 = datetime(2026, 12, 1, 1, 0, tzinfo=UTC).timestamp()  # 10:00 in Tokyo


def _granted(d: Daemon) -> list[str]:
    with sqlite3.connect(d.root / "state" / "promod.db", timeout=30) as conn:
        rows = conn.execute("SELECT customer_id FROM grants ORDER BY customer_id").fetchall()
    return [r[0] for r in rows]


def _apply(d: Daemon, text: str) -> None:
    path: Path = d.root / "spec.toml"
    path.write_text(text)
    assert d.ctl("campaign", "apply", "-f", str(path)).returncode == 0


def test_settle_does_what_is_due_now_and_leaves_what_is_due_later(daemon_factory) -> None:
    d = daemon_factory(env={"PROMOD_TEST_CLOCK": str(DEC1_0000Z)})
    zones = {"tokyo": "Asia/Tokyo", "ny": "America/New_York"}
    seed_customers(d.root / "state" / "promod.db", list(zones), timezones=zones)
    _apply(d, wallet_spec(schedule='start = "now"\ndelivery = "local_time"\nlocal_time = "10:00"'))
    assert d.ctl("campaign", "launch", "winback").returncode == 0
    settled = d.settle()
    assert settled["now"] == DEC1_0000Z and settled["rounds"] >= 1
    # The run has started and its targets wait for their local ten o'clock.
    report = d.ctl_json("campaign", "report", "winback")
    assert report["state"] == "running" and report["pending"] == 2
    assert _granted(d) == []
    d.call("clock.advance", {"to": TOKYO_10})
    d.settle()  # no polling: once settled, the grant due at this moment is there
    assert _granted(d) == ["tokyo"]
    # Its reward.granted webhook was fanned out and tried once (the sample config's
    # backend is not listening); the retry is due later and waits.
    outbox = d.ctl_json("outbox")
    assert (outbox["events_pending"], outbox["failing"]) == (0, 1), outbox


def test_settle_on_the_system_clock_grants_a_whole_run_before_it_answers(daemon_factory) -> None:
    d = daemon_factory()
    seed_customers(d.root / "state" / "promod.db", [f"c{i:03d}" for i in range(300)])
    _apply(d, wallet_spec())
    assert d.ctl("campaign", "launch", "winback").returncode == 0
    d.settle()
    assert len(_granted(d)) == 300
    assert d.ctl_json("campaign", "report", "winback")["state"] == "completed"
    # A settled daemon stays settled: the next round finds nothing to do.
    assert d.settle()["rounds"] == 1


def test_settle_is_for_admins(daemon_factory) -> None:
    d = daemon_factory(start=False)
    me = pwd.getpwuid(os.getuid()).pw_name
    d.edit_config(
        {
            r"^admin = \{[^\n]*\}": "admin = { users = [], groups = [] }\n"
            + f'viewer = {{ users = ["{me}"] }}',
            r"^viewer = \{[^\n]*\}": "",
        }
    )
    d.start()
    with pytest.raises(CommandError) as info:
        d.settle()
    assert info.value.code == "forbidden"
