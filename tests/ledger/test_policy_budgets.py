"""Policy budgets per provider and currency in the cap ledger, and the counters' migration."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promod.campaigns.spec import load_spec
from promod.ledger.caps import CapBook, Limits, migrate_currencyless_sync
from promod.store.database import Database
from tests.support.data import wallet_spec

DEC1_2330Z = datetime(2026, 12, 1, 23, 30, tzinfo=UTC).timestamp()  # Dec 2 in Berlin


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    async def create() -> None:
        db = await Database.open(tmp_path / "p.db")
        await db.close()

    anyio.run(create)
    return sqlite3.connect(tmp_path / "p.db", isolation_level=None)


def _book(conn: sqlite3.Connection, campaign: str, currency: str, daily: int) -> CapBook:
    limits = Limits(campaign, currency=currency, provider_daily={"wallet_points": daily})
    return CapBook(limits, "2026-12-01", "2026-12-01").load(conn, ["wallet_points"])


def test_spend_in_one_currency_never_counts_against_another_currencys_budget(
    conn: sqlite3.Connection,
) -> None:
    eur = _book(conn, "eur", "EUR", daily=1000)  # 10.00 EUR
    assert eur.reserve(500, "wallet_points", first=True) is None
    assert eur.reserve(500, "wallet_points", first=True) is None
    refusal = eur.reserve(500, "wallet_points", first=True)
    assert refusal is not None
    assert (refusal.cap, refusal.kind) == ("provider:wallet_points", "daily")
    assert refusal.limit == "spend"
    eur.flush(conn)
    # 1000 whole yen: the EUR minor units spent above do not touch it.
    jpy = _book(conn, "jpy", "JPY", daily=1000)
    assert jpy.reserve(600, "wallet_points", first=True) is None
    refusal = jpy.reserve(600, "wallet_points", first=True)
    assert refusal is not None and refusal.scope == "policy:wallet_points:JPY"
    assert jpy.reserve(400, "wallet_points", first=True) is None
    jpy.flush(conn)
    rows = conn.execute(
        "SELECT scope, period, spend FROM cap_counters WHERE scope LIKE 'policy:%'"
        " ORDER BY scope, period"
    ).fetchall()
    assert rows == [
        ("policy:wallet_points:EUR", "2026-12-01", 1000),
        ("policy:wallet_points:EUR", "lifetime", 1000),
        ("policy:wallet_points:JPY", "2026-12-01", 1000),
        ("policy:wallet_points:JPY", "lifetime", 1000),
    ]


def test_a_campaign_without_currency_books_no_policy_counter(conn: sqlite3.Connection) -> None:
    book = CapBook(Limits("plain"), "2026-12-01", "2026-12-01").load(conn, ["wallet_points"])
    assert book.reserve(0, "wallet_points", first=True) is None
    book.flush(conn)
    scopes = {r[0] for r in conn.execute("SELECT scope FROM cap_counters")}
    assert scopes == {"campaign:plain"}


def _grant(
    conn: sqlite3.Connection,
    gid: int,
    campaign: str,
    customer: str,
    currency: str | None,
    value: int,
    state: str = "issued",
    at: float = DEC1_2330Z,
    run: int = 1,
) -> None:
    conn.execute(
        "INSERT INTO grants (id, campaign_id, run_id, customer_id, provider, value_minor,"
        " currency, state, day, created_at) VALUES (?, ?, ?, ?, 'wallet_points', ?, ?, ?,"
        " '2026-12-01', ?)",
        (gid, campaign, run, customer, value, currency, state, at),
    )


def test_counters_kept_without_currency_are_rebuilt_per_currency_from_the_grants(
    conn: sqlite3.Connection,
) -> None:
    conn.execute("PRAGMA foreign_keys = OFF")
    _grant(conn, 1, "eur", "a", "EUR", 500)
    _grant(conn, 2, "eur", "a", "EUR", 500, run=2)  # the same customer again: not a new one
    _grant(conn, 3, "eur", "b", "EUR", 500, state="failed")  # released: does not count
    _grant(conn, 4, "jpy", "a", "JPY", 700, at=DEC1_2330Z - 86400)
    _grant(conn, 5, "jpy", "c", "JPY", 300, state="reserved")  # reserved: counts
    _grant(conn, 6, "plain", "d", None, 0)  # no currency: nothing a budget counts
    conn.execute(
        "INSERT INTO cap_counters (scope, period, count, spend, customers) VALUES"
        " ('provider:wallet_points', 'lifetime', 5, 2500, 4),"
        " ('provider:wallet_points', '2026-12-02', 3, 1300, 2),"
        " ('provider:wallet_points', '2026-12-01', 1, 700, 1),"
        " ('campaign:eur', 'lifetime', 2, 1000, 1)"
    )
    assert migrate_currencyless_sync(conn, "Europe/Berlin") == 3
    rows = conn.execute("SELECT * FROM cap_counters ORDER BY scope, period").fetchall()
    assert rows == [
        ("campaign:eur", "lifetime", 2, 1000, 1, None, None, None),
        ("policy:wallet_points:EUR", "2026-12-02", 2, 1000, 1, None, None, None),
        ("policy:wallet_points:EUR", "lifetime", 2, 1000, 1, None, None, None),
        ("policy:wallet_points:JPY", "2026-12-01", 1, 700, 1, None, None, None),
        ("policy:wallet_points:JPY", "2026-12-02", 1, 300, 1, None, None, None),
        ("policy:wallet_points:JPY", "lifetime", 2, 1000, 2, None, None, None),
    ]
    # Once done, there is nothing left to do.
    assert migrate_currencyless_sync(conn, "Europe/Berlin") == 0
    assert conn.execute("SELECT * FROM cap_counters ORDER BY scope, period").fetchall() == rows


def test_campaign_spec_currency_reaches_the_cap_book() -> None:
    from promod.ledger.grants import GrantJob

    spec = load_spec(
        wallet_spec().replace('currency = "EUR"', 'currency = "JPY"').replace('"5.00"', '"500"'),
        "toml",
        providers={"wallet_points"},
    )
    job = GrantJob("winback", 1, spec, {}, provider_daily={"wallet_points": 1000})
    assert job.limits().currency == "JPY"
    assert job.limits().provider_daily == {"wallet_points": 1000}


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    attempts=st.lists(
        st.tuples(st.sampled_from(["EUR", "JPY", "KWD"]), st.integers(1, 700)), max_size=40
    ),
    limits=st.fixed_dictionaries({c: st.integers(0, 3000) for c in ("EUR", "JPY", "KWD")}),
)
def test_each_currency_spends_as_if_it_were_alone_and_never_past_its_budget(
    tmp_path_factory: pytest.TempPathFactory,
    attempts: list[tuple[str, int]],
    limits: dict[str, int],
) -> None:
    path = tmp_path_factory.getbasetemp() / "mixed-currencies.db"
    if not path.exists():

        async def create() -> None:
            db = await Database.open(path)
            await db.close()

        anyio.run(create)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DELETE FROM cap_counters")
    try:
        accepted: dict[str, list[int]] = {c: [] for c in limits}
        for currency, value in attempts:
            # One campaign per currency, one transaction per grant.
            book = CapBook(
                Limits(
                    currency.lower(),
                    currency=currency,
                    provider_lifetime={"wallet_points": limits[currency]},
                ),
                "2026-12-01",
                "2026-12-01",
            ).load(conn, ["wallet_points"])
            if book.reserve(value, "wallet_points", first=True) is None:
                book.flush(conn)
                accepted[currency].append(value)
        for currency, limit in limits.items():
            alone: list[int] = []
            for c, value in attempts:
                if c == currency and sum(alone) + value <= limit:
                    alone.append(value)
            assert accepted[currency] == alone
            row = conn.execute(
                "SELECT coalesce(sum(spend), 0) FROM cap_counters WHERE scope = ?"
                " AND period = 'lifetime'",
                (f"policy:wallet_points:{currency}",),
            ).fetchone()
            assert row[0] == sum(alone) <= limit
    finally:
        conn.close()
