"""Campaign reports in the daemon subprocess: text, JSON and CSV carry the same figures,
every target is counted once, and an engaged kill switch shows in status and reports."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

import pytest

from promod.campaigns.report import report_rows
from tests.support.daemon import Daemon, wait_until
from tests.support.data import seed_customers, wallet_spec

pytestmark = pytest.mark.slow

NO_SITE_BUDGET = {r"^EUR = \{[^\n]*\}": ""}

LIVE = """
id = "deposits"
name = "Reward a deposit"
kind = "live_action"
timezone = "UTC"
trigger = { event = "deposit" }

[schedule]
start = "now"
delivery = "immediate"

[reward]
provider = "wallet_points"
amount = "100"
"""


def _apply_and_launch(d: Daemon, text: str, campaign: str, *launch: str) -> None:
    path = d.root / f"{campaign}.toml"
    path.write_text(text)
    assert d.ctl("campaign", "apply", "-f", str(path)).returncode == 0
    res = d.ctl("campaign", "launch", campaign, *launch)
    assert res.returncode == 0, res.stderr


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _check_same_figures(d: Daemon, campaign: str) -> dict[str, object]:
    report = d.ctl_json("campaign", "report", campaign)
    text = d.ctl("campaign", "report", campaign)
    assert text.returncode == 0, text.stderr
    raw = d.ctl("campaign", "report", campaign, "--csv")
    assert raw.returncode == 0, raw.stderr
    rows = list(csv.reader(io.StringIO(raw.stdout)))
    assert rows[0] == ["section", "key", "value", "limit"]
    # The CSV holds every figure of the JSON report, and the text each of their keys.
    expected = [[s, k, _cell(v), _cell(lim)] for s, k, v, lim in report_rows(report)]
    assert rows[1:] == expected
    for section, key, value, _limit in report_rows(report):
        if section not in ("campaign", "paused", "kill_switch", "balance") and not key.endswith(
            "_at"
        ):
            assert f"{key}:" in text.stdout, (section, key)
            if isinstance(value, int) and not isinstance(value, bool):
                assert str(value) in text.stdout
    balance = report["balance"]
    assert balance["holds"] is True
    assert (
        balance["sum"]
        == report["targeted"]
        == sum(
            report[k] if k != "refused" else sum(report["refused"].values())
            for k in ("granted", "refused", "pending", "held", "issuing", "failed")
        )
    )
    assert f"check: {balance['equation']} = {report['targeted']} (holds)" in text.stdout
    return {"json": report, "text": text.stdout}


def test_reports_carry_the_same_figures_and_show_the_kill_switch(
    daemon_factory: Callable[..., Daemon],
) -> None:
    d = daemon_factory(edits=NO_SITE_BUDGET)
    db: Path = d.root / "state" / "promod.db"
    seed_customers(db, [f"c{i:02d}" for i in range(20)])
    _apply_and_launch(d, wallet_spec("pilot", caps="count = 10"), "pilot", "--pilot", "4")
    wait_until(
        lambda: d.ctl_json("campaign", "report", "pilot")["paused_reason"] == "pilot",
        what="the pilot",
    )
    _apply_and_launch(d, LIVE, "deposits")
    wait_until(lambda: d.ctl_json("campaign", "report", "deposits")["runs"], what="live run")

    shown = _check_same_figures(d, "pilot")
    report = shown["json"]
    assert isinstance(report, dict)
    assert (report["targeted"], report["granted"], report["held"]) == (20, 4, 16)
    assert report["kill_switch"] is None
    assert "held:" in str(shown["text"]) and "16" in str(shown["text"])
    live = _check_same_figures(d, "deposits")
    assert "live:" in str(live["text"]) and "firings:" in str(live["text"])

    assert d.ctl("kill").returncode == 0
    status = d.ctl_json("status")
    assert status["kill_switch"]["by"]
    human = d.ctl("status")
    assert human.stdout.startswith("KILL SWITCH ENGAGED since ")
    for campaign in ("pilot", "deposits"):
        shown = _check_same_figures(d, campaign)
        assert shown["json"]["kill_switch"] == status["kill_switch"]  # type: ignore[index]
        assert str(shown["text"]).startswith("KILL SWITCH ENGAGED since ")
    raw = d.ctl("campaign", "report", "pilot", "--csv").stdout
    assert "kill_switch,by," in raw
    assert d.ctl("kill", "--release").returncode == 0
    assert d.ctl_json("status")["kill_switch"] is None
    assert "KILL SWITCH" not in d.ctl("campaign", "report", "pilot").stdout
    assert d.stop() == 0
