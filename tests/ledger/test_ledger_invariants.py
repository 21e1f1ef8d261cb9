"""The cap ledger under random caps and concurrent, replayed and rolled-back grant attempts,
and with a provider outside the database that runs out mid-batch under a count cap.

Whatever the interleaving, spend never passes any cap and no customer is granted
twice in a run; the database itself refuses a write that would pass a cap; the
counters hold exactly what the live grants hold (a reservation never issued gave its
share back), and nobody is refused ``count`` while the cap is not really full.
"""

from __future__ import annotations

import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promod.actors.ledger import LedgerActor
from promod.campaigns import store
from promod.campaigns.runs import create_run_sync
from promod.campaigns.spec import load_spec
from promod.clock import ManualClock
from promod.config import parse_config_text
from promod.ledger.grants import GrantJob, grant_batch
from promod.plugins.circuit import CircuitBoard
from promod.rewards.coupon import Coupon
from promod.rewards.provider import GrantRequest, IssuedReward, OutOfInventory, TemporaryFailure
from promod.rewards.wallet import WalletPoints
from promod.store.database import Database
from promod.testing import make_app
from tests.support.data import seed_customers, wallet_spec

NOW = 1_796_000_000.0  # 2026-12-01
PROVIDERS = {"wallet_points": WalletPoints(), "coupon": Coupon()}


class Crash(Exception):
    """Raised after a batch to roll its transaction back, as a crash before commit would."""


def _caps_text(caps: dict[str, object]) -> str:
    lines = []
    for key, value in caps.items():
        lines.append(f'{key} = "{value}"' if isinstance(value, str) else f"{key} = {value}")
    return "\n".join(lines)


async def _scenario(
    root: Path,
    customers: int,
    caps: dict[str, object],
    provider_budget: int | None,
    frequency: tuple[int, int] | None,
    workers: int,
    batch: int,
    crash_every: int,
) -> None:
    path = root / "promod.db"
    db = await Database.open(path)
    other = await Database.open(path)  # a second connection: a second writer
    try:
        seed_customers(path, [f"c{i}" for i in range(customers)])
        spec = load_spec(wallet_spec(caps=_caps_text(caps)), "toml", providers=set(PROVIDERS))
        await store.apply(db, spec, by="test", now=NOW)
        await store.launch(db, spec.id, now=NOW, pilot=None)

        def make_run(conn: sqlite3.Connection) -> int:
            return create_run_sync(conn, spec.id, 1, spec, now=NOW)

        run_id = await db.run_sync(make_run)
        job = GrantJob(
            campaign_id=spec.id,
            run_id=run_id,
            spec=spec,
            providers=PROVIDERS,
            frequency=frequency,
            provider_lifetime={"wallet_points": provider_budget},
            batch_size=batch,
        )
        attempts = 0

        async def worker(database: Database, n: int) -> None:
            nonlocal attempts
            for i in range(40):
                attempts += 1
                crash = crash_every and (attempts % crash_every == 0)
                # Days move on for some workers, so daily caps roll over mid-run.
                now = NOW + 86400 * ((n + i) % 3)

                def attempt(conn: sqlite3.Connection, now: float = now, crash: bool = crash) -> int:
                    outcome = grant_batch(conn, job, now)
                    if crash:
                        raise Crash
                    return outcome.processed

                try:
                    processed = await database.run_sync(attempt)
                except Crash:
                    continue
                if processed == 0 and i > 3:
                    return

        async with anyio.create_task_group() as tg:
            for n in range(workers):
                tg.start_soon(worker, db if n % 2 == 0 else other, n)
        # Replays: the whole run again, after everything was decided.
        for _ in range(3):
            await db.run_sync(lambda conn: grant_batch(conn, job, NOW + 3 * 86400))
    finally:
        await other.close()
        await db.close()
    _check_invariants(path, spec.id, caps, provider_budget, frequency)


