"""Plugins from the outside, in the daemon subprocess: the partner_voucher provider against
a fake partner (500s, a SIGKILL mid-run), and a broken provider isolated by its circuit."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from promod_partner_voucher.testing import FakePartner

from tests.support.daemon import Daemon, wait_until
from tests.support.data import seed_customers, wallet_spec

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent

# The sample config caps wallet points site-wide; these tests are about providers.
NO_SITE_BUDGET = {r"^EUR = \{[^\n]*\}": ""}
FAST_ISOLATION = {
    r'^provider_timeout = "10s"': 'provider_timeout = "1s"',
    r'^provider_retry = "1s"': 'provider_retry = "100ms"',
    r"^provider_max_attempts = \d+": "provider_max_attempts = 50",
    r"^circuit_threshold = \d+": "circuit_threshold = 3",
    r'^circuit_cooldown = "30s"': 'circuit_cooldown = "1s"',
    **NO_SITE_BUDGET,
}
KEY_ENV = "PARTNER_VOUCHER_API_KEY"


@pytest.fixture
def partner() -> Iterator[FakePartner]:
    with FakePartner() as fake:
        yield fake


def voucher_spec(partner: FakePartner, campaign_id: str = "vouchers") -> str:
    return f"""
id = "{campaign_id}"
name = "Cinema vouchers"
kind = "past_behavior"
timezone = "UTC"

[schedule]
start = "now"
delivery = "immediate"

[segment]
all = [{{ tag = "bonus_interest" }}]

[reward]
provider = "partner_voucher"
value = "10.00"
currency = "EUR"
options = {{ base_url = "{partner.url}", api_key_env = "{KEY_ENV}", product = "cinema-10" }}

[caps]
per_customer = 1
"""


FLAKY_SPEC = """
id = "flaky"
name = "A campaign on a broken provider"
kind = "past_behavior"
timezone = "UTC"

[schedule]
start = "now"
recurring = "daily 03:00"
delivery = "immediate"

[segment]
all = [{ tag = "bonus_interest" }]

[reward]
provider = "flaky"
value = "1.00"
currency = "EUR"

