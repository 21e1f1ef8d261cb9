"""The ledger's isolation of providers outside the database, in process on a real store:
retries and their backoff, the circuit pausing and resuming campaigns, out of inventory."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from promod.actors.ledger import LedgerActor
from promod.campaigns import store
from promod.campaigns.spec import load_spec
from promod.clock import ManualClock
from promod.config import Config, parse_config_text
from promod.plugins import isolation
from promod.plugins.circuit import CircuitBoard, CircuitState
from promod.rewards.provider import (
    GrantRequest,
    IssuedReward,
    OutOfInventory,
    TemporaryFailure,
)
from promod.rewards.wallet import WalletPoints
from promod.store.database import Database
from tests.support.data import seed_customers

pytestmark = pytest.mark.anyio

NOW = 1_796_000_000.0


class Partner:
    """A provider outside the database that does what the test says."""

    name = "partner"
    transactional = False

    def __init__(self) -> None:
        self.outcome: BaseException | None = None
        self.calls: list[int] = []

    async def issue(self, grant: GrantRequest) -> IssuedReward:
        self.calls.append(grant.id)
        if self.outcome is not None:
            raise self.outcome
        return IssuedReward(reference=f"ref-{grant.id}", code=f"CODE{grant.id}")

    async def revoke(self, grant: GrantRequest, reference: str | None) -> None:
        return None


@dataclass
class Plugins:
    reward_providers: dict[str, Any]

    def has_eligibility_checks(self) -> bool:
        return False


@dataclass
class Told:
    messages: list[object] = field(default_factory=list)

    def tell(self, message: object) -> None:
        self.messages.append(message)


@dataclass
class LedgerApp:
    config: Config
    db: Database
    plugins: Plugins
    clock: ManualClock
    extras: dict[str, Any] = field(default_factory=dict)
    told: dict[str, Told] = field(default_factory=dict)

    def actor(self, name: str) -> Told:
        return self.told.setdefault(name, Told())


SPEC = """
id = "vouchers"
name = "Vouchers"
kind = "past_behavior"
timezone = "UTC"
[schedule]
start = "now"
recurring = "daily 03:00"
[segment]
all = [{ tag = "bonus_interest" }]
[reward]
provider = "partner"
value = "2.00"
currency = "EUR"
[caps]
per_customer = 1
budget = "100.00"
"""


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[LedgerApp]:
    config = parse_config_text(
        f"""
