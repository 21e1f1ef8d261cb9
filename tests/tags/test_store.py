"""The tag store on a real SQLite file: rule versions, evaluation (full and for the
customers of new events), sync and add modes, manual edits, history, simulate,
profile writes as a source, and the migration over an existing database."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from promod.campaigns.segments import register_sql_functions
from promod.customers.records import Customer
from promod.customers.store import upsert_customers_sync
from promod.store.database import MIGRATIONS_DIR, Database, migrate_sync
from promod.tags import store
from promod.tags.rules import load_rules

pytestmark = pytest.mark.anyio

T0 = 1_800_000_000.0
DAY = 86400.0

RULES = """
[rules.bonus]
tag = "bonus_interest"
segment = { event = "page_view", within = "30d", where = { page = { eq = "/bonus" } } }

[rules.buyer]
tag = "buyer"
mode = "add"
segment = { event = "purchase", within = "7d" }

[rules.vip]
tag = "vip_country"
segment = { attr = "country", eq = "DE" }
"""


@pytest.fixture
async def tdb(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "promod.db")
    await database.register_functions(register_sql_functions)
    try:
        yield database
    finally:
        await database.close()


def _customers(path: Path, ids: list[str], country: str = "FR") -> None:
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO customers (id, attributes, created_at, updated_at)"
            " VALUES (?, ?, 'x', 'x')",
            [(c, json.dumps({"country": country})) for c in ids],
        )


def _events(path: Path, rows: list[tuple[str, str, float, dict[str, Any]]]) -> None:
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO events (customer_id, name, ts, properties) VALUES (?, ?, ?, ?)",
            [(c, n, int(ts), json.dumps(p)) for c, n, ts, p in rows],
        )


def _tags(path: Path, tag: str) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {
            r[0]
            for r in conn.execute("SELECT customer_id FROM customer_tags WHERE tag = ?", (tag,))
        }


def _history(path: Path) -> list[tuple[str, str, str, str]]:
    with sqlite3.connect(path) as conn:
        return [
            tuple(r)
            for r in conn.execute(
                "SELECT customer_id, tag, change, source FROM tag_history ORDER BY id"
            )
        ]


async def _apply(db: Database, text: str, now: float = T0) -> dict[str, Any]:
    result: dict[str, Any] = await db.run(
        partial(store.apply_rules, rules=load_rules(text), now=now, by="alice")
    )
    return result


async def test_apply_keeps_versions_and_retires_rules_left_out(tdb: Database) -> None:
    first = await _apply(tdb, RULES)
    assert [r["name"] for r in first["created"]] == ["bonus", "buyer", "vip"]
    again = await _apply(tdb, RULES)
    assert again["created"] == again["updated"] == [] and len(again["unchanged"]) == 3
    changed = RULES.replace('within = "7d"', 'within = "14d"').split("[rules.vip]")[0]
    third = await _apply(tdb, changed)
    assert third["updated"] == [{"name": "buyer", "version": 2}]
    assert third["retired"] == [{"name": "vip", "version": 1}]
    versions = await tdb.run(partial(store.rule_versions, name="buyer"), write=False)
    assert [(v["version"], v["current"]) for v in versions] == [(1, False), (2, True)]
    assert versions[0]["rule"]["segment"]["within"] == "7d"
    assert versions[0]["applied_by"] == "alice"
    active = await tdb.run(store.active_rules, write=False)
    assert [(r.rule.name, r.version) for r in active] == [("bonus", 1), ("buyer", 2)]
    # A retired rule applied again comes back as a new version.
    fourth = await _apply(tdb, RULES)
    assert {"name": "vip", "version": 2} in fourth["created"]


async def test_a_full_check_tags_and_a_sync_rule_untags_when_the_window_expires(
    tdb: Database,
) -> None:
    _customers(tdb.path, ["a", "b", "c"])
    _events(
        tdb.path,
        [
            ("a", "page_view", T0 - DAY, {"page": "/bonus"}),
            ("b", "page_view", T0 - DAY, {"page": "/home"}),
            ("c", "purchase", T0 - DAY, {}),
        ],
    )
    await _apply(tdb, RULES)
    for name in ("bonus", "buyer"):
        await tdb.run(partial(store.check_rule, name=name, as_of=T0))
    assert _tags(tdb.path, "bonus_interest") == {"a"}
    assert _tags(tdb.path, "buyer") == {"c"}
    checked = {r.rule.name: r.checked_at for r in await tdb.run(store.active_rules, write=False)}
    assert checked == {"bonus": T0, "buyer": T0, "vip": None}

    # 30 days on, the page view is out of the window: the sync rule removes its tag;
    # the add rule keeps its tag although the purchase is out of its window too.
    later = T0 + 30 * DAY
    change = await tdb.run(partial(store.check_rule, name="bonus", as_of=later))
    assert change is not None and change.removed == ["a"]
    await tdb.run(partial(store.check_rule, name="buyer", as_of=later))
    assert _tags(tdb.path, "bonus_interest") == set()
    assert _tags(tdb.path, "buyer") == {"c"}
    assert _history(tdb.path) == [
        ("a", "bonus_interest", "added", "rule:bonus@1"),
        ("c", "buyer", "added", "rule:buyer@1"),
        ("a", "bonus_interest", "removed", "rule:bonus@1"),
    ]


async def test_a_sync_rule_leaves_tags_it_did_not_set(tdb: Database) -> None:
    _customers(tdb.path, ["a", "b"])
    await tdb.run(
        partial(
            store.add_tag,
            customer_id="b",
            tag="bonus_interest",
            source="operator:bob",
            reason="asked on the phone",
            now=T0,
        )
    )
    await _apply(tdb, RULES)
    change = await tdb.run(partial(store.check_rule, name="bonus", as_of=T0))
    assert change is not None and change.added == change.removed == []
    assert _tags(tdb.path, "bonus_interest") == {"b"}
    reasons = await tdb.run(partial(store.tag_reasons, customer_id="b"), write=False)
    assert reasons == [
        {
            "tag": "bonus_interest",
            "source": "operator:bob",
            "rule": None,
            "reason": "asked on the phone",
            "since": T0,
        }
    ]


async def test_new_events_evaluate_only_the_rules_reading_them_for_their_customers(
    tdb: Database,
) -> None:
    _customers(tdb.path, ["a", "b", "old"])
    # Before the cursor starts: a purchase of "old", which only a full check would see.
    _events(tdb.path, [("old", "purchase", T0 - 10, {})])
    first = await tdb.run(partial(store.process_events, as_of=T0))
    assert first["events"] == 0
    idle = tdb.changes
    await tdb.run(partial(store.process_events, as_of=T0))
    assert tdb.changes == idle  # nothing new, nothing written (the daemon can settle)
    await _apply(tdb, RULES)
    _events(
        tdb.path,
        [
            ("a", "page_view", T0 - 5, {"page": "/bonus"}),
            ("b", "page_view", T0 - 5, {"page": "/bonus"}),
            ("b", "login", T0 - 5, {}),
        ],
    )
    done = await tdb.run(partial(store.process_events, as_of=T0, limit=2))
    assert done["events"] == 2 and done["more"] is True
    assert done["rules"] == {"bonus": {"added": 2, "removed": 0}}
    done = await tdb.run(partial(store.process_events, as_of=T0, limit=2))
    assert done["events"] == 1 and done["more"] is False and done["rules"] == {}
    assert _tags(tdb.path, "bonus_interest") == {"a", "b"}
    # The purchase rule was not evaluated: "old" bought, but no new purchase came.
    assert _tags(tdb.path, "buyer") == set()
    _events(tdb.path, [("a", "purchase", T0 - 1, {})])
    done = await tdb.run(partial(store.process_events, as_of=T0))
    assert done["rules"] == {"buyer": {"added": 1, "removed": 0}}
    assert _tags(tdb.path, "buyer") == {"a"}
    # Nothing new: nothing done.
    assert (await tdb.run(partial(store.process_events, as_of=T0)))["events"] == 0


async def test_an_event_can_make_a_sync_rule_stop_holding(tdb: Database) -> None:
    _customers(tdb.path, ["a"])
    await _apply(
        tdb,
        """