def _check_invariants(
    path: Path,
    campaign_id: str,
    caps: dict[str, object],
    provider_budget: int | None,
    frequency: tuple[int, int] | None,
) -> None:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT customer_id, value_minor, day FROM grants WHERE campaign_id = ?"
            " AND state != 'failed'",
            (campaign_id,),
        ).fetchall()
        customers = [r[0] for r in rows]
        assert len(customers) == len(set(customers)), "a customer was granted twice in a run"
        spend = sum(r[1] for r in rows)
        per_day: dict[str, list[int]] = {}
        for _cid, value, day in rows:
            per_day.setdefault(day, []).append(value)
        if "budget" in caps:
            assert spend <= int(str(caps["budget"]).replace(".", ""))
        if "count" in caps:
            assert len(rows) <= int(caps["count"])  # type: ignore[call-overload]
        if "audience" in caps:
            assert len(set(customers)) <= int(caps["audience"])  # type: ignore[call-overload]
        for values in per_day.values():
            if "daily_count" in caps:
                assert len(values) <= int(caps["daily_count"])  # type: ignore[call-overload]
            if "daily_budget" in caps:
                assert sum(values) <= int(str(caps["daily_budget"]).replace(".", ""))
        if provider_budget is not None:
            assert spend <= provider_budget
        if frequency is not None:
            assert all(customers.count(c) <= frequency[0] for c in set(customers))
        # The wallet holds exactly what the grants say, once each.
        (points,) = conn.execute(
            "SELECT coalesce(sum(points), 0) FROM wallet_transactions"
        ).fetchone()
        assert points == 500 * len(rows)
        # Every target decided at most once, and every grant matches a granted target.
        (granted_targets,) = conn.execute(
            "SELECT count(*) FROM run_targets WHERE status = 'granted'"
        ).fetchone()
        assert granted_targets == len(rows)


caps_strategy = st.fixed_dictionaries(
    {},
    optional={
        "audience": st.integers(1, 60),
        "count": st.integers(1, 60),
        "budget": st.integers(1, 40).map(lambda n: f"{n * 5}.00"),
        "daily_count": st.integers(1, 30),
        "daily_budget": st.integers(1, 20).map(lambda n: f"{n * 5}.00"),
        "per_customer": st.just(1),
    },
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    customers=st.integers(0, 80),
    caps=caps_strategy,
    provider_budget=st.one_of(st.none(), st.integers(1, 30).map(lambda n: n * 500)),
    frequency=st.one_of(st.none(), st.just((1, 30))),
    workers=st.integers(1, 6),
    batch=st.integers(1, 25),
    crash_every=st.sampled_from([0, 2, 3, 5]),
)
def test_spend_never_exceeds_a_cap_and_nobody_is_granted_twice(
    customers: int,
    caps: dict[str, object],
    provider_budget: int | None,
    frequency: tuple[int, int] | None,
    workers: int,
    batch: int,
    crash_every: int,
) -> None:
    with tempfile.TemporaryDirectory(prefix="pmledger") as root:
        anyio.run(
            _scenario,
            Path(root),
            customers,
            caps,
            provider_budget,
            frequency,
            workers,
            batch,
            crash_every,
        )


def test_the_database_refuses_a_write_past_a_cap(tmp_path: Path) -> None:
    async def main() -> None:
        db = await Database.open(tmp_path / "p.db")
        await db.close()

    anyio.run(main)
    with sqlite3.connect(tmp_path / "p.db") as conn:
        conn.execute(
            "INSERT INTO cap_counters (scope, period, count, spend, max_spend)"
            " VALUES ('campaign:x', 'lifetime', 1, 900, 1000)"
        )
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("UPDATE cap_counters SET spend = spend + 500 WHERE scope = 'campaign:x'")
        # The per-customer cap: a second live grant of campaign x to c1 (in another run)
        # is refused by the database itself, a failed one does not count.
        conn.execute(
            "INSERT INTO campaigns (id, version, state, spec, created_at, updated_at)"
            " VALUES ('x', 1, 'running', '{\"caps\": {\"per_customer\": 1}}', 0, 0)"
        )
        grant = (
            "INSERT INTO grants (campaign_id, run_id, customer_id, provider, state, day,"
            " created_at) VALUES ('x', ?, 'c1', 'wallet_points', ?, '2026-12-01', 0)"
        )
        conn.execute(grant, (1, "failed"))
        conn.execute(grant, (1, "issued"))
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(grant, (2, "issued"))
        assert conn.execute("SELECT grants, max_grants FROM customer_caps").fetchall() == [(1, 1)]