[daemon]
state_dir = "{tmp_path}/state"
admin_socket = "{tmp_path}/admin.sock"
[ledger]
provider_retry = "1s"
provider_max_attempts = 4
[plugins]
circuit_threshold = 3
circuit_cooldown = "5s"
""",
        tmp_path / "promod.toml",
    )
    db = await Database.open(tmp_path / "promod.db")
    partner = Partner()
    plugins = Plugins({"partner": partner, "wallet_points": WalletPoints()})
    made = LedgerApp(config, db, plugins, ManualClock(NOW))
    seed_customers(db.path, [f"c{i}" for i in range(4)])
    spec = load_spec(SPEC, "toml", providers=set(plugins.reward_providers))
    await store.apply(db, spec, by="test", now=NOW)
    await store.launch(db, spec.id, now=NOW, pilot=None)
    try:
        yield made
    finally:
        await db.close()


def partner_of(app: LedgerApp) -> Partner:
    partner: Partner = app.plugins.reward_providers["partner"]
    return partner


async def start_run(app: LedgerApp, ledger: LedgerActor, granted: int = 4) -> None:
    from promod.campaigns.runs import create_run_sync

    def work(conn: sqlite3.Connection) -> None:
        spec = store.get_sync(conn, "vouchers")
        assert spec is not None
        create_run_sync(conn, "vouchers", spec.version, spec.spec, now=NOW)
        conn.execute("UPDATE campaigns SET state = 'running', next_run_at = NULL")

    await app.db.run_sync(work)
    done = await ledger.process_due()
    assert done["granted"] == granted


async def grants(app: LedgerApp) -> list[tuple[int, str, int, float | None]]:
    rows = await app.db.fetchall(
        "SELECT id, state, attempts, next_attempt_at FROM grants ORDER BY id"
    )
    return [(r[0], r[1], r[2], r[3]) for r in rows]


async def campaign(app: LedgerApp) -> tuple[str, str | None]:
    row = await app.db.fetchone("SELECT state, paused_reason FROM campaigns")
    assert row is not None
    return row[0], row[1]


async def test_temporary_failures_back_off_never_sooner_than_retry_after(app: LedgerApp) -> None:
    ledger = LedgerActor(app)
    await start_run(app, ledger)
    partner_of(app).outcome = TemporaryFailure("busy", retry_after=30)
    board = isolation.board(app)
    board.get("provider:partner", threshold=100)  # keep the circuit out of this test
    wake = await ledger.issue_pending()
    rows = await grants(app)
    assert [r[1:3] for r in rows] == [("reserved", 1)] * 4
    assert all(r[3] == NOW + 30 for r in rows)  # 1s backoff, but the partner said 30s
    assert wake == NOW + 30
    partner_of(app).outcome = RuntimeError("bug")
    app.clock.advance(30)
    await ledger.issue_pending()
    delays = [r[3] - (NOW + 30) for r in await grants(app)]  # second try: 2s, +25% jitter
    assert all(2.0 <= d <= 2.5 for d in delays), delays
    errors = await app.db.fetchall("SELECT error FROM grants")
    assert {e[0] for e in errors} == {"RuntimeError: bug"}


async def test_circuit_opens_pauses_and_a_probe_closes_it(app: LedgerApp) -> None:
    ticks = [0.0]
    app.extras["circuits"] = CircuitBoard(threshold=3, cooldown=5.0, clock=lambda: ticks[0])
    ledger = LedgerActor(app)
    await start_run(app, ledger)
    partner = partner_of(app)
    partner.outcome = RuntimeError("down")
    await ledger.issue_pending()
    breaker = isolation.board(app).get("provider:partner")
    assert breaker.state is CircuitState.OPEN
    assert await campaign(app) == ("paused", "circuit_open:partner")
    alerts = await app.db.fetchall(
        "SELECT json_extract(payload, '$.campaigns') FROM outbox WHERE type = ?",
        ("plugin.circuit_open",),
    )
    assert [tuple(a) for a in alerts] == [('["vouchers"]',)]
    # While open, nothing is called and no attempt is spent.
    calls = len(partner.calls)
    app.clock.advance(60)
    await ledger.issue_pending()
    assert len(partner.calls) == calls
    # After the cool-down one probe goes through; it succeeds: closed, resumed, kicked.
    ticks[0] += 5.0
    assert breaker.state is CircuitState.HALF_OPEN
    partner.outcome = None
    wake = await ledger.issue_pending()
    assert len(partner.calls) == calls + 1
    assert breaker.state is CircuitState.CLOSED
    assert wake == app.clock.now()
    await ledger.issue_pending()
    assert await campaign(app) == ("running", None)
    assert app.told["scheduler"].messages
    assert {r[1] for r in await grants(app)} == {"issued"}


async def test_out_of_inventory_releases_and_pauses(app: LedgerApp) -> None:
    ledger = LedgerActor(app)
    await start_run(app, ledger)
    partner_of(app).outcome = OutOfInventory("none left")
    await ledger.issue_pending()
    assert {r[1] for r in await grants(app)} == {"failed"}
    assert await campaign(app) == ("paused", "no_inventory:partner")
    # The run stays open while rewards are being issued: the customers go back in
    # line for when the campaign is resumed (after a restock), nothing is spent.
    targets = await app.db.fetchall("SELECT DISTINCT status, reason FROM run_targets")
    assert [tuple(t) for t in targets] == [("pending", "no_inventory")]
    spent = await app.db.fetchall("SELECT * FROM customer_caps WHERE grants > 0")
    assert spent == []
    counters = await app.db.fetchall(
        "SELECT * FROM cap_counters WHERE count != 0 OR spend != 0 OR customers != 0"
    )
    assert counters == []
    # The circuit saw answers, not failures.
    assert isolation.board(app).get("provider:partner").state is CircuitState.CLOSED


async def test_an_operator_pause_outlasts_the_circuit_closing(app: LedgerApp) -> None:
    ticks = [0.0]
    app.extras["circuits"] = CircuitBoard(threshold=3, cooldown=5.0, clock=lambda: ticks[0])
    ledger = LedgerActor(app)
    await start_run(app, ledger)
    partner = partner_of(app)
    partner.outcome = RuntimeError("down")
    await ledger.issue_pending()
    assert await campaign(app) == ("paused", "circuit_open:partner")
    await store.pause(app.db, "vouchers", now=app.clock.now(), by="alice")
    # The partner is back: the probe closes the circuit, the reserved rewards are
    # issued, but the campaign stays paused for the operator.
    ticks[0] += 5.0
    app.clock.advance(60)
    partner.outcome = None
    await ledger.issue_pending()
    await ledger.issue_pending()
    assert isolation.board(app).get("provider:partner").state is CircuitState.CLOSED
    assert await campaign(app) == ("paused", "operator")
    held = await store.get(app.db, "vouchers")
    assert held.pause_info() == {
        "operator": {"by": "alice", "at": NOW},
        "automatic": None,
    }
    assert (await ledger.process_due()).get("granted", 0) == 0
    await store.resume(app.db, "vouchers", now=app.clock.now())
    assert await campaign(app) == ("running", None)
    await ledger.process_due()
    await ledger.issue_pending()
    assert [r[1] for r in await grants(app)] == ["issued"] * 4


async def test_grants_never_sent_when_the_circuit_opens_give_their_reservation_back(
    app: LedgerApp,
) -> None:
    app.extras["circuits"] = CircuitBoard(threshold=3, cooldown=5.0, clock=app.clock.now)
    seed_customers(app.db.path, [f"x{i:02d}" for i in range(16)])  # 20: more than 16 at once
    ledger = LedgerActor(app)
    await start_run(app, ledger, granted=20)
    partner = partner_of(app)
    partner.outcome = RuntimeError("down")
    await ledger.issue_pending()
    assert await campaign(app) == ("paused", "circuit_open:partner")
    # The 16 sent keep their reservation (they may have been issued); the 4 that
    # waited for their turn were never sent: released, their customers pending.
    rows = await grants(app)
    assert sorted(r[1:3] for r in rows) == [("failed", 0)] * 4 + [("reserved", 1)] * 16
    assert len(partner.calls) == 16
    waiting = await app.db.fetchall(
        "SELECT status, reason, count(*) FROM run_targets WHERE status != 'granted' GROUP BY 1, 2"
    )
    assert [tuple(w) for w in waiting] == [("pending", "circuit_open", 4)]
    (count, spend) = await app.db.fetchone(
        "SELECT count, spend FROM cap_counters WHERE scope = 'campaign:vouchers'"
        " AND period = 'lifetime'"
    )
    assert (count, spend) == (16, 16 * 200)
    # The partner is back: the circuit closes, the campaign resumes, and the four are
    # reserved again and issued; every customer holds one voucher.
    partner.outcome = None
    for _ in range(4):
        app.clock.advance(60)
        await ledger.issue_pending()
        await ledger.process_due()
    await ledger.issue_pending()
    live = await app.db.fetchall(
        "SELECT customer_id FROM grants WHERE state = 'issued' ORDER BY customer_id"
    )
    assert len(live) == 20 == len({r[0] for r in live})
    assert await campaign(app) == ("running", None)
