"""CRM refresh in the store: the apply, suppressions kept out, the plain-record fast path.

Real SQLite files through ``Database.run`` (the seam), no daemon: each test stages
records as a refresh does, plans and applies them, and reads what segments and
campaigns read (``custom_lists``) on a connection of its own.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from promod.clock import ManualClock
from promod.config import CrmConfig
from promod.crm import store, sync
from promod.crm.connector import TemporaryCrmError
from promod.crm.csvdrop import _pages, _record
from promod.crm.records import CrmRecord, RecordError, _checked, _plain, parse_page, parse_record
from promod.store.database import Database
from promod.store.seam import SchemaMismatch, Transaction

pytestmark = pytest.mark.anyio

T0 = 1_790_000_000.0
CONSENT = "marketing_email"


def record(i: int, **changes: Any) -> CrmRecord:
    fields: dict[str, Any] = {
        "customer_id": f"c{i}",
        "email": f"c{i}@example.org",
        "timezone": None,
        "attributes": "{}",
        "entity_type": "contact",
        "entity_id": f"E{i}",
        "opt_in_id": f"oi-{i}",
        "opted_in_at": None,
        "description": "newsletter",
        "media_type": "email",
    }
    fields.update(changes)
    return CrmRecord(**fields)


def members(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT customer_id FROM custom_lists WHERE name = 'crm-main'")
        return {r[0] for r in rows}


async def refresh(db: Database, records: list[CrmRecord], *, now: float) -> dict[str, Any]:
    """Stage ``records`` in two transactions, then plan and apply in one."""
    run_id = await db.run(
        partial(
            store.begin_run,
            connector="main",
            list_name="crm-main",
            consent=CONSENT,
            trigger="manual",
            now=now,
        )
    )
    half = len(records) // 2
    for part in (records[:half], records[half:]):
        await db.run(partial(store.stage_records, run_id=run_id, records=part))

    def apply(tx: Transaction) -> dict[str, Any]:
        plan = store.plan_run(tx, run_id, "main", "crm-main", CONSENT)
        store.apply_run(tx, run_id, "main", "crm-main", CONSENT, now=now, plan=plan)
        run = store.get_run(tx, run_id)
        assert run is not None
        return run

    return await db.run(apply)


async def test_a_refresh_replaces_the_list_and_a_customer_given_twice_counts_by_the_last(
    db: Database,
) -> None:
    first = await refresh(db, [record(1), record(2), record(3)], now=T0)
    assert (first["state"], first["members"], first["added"]) == ("applied", 3, 3)
    again = [record(2), record(4, email="old@example.org"), record(3), record(4)]
    run = await refresh(db, again, now=T0 + 86400)
    assert members(db.path) == {"c2", "c3", "c4"}
    assert (run["members"], run["added"], run["removed"]) == (3, 1, 1)
    with sqlite3.connect(db.path) as conn:
        assert conn.execute("SELECT email FROM customers WHERE id = 'c4'").fetchone() == (
            "c4@example.org",
        )
        assert conn.execute("SELECT count(*) FROM crm_staged").fetchone() == (0,)
        granted = conn.execute(
            "SELECT count(*) FROM customer_consents WHERE consent = ? AND granted = 1",
            (CONSENT,),
        ).fetchone()
    assert granted == (4,)  # c1 left the list but keeps its consent


async def test_a_suppressed_address_stays_out_until_a_newer_opt_in_lifts_it(db: Database) -> None:
    await refresh(db, [record(1), record(2), record(3)], now=T0)
    await db.run(
        lambda tx: tx.execute(
            "INSERT INTO suppressions (address, reason, source, customer_id, created_at)"
            " VALUES ('c2@example.org', 'unsubscribed', 'unsubscribe', 'c2', :at),"
            " ('c3@example.org', 'bounced', 'smtp', 'c3', :at)",
            {"at": T0 + 100},
        )
    )
    run = await refresh(db, [record(1), record(2), record(3)], now=T0 + 86400)
    assert members(db.path) == {"c1"}
    assert (run["suppressed"], run["reconsented"]) == (2, 0)
    # A newer opt-in: another opt_in_id for c2, a later opted_in_at for c3.
    newer = [record(1), record(2, opt_in_id="oi-2b"), record(3, opted_in_at=T0 + 200)]
    run = await refresh(db, newer, now=T0 + 2 * 86400)
    assert members(db.path) == {"c1", "c2", "c3"}
    assert (run["suppressed"], run["reconsented"]) == (0, 2)
    with sqlite3.connect(db.path) as conn:
        assert conn.execute("SELECT count(*) FROM suppressions").fetchone() == (0,)


async def test_a_refresh_the_crm_did_not_change_rewrites_no_customer(db: Database) -> None:
    await refresh(db, [record(1), record(2)], now=T0)
    later = T0 + 86400
    await refresh(db, [record(1), record(2, email="new@example.org")], now=later)
    with sqlite3.connect(db.path) as conn:
        rows = dict(conn.execute("SELECT id, updated_at FROM customers").fetchall())
        seen = dict(conn.execute("SELECT customer_id, seen_at FROM crm_entities").fetchall())
    assert rows["c1"] == "2026-09-21T14:13:20Z" and rows["c2"] == "2026-09-22T14:13:20Z"
    assert seen == {"c1": T0, "c2": later}


async def test_a_failed_run_drops_only_its_own_staged_records(db: Database) -> None:
    runs = []
    for name in ("main", "other"):
        run_id = await db.run(
            partial(
                store.begin_run,
                connector=name,
                list_name=f"crm-{name}",
                consent=CONSENT,
                trigger="manual",
                now=T0,
            )
        )
        await db.run(partial(store.stage_records, run_id=run_id, records=[record(1), record(2)]))
        runs.append(run_id)
    await db.run(partial(store.finish_run, run_id=runs[0], state="failed", now=T0))

    def staged(run_id: int) -> Callable[[Transaction], int]:
        def count(tx: Transaction) -> int:
            table = f"crm_stage_{run_id}"
            return int(tx.fetch_value(f"SELECT count(*) FROM {table}", (), 0))

        return count

    with pytest.raises(SchemaMismatch, match="no such table"):
        await db.run(staged(runs[0]))
    assert await db.run(staged(runs[1])) == 2
    await db.run(partial(store.finish_run, run_id=runs[1], state="discarded", now=T0))
    with pytest.raises(SchemaMismatch, match="no such table"):
        await db.run(staged(runs[1]))


async def test_a_held_run_outlives_a_restart_and_applies_its_last_records(
    tmp_path: Path,
) -> None:
    path = tmp_path / "promod.db"
    db = await Database.open(path)
    await refresh(db, [record(i) for i in range(5)], now=T0)
    run_id = await db.run(
        partial(
            store.begin_run,
            connector="main",
            list_name="crm-main",
            consent=CONSENT,
            trigger="schedule",
            now=T0 + 60,
        )
    )
    batch = [record(0), record(9, email="first@example.org"), record(1), record(9)]
    await db.run(partial(store.stage_records, run_id=run_id, records=batch))

    def hold(tx: Transaction) -> dict[str, int]:
        plan = store.plan_run(tx, run_id, "main", "crm-main", CONSENT)
        store.keep_staged(tx, run_id)
        store.finish_run(tx, run_id, "held", now=T0 + 60, error="too big")
        return plan

    plan = await db.run(hold)
    assert (plan["members"], plan["added"], plan["removed"]) == (3, 1, 3)
    await db.close()  # the daemon stops; the temporary rows go with its session

    db = await Database.open(path)
    try:
        assert members(path) == {f"c{i}" for i in range(5)}
        applied = await db.run(
            partial(
                store.apply_run,
                run_id=run_id,
                connector="main",
                list_name="crm-main",
                consent=CONSENT,
                now=T0 + 120,
            )
        )
        assert (applied["members"], applied["added"], applied["removed"]) == (3, 1, 3)
        assert members(path) == {"c0", "c1", "c9"}
        email = await db.run(
            lambda tx: tx.fetch_value("SELECT email FROM customers WHERE id = 'c9'"),
            write=False,
        )
        assert email == "c9@example.org"
        assert await db.run(lambda tx: tx.fetch_value("SELECT count(*) FROM crm_staged")) == 0
    finally:
        await db.close()


# -- the fast path of plain records -----------------------------------------

BASE: dict[str, Any] = {
    "id": "c1",
    "email": "Ann@Example.org",
    "opt_in_id": "oi-1",
    "description": "newsletter",
    "media_type": "email",
    "entity_type": "lead",
    "entity_id": "00Q1",
}
ODD_VALUES: list[Any] = [
    None,
    "",
    " ",
    " x ",
    "x\n",
    "\x7f",
    "z\ud800",
    "a" * 129,
    "a" * 257,
    "Europe/Berlin",
    "Mars/Base",
    "not an address",
    "a@b.c",
    "marketing_email",
    "transactional",
    "sms",
    "2026-11-30T10:00:00Z",
    "2026-11-30T10:00:00",
    "1790000000",
    17,
    1.5,
    True,
    ["x"],
    {"tier": "gold"},
    {"bad name!": "x"},
    {"tier": 3},
    {},
]
KEYS = [*BASE, "timezone", "attributes", "consent", "opted_in_at", "segment"]


def outcome(check: Any, obj: Any) -> Any:
    try:
        return check(obj, CONSENT, "email")
    except RecordError as error:
        return ("refused", str(error))


def test_the_fast_path_accepts_only_what_the_full_check_accepts_and_alike() -> None:
    rng = random.Random(16)
    cases: list[dict[str, Any]] = [dict(BASE)]
    for key in KEYS:
        for value in ODD_VALUES:
            cases.append({**BASE, key: value})
    for _ in range(3000):
        case = dict(BASE)
        for key in rng.sample(KEYS, rng.randint(1, 3)):
            if rng.random() < 0.2:
                case.pop(key, None)
            else:
                case[key] = rng.choice(ODD_VALUES)
        cases.append(case)
    fast = 0
    for case in cases:
        quick = _plain(case, CONSENT, "email")
        full = outcome(_checked, case)
        if quick is not None:
            fast += 1
            assert quick == full, case
        assert outcome(parse_record_positional, case) == full, case
    assert fast > 100  # the fast path is taken, not only ever declined


def parse_record_positional(obj: Any, consent: str, media_type: str) -> CrmRecord:
    return parse_record(obj, consent=consent, media_type=media_type)


def test_csv_rows_without_attribute_columns_read_as_the_general_reader_reads_them(
    tmp_path: Path,
) -> None:
    path = tmp_path / "recipients.csv"
    header = ["id", "email", "opt_in_id", "media_type", "entity_type", "entity_id", "note"]
    rows = [
        ["c1", "c1@example.org", "oi-1", "email", "contact", "E1", "x"],
        ["c2", "", "oi-2", "email", "", "E2", ""],
        ["c3", "c3@example.org", "oi-3", "email", "lead"],
    ]
    path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n", encoding="utf-8")
    (page,) = list(_pages(path))
    assert page == [_record(header, r) for r in rows]
    assert page[1] == {"id": "c2", "opt_in_id": "oi-2", "media_type": "email", "entity_id": "E2"}
    assert "(row)" in page[2]


def test_a_page_keeps_its_valid_records_and_numbers_the_refused_ones() -> None:
    page = [BASE, {**BASE, "consent": "transactional"}, {**BASE, "id": "c2"}, "not a record"]
    valid, refused = parse_page(page, consent=CONSENT, media_type="email", first=11)
    assert [r.customer_id for r in valid] == ["c1", "c2"]
    assert [r["record"] for r in refused] == [12, 14]
    assert refused[0]["message"].startswith("consent: consent 'transactional'")


class PartsCrm:
    """A connector that takes suppression parts until it is told to fail."""

    name = "main"

    def __init__(self, records: list[dict[str, Any]], fail_at: int | None = None) -> None:
        self.records, self.fail_at, self.parts = records, fail_at, []  # type: ignore[var-annotated]

    async def fetch(self) -> Any:
        yield self.records

    async def export_suppressions(self, records: Any) -> None:
        if len(self.parts) == self.fail_at:
            raise TemporaryCrmError("the CRM went away")
        self.parts.append([r.email for r in records])

    async def export_responses(self, records: Any, *, day: str) -> None:
        return None

    async def close(self) -> None:
        return None


async def test_suppressions_go_out_in_parts_and_each_part_taken_stays_sent(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = SimpleNamespace(db=db, clock=ManualClock(T0))
    cfg = CrmConfig(name="main", connector="test", consent=CONSENT, list="crm-main", max_change="1")
    rows = [{**BASE, "id": f"c{i}", "email": f"c{i}@example.org"} for i in range(5)]
    assert (await sync.refresh(app, cfg, PartsCrm(rows), trigger="manual"))["state"] == "applied"
    await db.run(
        lambda tx: tx.executemany(
            "INSERT INTO suppressions (address, reason, source, customer_id, created_at)"
            " VALUES (?, 'bounced', 'smtp', ?, ?)",
            [(f"c{i}@example.org", f"c{i}", T0 + i) for i in range(5)],
        )
    )
    monkeypatch.setattr(sync, "EXPORT_BATCH", 2)
    failing = PartsCrm(rows, fail_at=1)
    run = await sync.refresh(app, cfg, failing, trigger="manual")
    assert run["state"] == "failed" and "went away" in run["error"]
    assert failing.parts == [["c0@example.org", "c1@example.org"]]
    working = PartsCrm(rows)
    run = await sync.refresh(app, cfg, working, trigger="manual")
    assert run["state"] == "applied" and run["exported"] == 3
    assert working.parts == [["c2@example.org", "c3@example.org"], ["c4@example.org"]]
