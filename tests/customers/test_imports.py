"""Staged all-or-nothing imports against a real SQLite database."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from promod.admin.registry import CommandError
from promod.customers.imports import (
    MAX_REPORTED_ERRORS,
    abort_import,
    begin_import,
    commit_import,
    import_status,
    stage_chunk,
)
from promod.store.database import Database
from promod.surrogates import SURROGATE_MESSAGE
from tests.customers.conftest import T0


def jsonl(line: int, record: dict[str, Any]) -> dict[str, Any]:
    return {"line": line, "text": json.dumps(record)}


async def count(db: Database, table: str) -> int:
    row = await db.fetchone(f"SELECT count(*) FROM {table}")
    assert row is not None
    return int(row[0])


async def import_customers(db: Database, rows: list[dict[str, Any]], now: float = T0) -> Any:
    import_id = await begin_import(db, "customers", "jsonl", now=now)
    await stage_chunk(db, "customers", import_id, rows, now=now)
    return await commit_import(db, "customers", import_id, now=now)


@pytest.mark.anyio
async def test_bad_row_in_the_middle_refuses_the_whole_import_by_line(db: Database) -> None:
    import_id = await begin_import(db, "customers", "jsonl", now=T0)
    first = [jsonl(n, {"id": f"c{n}"}) for n in range(1, 4)]
    second = [
        jsonl(4, {"id": "c4"}),
        jsonl(5, {"id": "c5", "email": "broken"}),
        {"line": 7, "text": "{not json"},
        jsonl(8, {"id": "c8"}),
    ]
    assert (await stage_chunk(db, "customers", import_id, first, now=T0))["error_count"] == 0
    progress = await stage_chunk(db, "customers", import_id, second, now=T0)
    assert progress == {"import_id": import_id, "rows": 7, "valid": 5, "error_count": 2}
    with pytest.raises(CommandError) as info:
        await commit_import(db, "customers", import_id, now=T0)
    error = info.value
    assert error.code == "invalid_args"
    assert error.details is not None
    assert error.details["error_count"] == 2
    assert error.details["errors"][0] == {
        "line": 5,
        "message": "email: 'broken' is not an email address",
    }
    assert error.details["errors"][1]["line"] == 7
    assert error.details["errors"][1]["message"].startswith("invalid JSON")
    assert "line 5" in error.message
    for table in ("customers", "customer_tags", "import_staging", "imports"):
        assert await count(db, table) == 0


@pytest.mark.anyio
async def test_jsonl_import_writes_profile_tags_and_consents(db: Database) -> None:
    result = await import_customers(
        db,
        [
            {
                "line": 1,
                "text": '{"id": "c42", "email": "a@example.org", "timezone": "Europe/Berlin",'
                ' "attributes": {"country": "DE", "ltv": 100.10},'
                ' "tags": ["bonus_interest", "vip"],'
                ' "consents": {"marketing_email": true, "sms": false}}',
            },
            jsonl(3, {"id": "c43"}),
        ],
    )
    assert result == {"imported": 2, "created": 2, "updated": 0}
    row = await db.fetchone("SELECT * FROM customers WHERE id = 'c42'")
    assert row is not None
    assert (row["email"], row["timezone"]) == ("a@example.org", "Europe/Berlin")
    assert json.loads(row["attributes"]) == {"country": "DE", "ltv": "100.10"}
    assert row["created_at"] == row["updated_at"] == "2026-09-21T14:13:20Z"
    tags = await db.fetchall("SELECT tag FROM customer_tags WHERE customer_id = 'c42' ORDER BY 1")
    assert [t[0] for t in tags] == ["bonus_interest", "vip"]
    consents = await db.fetchall(
        "SELECT consent, granted, source FROM customer_consents ORDER BY consent"
    )
    assert [tuple(c) for c in consents] == [("marketing_email", 1, "import"), ("sms", 0, "import")]
    assert await count(db, "import_staging") == 0


@pytest.mark.anyio
async def test_csv_import_and_reimport_replaces_the_customer(db: Database) -> None:
    columns = ["id", "email", "tags", "consents", "attr.vip", "attr.ltv"]
    import_id = await begin_import(db, "customers", "csv", now=T0, columns=columns)
    rows = [
        {"line": 2, "row": dict(zip(columns, ["c1", "", "a;b", "email;sms", "true", "5.5"]))},
        {"line": 3, "row": dict(zip(columns, ["c2", "x@example.org", "", "", "", "7"]))},
    ]
    await stage_chunk(db, "customers", import_id, rows, now=T0)
    assert await commit_import(db, "customers", import_id, now=T0) == {
        "imported": 2,
        "created": 2,
        "updated": 0,
    }
    later = T0 + 60
    result = await import_customers(
        db,
        [
            jsonl(1, {"id": "c1", "tags": ["b", "c"], "consents": {"email": True}}),
            jsonl(2, {"id": "c3"}),
            jsonl(3, {"id": "c3", "tags": ["new"]}),
        ],
        now=later,
    )
    assert result == {"imported": 3, "created": 1, "updated": 2}
    c1 = await db.fetchone("SELECT * FROM customers WHERE id = 'c1'")
    assert c1 is not None
    assert json.loads(c1["attributes"]) == {}
    assert c1["created_at"] == "2026-09-21T14:13:20Z"
    assert c1["updated_at"] == "2026-09-21T14:14:20Z"
    tags = await db.fetchall("SELECT customer_id, tag FROM customer_tags ORDER BY 1, 2")
    assert [tuple(t) for t in tags] == [("c1", "b"), ("c1", "c"), ("c3", "new")]
    consents = await db.fetchall("SELECT consent, granted, updated_at FROM customer_consents")
    # sms is no longer listed: dropped; email unchanged: keeps the time it was granted
    assert [tuple(c) for c in consents] == [("email", 1, "2026-09-21T14:13:20Z")]
    c2 = await db.fetchone("SELECT attributes FROM customers WHERE id = 'c2'")
    assert c2 is not None and json.loads(c2[0]) == {"ltv": 7}


@pytest.mark.anyio
async def test_consent_withdrawal_is_recorded_with_its_time(db: Database) -> None:
    await import_customers(db, [jsonl(1, {"id": "c1", "consents": {"news": True}})])
    await import_customers(db, [jsonl(1, {"id": "c1", "consents": {"news": False}})], now=T0 + 3600)
    row = await db.fetchone("SELECT granted, updated_at FROM customer_consents")
    assert row is not None and tuple(row) == (0, "2026-09-21T15:13:20Z")


@pytest.mark.anyio
async def test_bad_csv_header_is_refused_at_begin_as_line_1(db: Database) -> None:
    with pytest.raises(CommandError) as info:
        await begin_import(db, "customers", "csv", now=T0, columns=["id", "phone"])
    assert info.value.details == {
        "errors": [
            {
                "line": 1,
                "message": "unknown column 'phone' (expected id, email, timezone, "
                "tags, consents or attr.NAME)",
            }
        ],
        "error_count": 1,
    }
    assert await count(db, "imports") == 0


@pytest.mark.anyio
async def test_csv_row_shape_errors_are_line_numbered(db: Database) -> None:
    import_id = await begin_import(db, "customers", "csv", now=T0, columns=["id", "email"])
    rows = [
        {"line": 2, "row": {"id": "c1", "email": None}},
        {"line": 3, "row": {"id": "c2", "email": "", "(extra)": ["x"]}},
        {"line": 5, "error": "malformed CSV"},
    ]
    await stage_chunk(db, "customers", import_id, rows, now=T0)
    status = await import_status(db, "customers", import_id)
    assert [(e["line"], e["message"]) for e in status["errors"]] == [
        (2, "the row has fewer fields than the header"),
        (3, "the row has more fields than the header"),
        (5, "malformed CSV"),
    ]


@pytest.mark.anyio
async def test_events_import_skips_ids_already_stored(db: Database) -> None:
    def event(line: int, event_id: str | None, amount: str = "1.00") -> dict[str, Any]:
        record: dict[str, Any] = {
            "customer_id": "c1",
            "name": "purchase",
            "ts": "2026-11-20T18:03:00Z",
            "properties": {"amount": amount},
        }
        if event_id is not None:
            record["id"] = event_id
        return jsonl(line, record)

    first = await begin_import(db, "events", "jsonl", now=T0)
    await stage_chunk(db, "events", first, [event(1, "e1"), event(2, None)], now=T0)
    assert await commit_import(db, "events", first, now=T0) == {"imported": 2, "skipped": 0}
    second = await begin_import(db, "events", "jsonl", now=T0)
    rows = [event(1, "e1", "9.99"), event(2, "e2"), event(3, "e2"), event(4, None)]
    await stage_chunk(db, "events", second, rows, now=T0)
    assert await commit_import(db, "events", second, now=T0) == {"imported": 2, "skipped": 2}
    stored = await db.fetchall("SELECT event_id, ts, properties FROM events ORDER BY seq")
    assert [tuple(r) for r in stored] == [
        ("e1", 1795197780, '{"amount":"1.00"}'),
        (None, 1795197780, '{"amount":"1.00"}'),
        ("e2", 1795197780, '{"amount":"1.00"}'),
        (None, 1795197780, '{"amount":"1.00"}'),
    ]


@pytest.mark.anyio
async def test_protocol_misuse_is_refused(db: Database) -> None:
    with pytest.raises(CommandError, match="format must be jsonl"):
        await begin_import(db, "events", "csv", now=T0)
    customers = await begin_import(db, "customers", "jsonl", now=T0)
    with pytest.raises(CommandError) as info:
        await stage_chunk(db, "events", customers, [jsonl(1, {"id": "c"})], now=T0)
    assert info.value.code == "not_found"
    with pytest.raises(CommandError, match="at most 5000 rows"):
        await stage_chunk(db, "customers", customers, [jsonl(1, {"id": "c"})] * 5001, now=T0)
    with pytest.raises(CommandError, match="line must be a positive integer"):
        await stage_chunk(db, "customers", customers, [{"line": 0, "text": "{}"}], now=T0)
    await stage_chunk(db, "customers", customers, [jsonl(1, {"id": "c"})], now=T0)
    with pytest.raises(CommandError) as info:
        await stage_chunk(db, "customers", customers, [jsonl(1, {"id": "c"})], now=T0)
    assert info.value.code == "conflict"
    assert (await abort_import(db, "customers", customers))["aborted"] is True
    with pytest.raises(CommandError) as info:
        await commit_import(db, "customers", customers, now=T0)
    assert info.value.code == "not_found"
    assert await count(db, "import_staging") == 0


@pytest.mark.anyio
async def test_abandoned_import_is_cleaned_by_the_next_begin_after_an_hour(db: Database) -> None:
    old = await begin_import(db, "customers", "jsonl", now=T0)
    await stage_chunk(db, "customers", old, [jsonl(1, {"id": "c1"})], now=T0 + 10)
    recent = await begin_import(db, "customers", "jsonl", now=T0 + 3000)
    await begin_import(db, "customers", "jsonl", now=T0 + 3605)
    assert await count(db, "imports") == 3
    await begin_import(db, "customers", "jsonl", now=T0 + 3611)
    assert await count(db, "import_staging") == 0
    with pytest.raises(CommandError):
        await import_status(db, "customers", old)
    assert (await import_status(db, "customers", recent))["rows"] == 0


@pytest.mark.anyio
async def test_first_100_errors_are_kept_and_all_are_counted(db: Database) -> None:
    import_id = await begin_import(db, "customers", "jsonl", now=T0)
    bad = [{"line": n, "text": "[]"} for n in range(1, 251)]
    await stage_chunk(db, "customers", import_id, bad[:200], now=T0)
    await stage_chunk(db, "customers", import_id, bad[200:], now=T0)
    with pytest.raises(CommandError) as info:
        await commit_import(db, "customers", import_id, now=T0)
    assert info.value.details is not None
    assert info.value.details["error_count"] == 250
    errors = info.value.details["errors"]
    assert len(errors) == MAX_REPORTED_ERRORS
    assert [e["line"] for e in errors] == list(range(1, 101))


@pytest.mark.anyio
async def test_100k_customers_import_sanity(db: Database) -> None:
    """Not a timed assertion: prints the rate as a sanity figure."""
    n = 100_000
    start = time.perf_counter()
    import_id = await begin_import(db, "customers", "jsonl", now=T0)
    for base in range(0, n, 5000):
        rows = [
            {"line": i + 1, "text": f'{{"id": "c{i}", "tags": ["t1"]}}'}
            for i in range(base, base + 5000)
        ]
        await stage_chunk(db, "customers", import_id, rows, now=T0)
    result = await commit_import(db, "customers", import_id, now=T0)
    elapsed = time.perf_counter() - start
    assert result == {"imported": n, "created": n, "updated": 0}
    assert await count(db, "customers") == n
    assert await count(db, "customer_tags") == n
    print(f"\n100k customers staged+committed in {elapsed:.2f}s: {n / elapsed:,.0f} rows/s")


@pytest.mark.anyio
async def test_lone_surrogate_in_a_line_refuses_the_import_by_line(db: Database) -> None:
    import_id = await begin_import(db, "customers", "jsonl", now=T0)
    rows = [
        jsonl(1, {"id": "c1"}),
        {"line": 2, "text": '{"id": "z\\ud800"}'},
        {"line": 3, "text": '{"id": "c3", "consents": null}'},
    ]
    progress = await stage_chunk(db, "customers", import_id, rows, now=T0)
    assert progress["error_count"] == 2
    with pytest.raises(CommandError) as info:
        await commit_import(db, "customers", import_id, now=T0)
    assert info.value.details is not None
    assert info.value.details["errors"] == [
        {"line": 2, "message": f"id: {SURROGATE_MESSAGE}"},
        {"line": 3, "message": "consents: must be an object of name: true|false, got null"},
    ]
    assert await count(db, "customers") == 0
