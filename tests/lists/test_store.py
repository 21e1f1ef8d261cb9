"""Versioned custom lists: atomic replacement, add, all-or-nothing imports, migration."""

from __future__ import annotations

import shutil
import sqlite3
from functools import partial
from pathlib import Path

import pytest

from promod.lists.imports import (
    ABANDONED_AFTER,
    abort_list_import,
    begin_list_import,
    commit_list_import,
    stage_list_chunk,
)
from promod.lists.store import (
    ListError,
    apply_version,
    begin_version,
    delete_list,
    set_members,
    show_list,
    stage_members,
)
from promod.store.database import MIGRATIONS_DIR, Database, migrate_sync

pytestmark = pytest.mark.anyio

T0 = 1_790_000_000.0


def members(path: Path, name: str) -> set[str]:
    """What segments and custom_list campaigns read, on a connection of its own."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT customer_id FROM custom_lists WHERE name = ?", (name,))
        return {r[0] for r in rows}


async def test_a_replacement_written_in_many_transactions_is_invisible_until_applied(
    db: Database,
) -> None:
    await db.run_sync(
        partial(set_members, name="vip", ids=["a", "b"], mode="replace", source="t", now=T0)
    )
    staged = await db.run_sync(partial(begin_version, name="vip", source="crm:main", now=T0))
    for chunk in (["c", "d"], ["e"], ["a"]):
        await db.run_sync(partial(stage_members, staged=staged, ids=chunk))
        assert members(db.path, "vip") == {"a", "b"}  # readers keep the old list
    summary = await db.run_sync(partial(apply_version, staged=staged, mode="replace", now=T0))
    assert members(db.path, "vip") == {"a", "c", "d", "e"}
    assert (summary["members"], summary["added"], summary["removed"]) == (4, 3, 1)
    assert summary["version"] == 2
    # The old version's members are gone, its counts stay in the history.
    left = await db.fetchone("SELECT count(*) FROM list_members")
    assert left is not None and left[0] == 4
    shown = await db.run_sync(partial(show_list, name="vip"), write=False)
    assert [(v["version"], v["state"]) for v in shown["versions"]] == [
        (2, "current"),
        (1, "retired"),
    ]
    assert shown["source"] == "crm:main"


async def test_add_merges_into_the_current_version_and_reports_ids_without_profile(
    db: Database,
) -> None:
    await db.execute(
        "INSERT INTO customers (id, created_at, updated_at) VALUES ('a', 'x', 'x'), ('b', 'x', 'x')"
    )
    first = await db.run_sync(
        partial(set_members, name="vip", ids=["a", "ghost"], mode="add", source="t", now=T0)
    )
    assert (first["members"], first["added"], first["without_profile_ids"]) == (2, 2, ["ghost"])
    again = await db.run_sync(
        partial(set_members, name="vip", ids=["b", "a", "b"], mode="add", source="t", now=T0)
    )
    assert (again["members"], again["added"], again["without_profile"]) == (3, 1, 0)
    assert again["version"] == first["version"] == 1
    assert members(db.path, "vip") == {"a", "b", "ghost"}
    shown = await db.run_sync(partial(show_list, name="vip"), write=False)
    assert (shown["members"], shown["without_profile"]) == (3, 1)


async def test_a_refused_import_changes_nothing_and_names_every_bad_line(db: Database) -> None:
    await db.run_sync(
        partial(set_members, name="vip", ids=["a"], mode="replace", source="t", now=T0)
    )
    import_id = await begin_list_import(db, "vip", "jsonl", mode="replace", now=T0)
    rows = [
        {"line": 1, "text": '{"id": "b"}'},
        {"line": 2, "text": '{"id": 5}'},
        {"line": 3, "text": "not json"},
        {"line": 4, "error": "not UTF-8 text"},
        {"line": 5, "text": '{"id": "c"}'},
    ]
    progress = await stage_list_chunk(db, import_id, rows, now=T0)
    assert progress["error_count"] == 3
    with pytest.raises(ListError) as refused:
        await commit_list_import(db, import_id, now=T0)
    assert [e["line"] for e in refused.value.details["errors"]] == [2, 3, 4]
    assert members(db.path, "vip") == {"a"}
    staging = await db.fetchone("SELECT count(*) FROM list_versions WHERE state = 'staging'")
    assert staging is not None and staging[0] == 0


async def test_csv_imports_need_an_id_column_and_ignore_the_others(db: Database) -> None:
    with pytest.raises(ListError) as refused:
        await begin_list_import(db, "vip", "csv", mode="replace", now=T0, columns=["email"])
    assert refused.value.details["errors"] == [
        {"line": 1, "message": "the header has no id column"}
    ]
    import_id = await begin_list_import(
        db, "vip", "csv", mode="replace", now=T0, columns=["id", "email"]
    )
    await stage_list_chunk(
        db,
        import_id,
        [{"line": 2, "row": {"id": "a", "email": "x"}}, {"line": 3, "row": {"id": "b"}}],
        now=T0,
    )
    summary = await commit_list_import(db, import_id, now=T0)
    assert summary["members"] == 2 and members(db.path, "vip") == {"a", "b"}


async def test_an_abandoned_import_leaves_the_list_whole_and_is_cleaned_up(db: Database) -> None:
    await db.run_sync(
        partial(set_members, name="vip", ids=["a"], mode="replace", source="t", now=T0)
    )
    lost = await begin_list_import(db, "vip", "lines", mode="replace", now=T0)
    await stage_list_chunk(db, lost, [{"line": 1, "text": "z"}], now=T0)
    # The writer is gone (killed); readers still see the whole old list.
    assert members(db.path, "vip") == {"a"}
    later = T0 + ABANDONED_AFTER + 1
    fresh = await begin_list_import(db, "vip", "lines", mode="add", now=later)
    with pytest.raises(ListError, match="no list import"):
        await commit_list_import(db, lost, now=later)
    rows = await db.fetchall("SELECT customer_id FROM list_members WHERE customer_id = 'z'")
    assert rows == []
    await abort_list_import(db, fresh, now=later)
    assert members(db.path, "vip") == {"a"}


async def test_a_list_first_created_by_a_refused_import_does_not_exist(db: Database) -> None:
    import_id = await begin_list_import(db, "new", "lines", mode="replace", now=T0)
    await stage_list_chunk(db, import_id, [{"line": 1, "text": "x" * 200}], now=T0)
    with pytest.raises(ListError):
        await commit_list_import(db, import_id, now=T0)
    with pytest.raises(ListError, match="no list"):
        await db.run_sync(partial(show_list, name="new"), write=False)


async def test_bad_names_and_modes_are_refused(db: Database) -> None:
    for name in ("", "a:b", "-x", "x" * 129, "a b"):
        with pytest.raises(ListError) as refused:
            await db.run_sync(
                partial(set_members, name=name, ids=[], mode="replace", source="t", now=T0)
            )
        assert refused.value.code == "invalid_args"
    with pytest.raises(ListError):
        await begin_list_import(db, "ok", "xml", mode="replace", now=T0)
    with pytest.raises(ListError):
        await db.run_sync(partial(delete_list, name="missing"))


async def test_a_campaign_that_uses_a_list_keeps_it_from_deletion(db: Database) -> None:
    await db.run_sync(
        partial(set_members, name="vip", ids=["a"], mode="replace", source="t", now=T0)
    )
    await db.execute(
        "INSERT INTO campaigns (id, version, state, spec, created_at, updated_at) VALUES"
        " ('seg', 1, 'scheduled', ?, 0, 0)",
        ('{"segment": {"all": [{"tag": "x"}, {"not": {"list": "vip"}}]}}',),
    )
    with pytest.raises(ListError) as refused:
        await db.run_sync(partial(delete_list, name="vip"))
    assert refused.value.details == {"used_by": ["seg"]}
    await db.execute("UPDATE campaigns SET state = 'completed'")
    deleted = await db.run_sync(partial(delete_list, name="vip"))
    assert deleted["members"] == 1 and members(db.path, "vip") == set()


def test_the_migration_keeps_what_the_old_list_table_held(tmp_path: Path) -> None:
    old = tmp_path / "migrations"
    old.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql"))[:6]:
        shutil.copy(path, old / path.name)
    db = tmp_path / "promod.db"
    migrate_sync(db, old)
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO custom_lists (name, customer_id) VALUES (?, ?)",
            [("vip", "a"), ("vip", "b"), ("beta", "a")],
        )
    assert 7 in migrate_sync(db)
    assert members(db, "vip") == {"a", "b"} and members(db, "beta") == {"a"}
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT name, version FROM lists ORDER BY name").fetchall() == [
            ("beta", 1),
            ("vip", 1),
        ]