[rules.quiet]
tag = "no_purchase_30d"
segment = { event = "purchase", within = "30d", lt = 1 }
""",
    )
    await tdb.run(partial(store.check_rule, name="quiet", as_of=T0))
    assert _tags(tdb.path, "no_purchase_30d") == {"a"}
    await tdb.run(partial(store.process_events, as_of=T0))
    _events(tdb.path, [("a", "purchase", T0, {})])
    done = await tdb.run(partial(store.process_events, as_of=T0))
    assert done["rules"] == {"quiet": {"added": 0, "removed": 1}}
    assert _tags(tdb.path, "no_purchase_30d") == set()


async def test_simulate_counts_and_writes_nothing(tdb: Database) -> None:
    _customers(tdb.path, ["a", "b"], country="DE")
    _customers(tdb.path, ["c"], country="FR")
    await _apply(tdb, RULES)
    await tdb.run(partial(store.check_rule, name="vip", as_of=T0))
    before = tdb.changes
    proposal = load_rules(
        """
[rules.vip]
tag = "vip_country"
segment = { attr = "country", in = ["FR"] }
"""
    )
    found = await tdb.run(partial(store.simulate, rules=proposal, as_of=T0), write=False)
    assert found == [
        {
            "name": "vip",
            "tag": "vip_country",
            "mode": "sync",
            "matching": 1,
            "would_add": 1,
            "would_remove": 2,
            "examples_add": ["c"],
            "examples_remove": ["a", "b"],
        }
    ]
    assert tdb.changes == before
    assert _tags(tdb.path, "vip_country") == {"a", "b"}


async def test_manual_edits_need_a_customer_and_record_history(tdb: Database) -> None:
    _customers(tdb.path, ["a"])
    edit = partial(store.add_tag, tag="x", source="operator:bob", reason="r", now=T0)
    with pytest.raises(store.TagError) as caught:
        await tdb.run(partial(edit, customer_id="nobody"))
    assert caught.value.code == "not_found"
    assert await tdb.run(partial(edit, customer_id="a")) is True
    assert await tdb.run(partial(edit, customer_id="a")) is False
    remove = partial(store.remove_tag, tag="x", source="api:site", reason=None, now=T0 + 1)
    assert await tdb.run(partial(remove, customer_id="a")) is True
    assert await tdb.run(partial(remove, customer_id="a")) is False
    rows = await tdb.run(partial(store.history, customer_id="a"), write=False)
    assert [(r["change"], r["source"], r["reason"]) for r in rows] == [
        ("removed", "api:site", None),
        ("added", "operator:bob", "r"),
    ]
    older = await tdb.run(partial(store.history, tag="x", before=rows[0]["id"]), write=False)
    assert [r["change"] for r in older] == ["added"]


async def test_a_profile_write_is_a_source_and_keeps_the_reasons_of_tags_that_stay(
    tdb: Database,
) -> None:
    def write(tags: tuple[str, ...], now: float) -> None:
        customer = Customer(id="a", tags=tags)
        tdb_path_conn = sqlite3.connect(tdb.path, isolation_level=None)
        try:
            tdb_path_conn.execute("BEGIN IMMEDIATE")
            upsert_customers_sync(tdb_path_conn, [customer], now=now, source="api")
            tdb_path_conn.execute("COMMIT")
        finally:
            tdb_path_conn.close()

    write(("keep", "drop"), T0)
    await tdb.run(
        partial(
            store.add_tag, customer_id="a", tag="manual", source="operator:bob", reason=None, now=T0
        )
    )
    write(("keep", "new"), T0 + 5)
    reasons = await tdb.run(partial(store.tag_reasons, customer_id="a"), write=False)
    assert [(r["tag"], r["source"], r["since"]) for r in reasons] == [
        ("keep", "api", T0),
        ("new", "api", T0 + 5),
    ]
    assert _history(tdb.path) == [
        ("a", "keep", "added", "api"),
        ("a", "drop", "added", "api"),
        ("a", "manual", "added", "operator:bob"),
        ("a", "new", "added", "api"),
        ("a", "drop", "removed", "api"),
        ("a", "manual", "removed", "api"),
    ]


async def test_list_and_show_a_tag(tdb: Database) -> None:
    _customers(tdb.path, ["a", "b"], country="DE")
    await _apply(tdb, RULES)
    await tdb.run(partial(store.check_rule, name="vip", as_of=T0))
    await tdb.run(
        partial(
            store.add_tag, customer_id="a", tag="other", source="operator:bob", reason=None, now=T0
        )
    )
    listed = await tdb.run(store.list_tags, write=False)
    by_tag = {row["tag"]: row for row in listed}
    assert by_tag["vip_country"]["customers"] == 2 and by_tag["vip_country"]["rule"] == "vip"
    assert by_tag["bonus_interest"]["customers"] == 0
    assert by_tag["other"]["rule"] is None
    shown = await tdb.run(partial(store.show_tag, tag="vip_country"), write=False)
    assert shown["by_source"] == {"rule:vip@1": 2}
    assert shown["rule"]["name"] == "vip" and shown["rule"]["versions"] == 1
    assert len(shown["recent"]) == 2
    with pytest.raises(store.TagError):
        await tdb.run(partial(store.show_tag, tag="never"), write=False)


def test_the_migration_keeps_the_tags_of_an_existing_database(tmp_path: Path) -> None:
    old = tmp_path / "migrations"
    old.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if int(path.name[:4]) < 12:
            shutil.copy(path, old / path.name)
    db = tmp_path / "promod.db"
    migrate_sync(db, old)
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO customers (id, created_at, updated_at) VALUES ('a', 'x', 'x')")
        conn.execute("INSERT INTO customer_tags (tag, customer_id) VALUES ('vip', 'a')")
    assert 12 in migrate_sync(db)
    with sqlite3.connect(db) as conn:
        assert conn.execute(
            "SELECT tag, customer_id, source, rule FROM customer_tags"
        ).fetchall() == [("vip", "a", None, None)]
        assert conn.execute("SELECT count(*) FROM tag_history").fetchone() == (0,)


async def test_a_rule_reading_a_tag_follows_another_rules_change_in_the_same_pass(
    tdb: Database,
) -> None:
    _customers(tdb.path, ["a", "b"])
    await _apply(
        tdb,
        """
