"""``promodctl campaign simulate`` against the daemon: clearance and recurring runs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from tests.support.daemon import Daemon
from tests.support.data import seed_customers, wallet_spec

pytestmark = pytest.mark.slow

DEC1_0900Z = datetime(2026, 12, 1, 9, 0, tzinfo=UTC).timestamp()

SPEC = wallet_spec(
    caps="per_customer = 10",
    schedule='start = "now"\nrecurring = "daily 10:00"\ndelivery = "immediate"',
) + ('\n[clearance]\nrequired = true\nlead = "30m"\non_timeout = "reject"\n')


def test_simulate_shows_clearance_and_the_runs_up_to_the_horizon(
    daemon_factory: Callable[..., Daemon],
) -> None:
    d = daemon_factory(env={"PROMOD_TEST_CLOCK": str(DEC1_0900Z)})
    seed_customers(d.root / "state" / "promod.db", [f"c{i}" for i in range(5)])
    (d.root / "spec.toml").write_text(SPEC)
    assert d.ctl("campaign", "apply", "-f", str(d.root / "spec.toml")).returncode == 0

    result = d.ctl_json("campaign", "simulate", "winback", "--horizon", "2d")
    assert [r["granted"] for r in result["runs"]] == [5, 5, 5]
    assert (result["granted"], result["if_all_approved"]["granted"]) == (0, 15)
    assert result["clearance"]["awaiting_approval"] == 15

    text = d.ctl("campaign", "simulate", "winback", "--horizon", "2d").stdout
    assert "0 without approval; 15 if all are approved" in text
    assert "sent for clearance" in text
    assert "3 projected until 2026-12-03" in text
    assert "runs (if all are approved):" in text

    default = d.ctl_json("campaign", "simulate", "winback")
    assert default["horizon"]["span"] == "30d"

    bad = d.ctl("campaign", "simulate", "winback", "--horizon", "0s")
    assert bad.returncode == 1
    assert "horizon" in bad.stderr
    assert d.ctl("status").returncode == 0