# --- a provider outside the database running out under a count cap ------------------


class Partner:
    """A partner with ``stock`` vouchers; then it answers "out of stock"."""

    name = "partner"
    transactional = False

    def __init__(self, stock: int) -> None:
        self.stock = stock
        self.minted: dict[int, str] = {}
        self.down = 0  # the next calls fail (an outage)
        self.lose = 0  # the next calls mint, but the answer is lost

    async def issue(self, grant: GrantRequest) -> IssuedReward:
        if self.down:
            self.down -= 1
            raise TemporaryFailure("partner down")
        if grant.id not in self.minted:  # idempotent on the grant's id
            if self.stock <= 0:
                raise OutOfInventory("none left")
            self.stock -= 1
            self.minted[grant.id] = grant.customer_id
        await anyio.sleep(0)
        if self.lose:
            self.lose -= 1
            raise TemporaryFailure("answer lost")
        return IssuedReward(reference=f"ref-{grant.id}", code=f"V{grant.id}")

    async def revoke(self, grant: GrantRequest, reference: str | None) -> None:
        return None


@dataclass
class Plugins:
    reward_providers: dict[str, Any]

    def has_eligibility_checks(self) -> bool:
        return False


def _spec(count: int, fallback: bool) -> str:
    extra = 'fallback = { provider = "wallet_points", amount = "100", value = "1.00" }'
    return f"""
id = "vouchers"
name = "Vouchers"
kind = "past_behavior"
timezone = "UTC"
[schedule]
start = "now"
[segment]
all = [{{ tag = "bonus_interest" }}]
[reward]
provider = "partner"
value = "2.00"
currency = "EUR"
{extra if fallback else ""}
[caps]
per_customer = 1
count = {count}
"""


async def _stock_scenario(
    root: Path,
    customers: int,
    count: int,
    stock: int,
    fallback: bool,
    batch: int,
    steps: list[str],
) -> None:
    config = parse_config_text(
        f"""
[daemon]
state_dir = "{root}/state"
admin_socket = "{root}/admin.sock"
[ledger]
batch_size = {batch}
provider_retry = "1s"
provider_max_attempts = 50
""",
        root / "promod.toml",
    )
    db = await Database.open(root / "promod.db")
    partner = Partner(stock)
    plugins = Plugins({"partner": partner, "wallet_points": WalletPoints()})
    app = make_app(db, config=config, plugins=plugins, clock=ManualClock(NOW))  # type: ignore[arg-type]
    app.circuits = CircuitBoard(threshold=3, cooldown=5.0, clock=app.clock.now)
    try:
        seed_customers(db.path, [f"c{i:03d}" for i in range(customers)])
        spec = load_spec(_spec(count, fallback), "toml", providers=set(plugins.reward_providers))
        await store.apply(db, spec, by="test", now=NOW)
        await store.launch(db, spec.id, now=NOW, pilot=None)

        def start(conn: sqlite3.Connection) -> None:
            create_run_sync(conn, spec.id, 1, spec, now=NOW)
            conn.execute("UPDATE campaigns SET state = 'running', next_run_at = NULL")

        await db.run_sync(start)
        ledger = LedgerActor(app)
        for step in steps:  # a random interleaving; then settle
            if step == "grant":
                await ledger.process_due()
            elif step == "issue":
                await ledger.issue_pending()
            elif step == "restart":  # a crash: what the actor knew in memory is gone
                ledger = LedgerActor(app)
            elif step == "outage":  # enough failures to open the circuit
                partner.down += 4
            elif step == "lost":
                partner.lose += 2
            else:
                app.clock.advance(10)
            _check_stock(db.path, count, stock, partner)
        for _ in range(2 * customers + 20 + partner.down + partner.lose):
            app.clock.advance(5000)  # past any retry's backoff and the circuit's cool-down
            await ledger.process_due()
            await ledger.issue_pending()
        _check_stock(db.path, count, stock, partner)
        _check_settled(db.path, count, stock, fallback, customers, partner)
    finally:
        await db.close()


