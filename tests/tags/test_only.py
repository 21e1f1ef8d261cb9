"""``compile_segment(..., only=ids)``: the segment's answer for those customers only, equal
to the whole answer restricted to them, for every kind of event condition."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from promod.campaigns.segments import compile_segment, parse_segment, register_sql_functions
from promod.store.database import migrate_sync

AS_OF = 1_800_000_000
SEGMENTS: list[dict[str, Any]] = [
    {"event": "page_view", "within": "30d", "where": {"page": {"eq": "/bonus"}}},
    {"event": "purchase", "within": "30d", "lt": 1},
    {"event": "login", "within": "60d", "gte": 2},
    {"event": "purchase", "within": "90d", "sum": "amount", "gt": "10"},
    {"not": {"event": "purchase"}},
    {"any": [{"tag": "vip"}, {"all": [{"attr": "n", "gte": 3}, {"event": "login"}]}]},
]


@pytest.fixture(scope="module")
def conn(tmp_path_factory: pytest.TempPathFactory) -> sqlite3.Connection:
    path: Path = tmp_path_factory.mktemp("only") / "promod.db"
    migrate_sync(path)
    rng = random.Random(5)
    db = sqlite3.connect(path)
    register_sql_functions(db)
    ids = [f"c{i}" for i in range(60)]
    db.executemany(
        "INSERT INTO customers (id, attributes, created_at, updated_at) VALUES (?, ?, 'x', 'x')",
        [(c, json.dumps({"n": i % 5})) for i, c in enumerate(ids)],
    )
    db.executemany(
        "INSERT INTO customer_tags (tag, customer_id) VALUES ('vip', ?)", [(c,) for c in ids[::7]]
    )
    rows = []
    for _ in range(400):
        name = rng.choice(("page_view", "purchase", "login"))
        props = {"page": rng.choice(("/bonus", "/x"))} if name == "page_view" else {}
        if name == "purchase":
            props = {"amount": f"{rng.randint(0, 20)}.{rng.randint(0, 99):02d}"}
        ts = AS_OF - rng.randint(0, 120 * 86400)
        rows.append((rng.choice([*ids, "ghost"]), name, ts, json.dumps(props)))
    db.executemany(
        "INSERT INTO events (customer_id, name, ts, properties) VALUES (?, ?, ?, ?)", rows
    )
    db.commit()
    return db


@pytest.mark.parametrize("table", SEGMENTS, ids=[json.dumps(s)[:40] for s in SEGMENTS])
def test_only_gives_the_whole_answer_restricted(conn: sqlite3.Connection, table: Any) -> None:
    segment = parse_segment(table)
    sql, params = compile_segment(segment, as_of=AS_OF)
    everyone = {row[0] for row in conn.execute(sql, params)}
    assert everyone, "the data should select someone"
    for chosen in (["c1", "c2", "c3", "ghost"], [f"c{i}" for i in range(0, 60, 3)], []):
        sql, params = compile_segment(segment, as_of=AS_OF, only=chosen)
        found = {row[0] for row in conn.execute(sql, params)}
        assert found == everyone & set(chosen)