[caps]
per_customer = 1
"""


def _db(d: Daemon) -> Path:
    return d.root / "state" / "promod.db"


def _apply(d: Daemon, text: str, name: str) -> None:
    path = d.root / f"{name}.toml"
    path.write_text(text)
    res = d.ctl("campaign", "apply", "-f", str(path))
    assert res.returncode == 0, res.stderr
    res = d.ctl("campaign", "launch", name)
    assert res.returncode == 0, res.stderr


def _report(d: Daemon, campaign: str) -> dict[str, Any]:
    report: dict[str, Any] = d.ctl_json("campaign", "report", campaign)
    return report


def _rows(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    with sqlite3.connect(db, timeout=30) as conn:
        return conn.execute(sql, params).fetchall()


def _all_issued(d: Daemon, campaign: str, count: int) -> bool:
    report = _report(d, campaign)
    return report["granted"] == count and report["issuing"] == 0


def _one_voucher_each(d: Daemon, partner: FakePartner, customers: list[str]) -> None:
    """Every customer holds one issued grant whose code is the voucher minted for its key."""
    rows = _rows(_db(d), "SELECT id, customer_id, state, code FROM grants ORDER BY id")
    assert sorted(r[1] for r in rows) == sorted(customers)
    assert {r[2] for r in rows} == {"issued"}
    minted = partner.minted_per_key()
    assert set(minted.values()) == {1}
    assert sorted(minted) == sorted(str(r[0]) for r in rows)
    codes = {v.key: v.code for v in partner}
    assert all(codes[str(r[0])] == r[3] for r in rows)


def test_partner_vouchers_end_to_end_through_500s(daemon_factory, partner: FakePartner) -> None:
    d = daemon_factory(edits=FAST_ISOLATION, env={KEY_ENV: str(partner.api_key)})
    customers = [f"c{i:03d}" for i in range(30)]
    seed_customers(_db(d), customers)
    partner.fail_next(2, status=500)
    _apply(d, voucher_spec(partner), "vouchers")
    wait_until(lambda: _all_issued(d, "vouchers", 30), what="every voucher issued")
    report = _report(d, "vouchers")
    assert report["state"] == "completed"
    assert report["failed"] == 0
    assert report["spend"] == "300.00"
    _one_voucher_each(d, partner, customers)
    assert len([s for s in partner.seen("POST", "/v1/vouchers") if s.status == 500]) == 2
    # The replayed keys did not open the circuit; the plugin reports it healthy.
    info = {p["name"]: p for p in d.ctl_json("plugins")}["partner_voucher"]
    assert info["health"]["state"] == "ok"
    [circuit] = info["health"]["circuits"]
    assert circuit["state"] == "closed"
    assert len(circuit["recent_failures"]) == 2


def test_sigkill_mid_run_mints_each_voucher_once(daemon_factory, partner: FakePartner) -> None:
    d = daemon_factory(edits=FAST_ISOLATION, env={KEY_ENV: str(partner.api_key)})
    customers = [f"c{i:03d}" for i in range(160)]
    seed_customers(_db(d), customers)
    partner.delay = 0.1  # 16 calls at a time: the run takes about a second
    _apply(d, voucher_spec(partner), "vouchers")
    wait_until(lambda: len(partner.mints) >= 20, what="the run to be under way")
    d.kill()
    minted_at_kill = len(partner.mints)
    assert minted_at_kill < 160
    partner.delay = 0.0
    d.start()
    wait_until(
        lambda: _all_issued(d, "vouchers", 160), what="every voucher issued after the restart"
    )
    _one_voucher_each(d, partner, customers)
    assert len(partner.mints) == 160
    assert _report(d, "vouchers")["state"] == "completed"


def _flaky(d: Daemon) -> dict[str, Any]:
    info: dict[str, Any] = {p["name"]: p for p in d.ctl_json("plugins")}["flaky"]
    return info


def _failed_with(d: Daemon, text: str) -> bool:
    circuits = _flaky(d)["health"]["circuits"]
    return bool(circuits) and any(text in f["error"] for f in circuits[0]["recent_failures"])


def test_a_broken_provider_is_isolated_by_its_circuit(daemon_factory) -> None:
    d = daemon_factory(start=False, edits=FAST_ISOLATION)
    plugins = d.root / "plugins"
    plugins.mkdir()
    shutil.copy(HERE / "plugins" / "flaky_provider.py.txt", plugins / "flaky.py")
    mode = d.root / "flaky-mode"
    mode.write_text("raise")
    d.env["FLAKY_MODE_FILE"] = str(mode)
    d.edit_config({r"^dirs = \[\]": f'dirs = ["{plugins}"]'})
    d.start()
    db = _db(d)
    customers = [f"c{i:03d}" for i in range(20)]
    seed_customers(db, customers)
    _apply(d, FLAKY_SPEC, "flaky")
    _apply(d, wallet_spec("steady", caps="per_customer = 1"), "steady")

    # The other campaign grants normally.
    wait_until(lambda: _report(d, "steady")["state"] == "completed", what="the steady campaign")
    assert _report(d, "steady")["granted"] == 20
    # The broken provider's circuit opens and pauses its campaign; no grant is lost.
    wait_until(
        lambda: _report(d, "flaky").get("paused_reason") == "circuit_open:flaky",
        what="the flaky campaign paused for its circuit",
    )
    report = _report(d, "flaky")
    assert report["state"] == "paused"
    # Rewards already sent to it keep their reservation (they may have been issued);
    # those never sent gave theirs back and wait, pending for the circuit.
    assert report["failed"] == 0 and report["granted"] == 0
    assert report["issuing"] + report["pending"] == 20 and report["issuing"] >= 3
    if report["pending"]:
        assert report["pending_by_reason"] == {"circuit_open": report["pending"]}
    assert report["caps"].get("count") is None and report["balance"]["holds"]
    health = _flaky(d)["health"]
    assert health["state"] in ("open", "half_open")
    [circuit] = health["circuits"]
    assert circuit["name"] == "provider:flaky" and circuit["opened"] >= 1
    assert "RuntimeError: flaky provider is broken" in circuit["recent_failures"][-1]["error"]
    human = d.ctl("plugins")
    assert human.returncode == 0 and "provider:flaky" in human.stdout

    # A probe that hangs is cut off by the timeout; one that answers garbage fails too.
    mode.write_text("hang")
    wait_until(lambda: _failed_with(d, "no answer within 1s"), what="a hanging probe")
    mode.write_text("garbage")
    wait_until(lambda: _failed_with(d, "not an IssuedReward"), what="a garbage probe")
    assert _report(d, "flaky")["state"] == "paused"

    # The partner is fixed: the next probe succeeds, the circuit closes, the campaign resumes.
    mode.write_text("ok")
    wait_until(lambda: _all_issued(d, "flaky", 20), what="the flaky grants issued")
    wait_until(lambda: _report(d, "flaky")["state"] == "running", what="the campaign resumed")
    assert _report(d, "flaky")["failed"] == 0
    health = _flaky(d)["health"]
    assert health["state"] == "ok" and health["circuits"][0]["state"] == "closed"
    # One alert for the outage (not one per failed probe), and the pause was announced.
    alerts = _rows(
        db,
        "SELECT json_extract(payload, '$.campaigns') FROM outbox WHERE type ="
        " 'plugin.circuit_open' AND json_extract(payload, '$.circuit') = 'provider:flaky'",
    )
    assert alerts == [('["flaky"]',)]
    paused = _rows(
        db,
        "SELECT count(*) FROM outbox WHERE type = 'campaign.paused'"
        " AND json_extract(payload, '$.reason') = 'circuit_open:flaky'",
    )
    assert paused[0][0] >= 1
    issued = _rows(db, "SELECT count(*) FROM grants WHERE state = 'issued'")
    assert issued[0][0] == 40


def test_a_partner_out_of_stock_switches_to_the_fallback(
    daemon_factory, partner: FakePartner
) -> None:
    d = daemon_factory(edits=FAST_ISOLATION, env={KEY_ENV: str(partner.api_key)})
    customers = [f"c{i:02d}" for i in range(12)]
    seed_customers(_db(d), customers)
    partner.stock = 5
    spec = voucher_spec(partner).replace(
        'product = "cinema-10" }',
        'product = "cinema-10" }\n'
        'fallback = { provider = "wallet_points", amount = "300", value = "3.00" }',
    )
    _apply(d, spec, "vouchers")
    wait_until(
        lambda: (
            _report(d, "vouchers")["state"] == "completed"
            and _report(d, "vouchers")["issuing"] == 0
        ),
        what="the campaign to complete on its fallback",
    )
    live = _rows(
        _db(d),
        "SELECT customer_id, provider FROM grants WHERE state != 'failed' ORDER BY customer_id",
    )
    assert [c for c, _ in live] == customers  # everyone exactly one reward
    by_provider = {p: sum(1 for _, q in live if q == p) for _, p in live}
    assert by_provider == {"partner_voucher": 5, "wallet_points": 7}
    assert set(partner.minted_per_key().values()) == {1}
    report = _report(d, "vouchers")
    assert report["granted"] == 12
    assert report["spend"] == f"{5 * 10 + 7 * 3}.00"


def _capped_voucher_spec(partner: FakePartner, fallback: bool) -> str:
    spec = voucher_spec(partner).replace("per_customer = 1", "per_customer = 1\ncount = 50")
    if fallback:
        spec = spec.replace(
            'product = "cinema-10" }',
            'product = "cinema-10" }\n'
            'fallback = { provider = "coupon", code = "WELCOME10", value = "5.00" }',
        )
    return spec


def _thirty_vouchers_then_coupons(d: Daemon, partner: FakePartner) -> int:
    """50 rewards: every voucher the partner minted is issued to one customer (none lost),
    the coupon for the rest; all 30 vouchers unless the partner's circuit opened (a slow
    answer under load times out): the fallback is then granted while it is open."""
    live = dict(
        _rows(_db(d), "SELECT provider, count(*) FROM grants WHERE state = 'issued' GROUP BY 1")
    )
    vouchers = _rows(
        _db(d), "SELECT id FROM grants WHERE provider = 'partner_voucher' AND state = 'issued'"
    )
    assert sorted(str(v) for (v,) in vouchers) == sorted(partner.minted_per_key())
    assert set(partner.minted_per_key().values()) == {1}
    assert live.get("partner_voucher", 0) + live.get("coupon", 0) == 50
    (opened,) = _rows(_db(d), "SELECT count(*) FROM outbox WHERE type = 'plugin.circuit_open'")[0]
    if not opened:
        assert live == {"partner_voucher": 30, "coupon": 20}
    return int(live.get("partner_voucher", 0))


def _settled(d: Daemon, campaign: str) -> dict[str, Any] | None:
    report = _report(d, campaign)
    if report["issuing"] or report["pending"] or report["state"] == "running":
        return None
    return report


def test_a_count_cap_gives_back_what_an_empty_partner_never_issued(
    daemon_factory, partner: FakePartner
) -> None:
    """30 vouchers left, count = 50, a fallback coupon, 60 customers: the 20 reservations
    the partner could not fill go to the coupon at once; only the 10 past the cap are
    refused ``count``."""
    d = daemon_factory(edits=FAST_ISOLATION, env={KEY_ENV: str(partner.api_key)})
    customers = [f"c{i:02d}" for i in range(60)]
    seed_customers(_db(d), customers)
    partner.stock = 30
    _apply(d, _capped_voucher_spec(partner, fallback=True), "vouchers")
    report = wait_until(lambda: _settled(d, "vouchers"), what="the capped campaign to settle")
    vouchers = _thirty_vouchers_then_coupons(d, partner)
    assert report["granted"] == 50 and report["issuing"] == 0 and report["failed"] == 0
    assert report["refused"] == {"count": 10}
    assert report["state"] == "paused" and report["paused_reason"] == "cap:count"
    assert report["caps"]["count"] == {"used": 50, "limit": 50}
    spend = vouchers * 1000 + (50 - vouchers) * 500
    assert report["spend"] == f"{spend // 100}.00"
    # The out-of-stock answers (and any never sent while a circuit was open), released.
    assert report["grants"]["failed"]["count"] >= 50 - vouchers
    assert report["grants"]["reserved"]["count"] == 50
    assert report["balance"]["holds"] and report["targeted"] == 60
    # Every customer holds at most one reward; the counters hold exactly what was issued.
    held = _rows(
        _db(d),
        "SELECT customer_id, count(*) FROM grants WHERE state != 'failed' GROUP BY 1"
        " HAVING count(*) > 1",
    )
    assert held == []
    counters = _rows(
        _db(d),
        "SELECT count, spend, customers FROM cap_counters WHERE scope = 'campaign:vouchers'"
        " AND period = 'lifetime'",
    )
    assert counters == [(50, spend, 50)]


def test_a_count_cap_waits_out_a_partner_outage_with_the_true_reason(
    daemon_factory, partner: FakePartner
) -> None:
    """The partner is down: nothing counts as granted, the campaign pauses for the circuit
    (not ``cap:count``), and when the partner is back the cap fills with real vouchers."""
    d = daemon_factory(edits=FAST_ISOLATION, env={KEY_ENV: str(partner.api_key)})
    seed_customers(_db(d), [f"c{i:02d}" for i in range(60)])
    partner.fail_next(100_000, status=503)
    _apply(d, _capped_voucher_spec(partner, fallback=False), "vouchers")
    wait_until(
        lambda: _report(d, "vouchers")["paused_reason"] == "circuit_open:partner_voucher",
        what="the campaign paused for the partner's circuit",
    )
    report = _report(d, "vouchers")
    assert report["granted"] == 0 and report["spend"] == "0.00"
    assert report["refused"] == {}
    assert report["issuing"] + report["pending"] == 60
    assert report["pending_by_reason"].get("circuit_open", 0) >= 50 - report["issuing"]
    assert report["caps"]["count"]["used"] == report["issuing"]
    assert report["balance"]["holds"]
    text = d.ctl("campaign", "report", "vouchers").stdout
    assert "circuit_open" in text and "granted:" in text and "issuing:" in text

    partner.clear_faults()
    report = wait_until(lambda: _settled(d, "vouchers"), timeout=40, what="the partner's return")
    assert report["granted"] == 50 and report["refused"] == {"count": 10}
    assert report["paused_reason"] == "cap:count" and report["balance"]["holds"]
    assert set(partner.minted_per_key().values()) == {1} and len(partner.mints) == 50


def test_sigkill_while_a_partner_runs_out_under_a_count_cap(
    daemon_factory, partner: FakePartner
) -> None:
    """Killed while 30 vouchers run out under count = 50 with a fallback coupon: after the
    restart nobody holds two rewards, no voucher is minted twice, the cap holds what was
    issued, and only those past the cap are refused."""
    d = daemon_factory(edits=FAST_ISOLATION, env={KEY_ENV: str(partner.api_key)})
    seed_customers(_db(d), [f"c{i:02d}" for i in range(60)])
    partner.stock = 30
    partner.delay = 0.1
    _apply(d, _capped_voucher_spec(partner, fallback=True), "vouchers")
    wait_until(lambda: len(partner.mints) >= 10, what="the run to be under way")
    d.kill()
    assert len(partner.mints) < 50
    partner.delay = 0.0
    d.start()
    report = wait_until(
        lambda: _settled(d, "vouchers"), timeout=40, what="the run after the restart"
    )
    assert report["granted"] == 50 and report["refused"] == {"count": 10}
    assert report["balance"]["holds"] and report["issuing"] == 0
    vouchers = _thirty_vouchers_then_coupons(d, partner)
    twice = _rows(
        _db(d),
        "SELECT customer_id FROM grants WHERE state != 'failed' GROUP BY 1 HAVING count(*) > 1",
    )
    assert twice == []
    counters = _rows(
        _db(d),
        "SELECT count, spend FROM cap_counters WHERE scope = 'campaign:vouchers'"
        " AND period = 'lifetime'",
    )
    assert counters == [(50, vouchers * 1000 + (50 - vouchers) * 500)]