def _rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


def _check_stock(path: Path, count: int, stock: int, partner: Partner) -> None:
    live = _rows(path, "SELECT customer_id, value_minor FROM grants WHERE state != 'failed'")
    holders = [r[0] for r in live]
    assert len(holders) == len(set(holders)), "a customer holds two rewards of the run"
    assert len(live) <= count, "the count cap was passed"
    # The counters hold exactly the live grants: what was never issued was given back.
    [(booked, spend, unique)] = _rows(
        path,
        "SELECT count, spend, customers FROM cap_counters WHERE scope = 'campaign:vouchers'"
        " AND period = 'lifetime'",
    ) or [(0, 0, 0)]
    assert (booked, spend, unique) == (len(live), sum(r[1] for r in live), len(live))
    assert len(partner.minted) <= stock
    # A minted voucher belongs to an issued grant, or to one still reserved (its answer
    # was lost: it is retried with the same key); never to a released one.
    states = dict(_rows(path, "SELECT id, state FROM grants WHERE provider = 'partner'"))
    assert all(states.get(grant) in ("issued", "reserved") for grant in partner.minted)
    issued = [g for g, state in states.items() if state == "issued"]
    assert set(issued) <= set(partner.minted), "an issued grant without a voucher"


def _check_settled(
    path: Path, count: int, stock: int, fallback: bool, customers: int, partner: Partner
) -> None:
    assert _rows(path, "SELECT count(*) FROM grants WHERE state = 'reserved'") == [(0,)]
    live = _rows(path, "SELECT count(*) FROM grants WHERE state = 'issued'")[0][0]
    vouchers = _rows(path, "SELECT id FROM grants WHERE provider = 'partner' AND state = 'issued'")
    assert sorted(v for (v,) in vouchers) == sorted(partner.minted), "a voucher is unrecorded"
    targets = dict(
        _rows(path, "SELECT coalesce(reason, status), count(*) FROM run_targets GROUP BY 1")
    )
    # Nobody is refused the count cap unless the issued rewards fill it.
    if targets.get("count"):
        assert live == count
    if fallback:
        # Everyone up to the cap holds a voucher or (out of stock, partner down) the
        # fallback; vouchers are never wasted beyond the stock.
        assert live == min(count, customers)
        assert len(partner.minted) <= min(stock, live)
        assert targets.get("count", 0) == customers - live
    else:
        assert len(partner.minted) == min(stock, count, customers)
        # Those the partner could not serve wait for a restock, with the true reason.
        waiting = _rows(path, "SELECT count(*) FROM run_targets WHERE status = 'pending'")[0][0]
        # (one released while the circuit was open says so, if the campaign paused for
        # the empty partner before it was tried again)
        released = targets.get("no_inventory", 0) + targets.get("circuit_open", 0)
        assert released == max(0, min(count, customers) - stock)
        assert live + waiting + targets.get("count", 0) == customers
        if waiting:  # paused for the partner, with the true reason
            [(state, reason)] = _rows(path, "SELECT state, paused_reason FROM campaigns")
            assert (state, reason) == ("paused", "no_inventory:partner")


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    customers=st.integers(1, 40),
    count=st.integers(1, 30),
    stock=st.integers(0, 30),
    fallback=st.booleans(),
    batch=st.integers(1, 25),
    steps=st.lists(
        st.sampled_from(["grant", "issue", "restart", "outage", "lost", "tick"]), max_size=14
    ),
)
def test_a_partner_running_out_under_a_count_cap_keeps_the_money_invariants(
    customers: int, count: int, stock: int, fallback: bool, batch: int, steps: list[str]
) -> None:
    with tempfile.TemporaryDirectory(prefix="pmstock") as root:
        anyio.run(_stock_scenario, Path(root), customers, count, stock, fallback, batch, steps)
