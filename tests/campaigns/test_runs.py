"""Run planning: rank order, audience cut, due times per delivery, pilot slices."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest

from promod.campaigns.runs import next_local, pilot_size, plan_targets, run_seed
from promod.campaigns.segments import register_sql_functions
from promod.campaigns.spec import load_spec
from promod.store.database import Database
from tests.support.data import seed_customers, wallet_spec

DEC1 = datetime(2026, 12, 1, tzinfo=UTC).timestamp()


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    async def create() -> None:
        db = await Database.open(tmp_path / "p.db")
        await db.close()

    anyio.run(create)
    connection = sqlite3.connect(tmp_path / "p.db")
    register_sql_functions(connection)
    return connection


def _spec(**kwargs: str):  # type: ignore[no-untyped-def]
    return load_spec(wallet_spec(**kwargs), "toml", providers={"wallet_points"})


def test_audience_rank_orders_by_attribute_and_cuts_at_the_cap(conn, tmp_path: Path) -> None:
    conn.close()
    ltv = {f"c{i}": {"ltv": f"{i * 10}.50"} for i in range(10)}
    seed_customers(tmp_path / "p.db", list(ltv), attributes=ltv)
    conn = sqlite3.connect(tmp_path / "p.db")
    register_sql_functions(conn)
    spec = _spec(caps='audience = 3\naudience_rank = "attr:ltv desc"')
    plan = plan_targets(conn, spec.id, spec, now=DEC1, seed=1)
    assert plan.customer_ids[:3] == ["c9", "c8", "c7"]
    assert plan.status[:3] == ["pending"] * 3
    assert set(plan.reason[3:]) == {"audience_cap"}


def test_random_order_is_seeded_and_recorded(conn, tmp_path: Path) -> None:
    conn.close()
    seed_customers(tmp_path / "p.db", [f"c{i}" for i in range(50)])
    conn = sqlite3.connect(tmp_path / "p.db")
    register_sql_functions(conn)
    spec = _spec()
    seed = run_seed(spec.id, 1, 1)
    first = plan_targets(conn, spec.id, spec, now=DEC1, seed=seed).customer_ids
    again = plan_targets(conn, spec.id, spec, now=DEC1, seed=seed).customer_ids
    other = plan_targets(conn, spec.id, spec, now=DEC1, seed=run_seed(spec.id, 1, 2)).customer_ids
    assert first == again != other
    assert first != sorted(first)


def test_local_time_uses_each_customers_zone_or_the_campaigns(conn, tmp_path: Path) -> None:
    conn.close()
    zones = {"tokyo": "Asia/Tokyo", "ny": "America/New_York"}
    seed_customers(tmp_path / "p.db", ["tokyo", "ny", "nozone"], timezones=zones)
    conn = sqlite3.connect(tmp_path / "p.db")
    register_sql_functions(conn)
    spec = _spec(
        schedule='start = "now"\ndelivery = "local_time"\nlocal_time = "10:00"',
        timezone="Europe/Berlin",
    )
    plan = plan_targets(conn, spec.id, spec, now=DEC1, seed=1)
    due = dict(zip(plan.customer_ids, plan.due_at, strict=True))
    assert due["tokyo"] == datetime(2026, 12, 1, 1, tzinfo=UTC).timestamp()
    assert due["ny"] == datetime(2026, 12, 1, 15, tzinfo=UTC).timestamp()
    assert due["nozone"] == datetime(2026, 12, 1, 9, tzinfo=UTC).timestamp()


def test_best_time_is_the_hour_past_events_cluster_at(conn, tmp_path: Path) -> None:
    conn.close()
    seed_customers(tmp_path / "p.db", ["owl", "new"], timezone="UTC")
    conn = sqlite3.connect(tmp_path / "p.db")
    register_sql_functions(conn)
    nov = datetime(2026, 11, 10, tzinfo=UTC).timestamp()
    hours = [22, 22, 22, 7]
    conn.executemany(
        "INSERT INTO events (customer_id, name, ts) VALUES ('owl', 'login', ?)",
        [(int(nov + d * 86400 + h * 3600),) for d, h in enumerate(hours)],
    )
    spec = _spec(schedule='start = "now"\ndelivery = "best_time"\nlocal_time = "10:00"')
    plan = plan_targets(conn, spec.id, spec, now=DEC1, seed=1)
    due = dict(zip(plan.customer_ids, plan.due_at, strict=True))
    assert due["owl"] == datetime(2026, 12, 1, 22, tzinfo=UTC).timestamp()
    assert due["new"] == datetime(2026, 12, 1, 10, tzinfo=UTC).timestamp()  # no history


def test_best_time_is_the_hour_on_the_customers_own_clock_across_dst(conn, tmp_path: Path) -> None:
    conn.close()
    zones = {"berlin": "Europe/Berlin", "kolkata": "Asia/Kolkata"}
    seed_customers(tmp_path / "p.db", ["berlin", "kolkata", "nozone"], timezones=zones)
    conn = sqlite3.connect(tmp_path / "p.db")
    register_sql_functions(conn)

    def at(*args: int) -> int:
        return int(datetime(*args, tzinfo=UTC).timestamp())

    # Berlin evenings at 19:10 local: three in summer time (17:10 UTC, before the
    # clocks went back on 25 October), two in winter time (18:10 UTC); and two at
    # 18:10 local in winter (17:10 UTC). In UTC hours 17 wins; on the clock, 19 does.
    berlin = [at(2026, 10, d, 17, 10) for d in (20, 21, 22)]
    berlin += [at(2026, 11, d, 18, 10) for d in (2, 3)]
    berlin += [at(2026, 11, d, 17, 10) for d in (4, 5)]
    kolkata = [at(2026, 11, d, 13, 40) for d in (2, 3)]  # 19:10 IST (UTC+5:30)
    rows = [("berlin", ts) for ts in berlin] + [("kolkata", ts) for ts in kolkata]
    rows += [("nozone", ts) for ts in berlin]  # no zone of their own: the campaign's
    conn.executemany("INSERT INTO events (customer_id, name, ts) VALUES (?, 'login', ?)", rows)
    conn.commit()
    spec = _spec(
        schedule='start = "now"\ndelivery = "best_time"\nlocal_time = "10:00"',
        timezone="Europe/Berlin",
    )
    plan = plan_targets(conn, spec.id, spec, now=DEC1, seed=1)
    due = dict(zip(plan.customer_ids, plan.due_at, strict=True))
    assert due["berlin"] == at(2026, 12, 1, 18, 0)  # 19:00 CET
    assert due["nozone"] == at(2026, 12, 1, 18, 0)
    assert due["kolkata"] == at(2026, 12, 1, 13, 30)  # 19:00 IST
    # A run in summer time: 19:00 CEST is 17:00 UTC.
    june = at(2027, 6, 1, 0, 0)
    plan = plan_targets(conn, spec.id, spec, now=june, seed=1)
    due = dict(zip(plan.customer_ids, plan.due_at, strict=True))
    assert due["berlin"] == at(2027, 6, 1, 17, 0)


def test_pilot_holds_all_but_a_slice(conn, tmp_path: Path) -> None:
    conn.close()
    seed_customers(tmp_path / "p.db", [f"c{i}" for i in range(40)])
    conn = sqlite3.connect(tmp_path / "p.db")
    register_sql_functions(conn)
    spec = _spec()
    plan = plan_targets(conn, spec.id, spec, now=DEC1, seed=7, pilot="25%")
    assert plan.status.count("pending") == 10
    assert plan.status.count("held") == 30


@pytest.mark.parametrize(
    ("pilot", "total", "size"),
    [("10", 100, 10), ("5%", 100, 5), ("0.5%", 100, 1), ("500", 100, 100), ("1%", 0, 0)],
)
def test_pilot_size(pilot: str, total: int, size: int) -> None:
    assert pilot_size(pilot, total) == size


def test_next_local_crosses_dst_and_days() -> None:
    from datetime import time
    from zoneinfo import ZoneInfo

    berlin = ZoneInfo("Europe/Berlin")
    # 2026-03-29: clocks go forward in Berlin; 10:00 local is 08:00 UTC.
    start = datetime(2026, 3, 29, 9, 0, tzinfo=UTC).timestamp()
    assert (
        next_local(start, time(10, 0), berlin) == datetime(2026, 3, 30, 8, tzinfo=UTC).timestamp()
    )