[rules.interest]
tag = "bonus_interest"
segment = { event = "page_view", within = "30d" }

[rules.nudge]
tag = "nudge_deposit"
segment = { all = [{ tag = "bonus_interest" }, { not = { event = "deposit" } }] }
""",
    )
    await tdb.run(partial(store.process_events, as_of=T0))
    _events(tdb.path, [("a", "page_view", T0, {})])
    done = await tdb.run(partial(store.process_events, as_of=T0))
    assert done["rules"] == {
        "interest": {"added": 1, "removed": 0},
        "nudge": {"added": 1, "removed": 0},
    }
    assert _tags(tdb.path, "nudge_deposit") == {"a"}
    _events(tdb.path, [("a", "deposit", T0, {})])
    done = await tdb.run(partial(store.process_events, as_of=T0))
    assert done["rules"] == {"nudge": {"added": 0, "removed": 1}}
    assert _tags(tdb.path, "nudge_deposit") == set()


async def test_a_customer_import_is_a_source_of_tag_changes(tdb: Database) -> None:
    from promod.customers.imports import begin_import, commit_import, stage_chunk

    async def load(tags: list[str], now: float) -> None:
        import_id = await begin_import(tdb, "customers", "jsonl", now=now)
        text = json.dumps({"id": "a", "tags": tags})
        await stage_chunk(tdb, "customers", import_id, [{"line": 1, "text": text}], now=now)
        await commit_import(tdb, "customers", import_id, now=now)

    await load(["vip", "old"], T0)
    await load(["vip"], T0 + 60)
    assert _history(tdb.path) == [
        ("a", "vip", "added", "import"),
        ("a", "old", "added", "import"),
        ("a", "old", "removed", "import"),
    ]
    reasons = await tdb.run(partial(store.tag_reasons, customer_id="a"), write=False)
    assert [(r["tag"], r["source"], r["since"]) for r in reasons] == [("vip", "import", T0)]
