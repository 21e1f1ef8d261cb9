"""AuditLog over the real audit_log table: append, query, redaction, append-only."""

from __future__ import annotations

import datetime as dt
import sqlite3

import pytest

from promod.admin.audit import AuditLog, format_ts, parse_since
from promod.admin.registry import Caller, CommandError, Role
from promod.store.database import Database

ALICE = Caller(uid=1000, gid=1000, pid=42, user="alice", role=Role.OPERATOR)
NOBODY = Caller(uid=4242, gid=4242, pid=43, user="4242", role=None)


@pytest.mark.anyio
async def test_append_then_query_returns_identity_args_and_outcome(db: Database) -> None:
    audit = AuditLog(db)
    row_id = await audit.append(ALICE, "kill.engage", {"reason": "budget"}, "ok")
    await audit.append(NOBODY, "kill.engage", {}, "refused", "forbidden: needs operator")
    rows = await audit.query()
    assert [row["id"] for row in rows] == [row_id, row_id + 1]
    first, second = rows
    assert first["user"] == "alice" and first["role"] == "operator"
    assert (first["uid"], first["gid"], first["pid"]) == (1000, 1000, 42)
    assert first["args"] == {"reason": "budget"} and first["outcome"] == "ok"
    assert first["error"] is None
    assert second["role"] is None and second["outcome"] == "refused"
    assert second["error"] == "forbidden: needs operator"


@pytest.mark.anyio
async def test_query_limit_keeps_the_newest_rows_oldest_first(db: Database) -> None:
    audit = AuditLog(db)
    for n in range(5):
        await audit.append(ALICE, f"cmd.{n}", {}, "ok")
    rows = await audit.query(limit=2)
    assert [row["command"] for row in rows] == ["cmd.3", "cmd.4"]
    only = await audit.query(command="cmd.1")
    assert [row["command"] for row in only] == ["cmd.1"]
    with pytest.raises(CommandError):
        await audit.query(limit=0)


@pytest.mark.anyio
async def test_query_since_takes_iso_times_and_durations(db: Database) -> None:
    audit = AuditLog(db)
    now = dt.datetime.now(dt.UTC)
    await audit.append(ALICE, "old", {}, "ok", at=now - dt.timedelta(hours=3))
    await audit.append(ALICE, "new", {}, "ok", at=now - dt.timedelta(minutes=5))
    assert [r["command"] for r in await audit.query(since="1h")] == ["new"]
    assert [r["command"] for r in await audit.query(since="4h")] == ["old", "new"]
    since = (now - dt.timedelta(hours=2)).isoformat()
    assert [r["command"] for r in await audit.query(since=since)] == ["new"]
    with pytest.raises(CommandError) as info:
        await audit.query(since="yesterday-ish")
    assert info.value.code == "invalid_args"


@pytest.mark.anyio
async def test_secrets_are_redacted_and_huge_values_summarised(db: Database) -> None:
    audit = AuditLog(db)
    await audit.append(
        ALICE,
        "channel.set",
        {"token": "t0p", "smtp_password": "pw", "note": "x" * 5000, "ids": list(range(500))},
        "ok",
        secret=frozenset({"note"}),
    )
    (row,) = await audit.query()
    assert row["args"] == {
        "token": "<redacted>",
        "smtp_password": "<redacted>",
        "note": "<redacted>",
        "ids": "<500 items>",
    }
    raw = await db.fetchall("SELECT args FROM audit_log")
    assert "t0p" not in raw[0][0] and "pw" not in raw[0][0]


@pytest.mark.anyio
async def test_audit_rows_cannot_be_changed(db: Database) -> None:
    audit = AuditLog(db)
    await audit.append(ALICE, "kill.engage", {}, "ok")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        await db.execute("UPDATE audit_log SET outcome = 'refused'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        await db.execute("DELETE FROM audit_log")
    with pytest.raises(ValueError):
        await audit.append(ALICE, "kill.engage", {}, "maybe")


def test_timestamps_sort_as_text_and_naive_since_means_utc() -> None:
    early = format_ts(dt.datetime(2026, 1, 1, 9, 0, tzinfo=dt.UTC))
    late = format_ts(dt.datetime(2026, 1, 1, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))))
    assert early == "2026-01-01T09:00:00.000000Z"
    assert late < early  # 10:00+02:00 is 08:00Z
    assert parse_since("2026-01-01T09:00:00") == dt.datetime(2026, 1, 1, 9, tzinfo=dt.UTC)
    now = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
    assert parse_since("90m", now) == dt.datetime(2026, 1, 1, 10, 30, tzinfo=dt.UTC)
