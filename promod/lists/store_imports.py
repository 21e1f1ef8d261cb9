"""List imports in the store: all-or-nothing, streamed (``promodctl lists import``).

``begin`` opens a staging version of the list (:mod:`promod.lists.store`); each
chunk of at most 5,000 line-numbered rows is checked and its ids are staged as that
version's members, so a big file never sits in memory and readers keep seeing the
old list. ``commit`` refuses the whole import when any row was bad (every kept
error by line, the staging version discarded) or applies it in one transaction,
replacing the list or adding to it::

    import_id = await begin_list_import(db, "vip-2026", "csv", mode="replace",
                                        columns=["id", "name"], now=now)
    await stage_list_chunk(db, import_id, [{"line": 2, "row": {"id": "c1", "name": "x"}}],
                           now=now)
    summary = await commit_list_import(db, import_id, now=now)

Rows: ``{"line", "text"}`` in format ``lines`` (the text is one id) and ``jsonl``
(a JSON object with an ``id``), ``{"line", "row"}`` in ``csv`` (an ``id`` column;
other columns are ignored), ``{"line", "error"}`` for a line the client could not
read. Blank lines are skipped by the client. Imports untouched for an hour are
discarded by the next ``begin``.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from promod.customers.records import RecordError, loads_record
from promod.lists.store import (
    MODES,
    ListError,
    Mode,
    StagedVersion,
    apply_version,
    begin_version,
    check_member,
    check_name,
    discard_version,
    stage_members,
)
from promod.store.database import Database
from promod.store.seam import TxLike, as_tx

__all__ = [
    "ABANDONED_AFTER",
    "FORMATS",
    "MAX_CHUNK_ROWS",
    "abort_list_import",
    "begin_list_import",
    "commit_list_import",
    "stage_list_chunk",
]

FORMATS = ("lines", "csv", "jsonl")
MAX_CHUNK_ROWS = 5000
MAX_REPORTED_ERRORS = 100
ABANDONED_AFTER = 3600.0
SOURCE = "import"

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _begin_sync(
    tx: TxLike,
    name: str,
    fmt: str,
    mode: Mode,
    columns: Sequence[str] | None,
    now: float,
) -> str:
    tx = as_tx(tx)
    check_name(name)
    if fmt not in FORMATS:
        raise ListError("invalid_args", f"format must be lines, csv or jsonl, not {fmt!r}")
    if mode not in MODES:
        raise ListError("invalid_args", f"mode must be replace or add, not {mode!r}")
    if fmt == "csv":
        if columns is None or not all(isinstance(c, str) for c in columns):
            raise ListError("invalid_args", "a csv import gives its header row as columns")
        if "id" not in columns:
            error = {"line": 1, "message": "the header has no id column"}
            raise ListError(
                "invalid_args",
                "line 1: the header has no id column; nothing imported",
                {"errors": [error], "error_count": 1},
            )
    elif columns is not None:
        raise ListError("invalid_args", "columns are only given for a csv import")
    for stale_id, list_id, version in tx.fetch_all(
        "SELECT import_id, list_id, version FROM list_imports WHERE touched_at < ?",
        (now - ABANDONED_AFTER,),
    ):
        tx.execute("DELETE FROM list_imports WHERE import_id = ?", (stale_id,))
        discard_version(tx, int(list_id), int(version))
    staged = begin_version(tx, name, source=SOURCE, now=now)
    import_id = "limp_" + secrets.token_hex(8)
    tx.execute(
        "INSERT INTO list_imports (import_id, list_id, version, mode, format, started_at,"
        " touched_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (import_id, staged.list_id, staged.version, mode, fmt, now, now),
    )
    return import_id


async def begin_list_import(
    db: Database,
    name: str,
    fmt: str,
    *,
    mode: Mode,
    now: float,
    columns: Sequence[str] | None = None,
) -> str:
    """Start importing into list ``name``; returns the import id."""
    return await db.run(
        partial(_begin_sync, name=name, fmt=fmt, mode=mode, columns=columns, now=now)
    )


def _session(tx: TxLike, import_id: Any) -> tuple[StagedVersion, Any]:
    tx = as_tx(tx)
    row = tx.fetch_one(
        "SELECT i.list_id, i.version, i.mode, i.format, i.rows, i.error_count, i.errors,"
        " l.name FROM list_imports i JOIN lists l ON l.id = i.list_id WHERE i.import_id = ?",
        (import_id,),
    )
    if row is None:
        raise ListError(
            "not_found",
            f"no list import {import_id!r} in progress (committed, aborted or abandoned?)",
        )
    return StagedVersion(list_id=int(row[0]), name=str(row[7]), version=int(row[1])), row


def _member_of(fmt: str, item: Mapping[str, Any], index: int) -> str:
    """The id a row gives; RecordError for a bad row, ListError for a malformed request."""
    if "error" in item:
        message = item["error"]
        raise RecordError(message if isinstance(message, str) else "unreadable line")
    if fmt == "csv":
        data = item.get("row")
        if not isinstance(data, Mapping):
            raise ListError("invalid_args", f"rows[{index}].row must be an object")
        value = data.get("id")
        if value is None:
            raise RecordError("the row has no id value")
    else:
        text = item.get("text")
        if not isinstance(text, str):
            raise ListError("invalid_args", f"rows[{index}].text must be a string")
        if fmt == "lines":
            value = text.strip()
        else:
            obj = loads_record(text)
            if "id" not in obj:
                raise RecordError("the object has no id")
            value = obj["id"]
    try:
        return check_member(value)
    except ValueError as exc:
        raise RecordError(str(exc)) from None


def _chunk_sync(tx: TxLike, import_id: str, rows: Sequence[Any], now: float) -> dict[str, Any]:
    tx = as_tx(tx)
    staged, state = _session(tx, import_id)
    fmt = str(state[3])
    ids: list[str] = []
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(rows):
        if not isinstance(item, Mapping):
            raise ListError("invalid_args", f"rows[{index}] must be an object")
        line = item.get("line")
        if not isinstance(line, int) or isinstance(line, bool) or line < 1:
            raise ListError("invalid_args", f"rows[{index}].line must be a positive integer")
        try:
            ids.append(_member_of(fmt, item, index))
        except RecordError as exc:
            errors.append({"line": line, "message": str(exc)})
    error_count = int(state[5]) + len(errors)
    kept: list[dict[str, Any]] = json.loads(state[6])
    kept.extend(errors[: max(0, MAX_REPORTED_ERRORS - len(kept))])
    if error_count == 0:
        stage_members(tx, staged, ids)
    total = int(state[4]) + len(rows)
    tx.execute(
        "UPDATE list_imports SET rows = ?, error_count = ?, errors = ?, touched_at = ?"
        " WHERE import_id = ?",
        (total, error_count, _dumps(kept), now, import_id),
    )
    return {
        "import_id": import_id,
        "rows": total,
        "valid": total - error_count,
        "error_count": error_count,
    }


async def stage_list_chunk(
    db: Database, import_id: str, rows: Sequence[Any], *, now: float
) -> dict[str, Any]:
    """Check and stage one chunk; returns the running counts."""
    if len(rows) > MAX_CHUNK_ROWS:
        raise ListError(
            "invalid_args", f"a chunk holds at most {MAX_CHUNK_ROWS} rows, got {len(rows)}"
        )
    return await db.run(partial(_chunk_sync, import_id=import_id, rows=rows, now=now))


def _end_sync(tx: TxLike, import_id: str, now: float, commit: bool) -> dict[str, Any]:
    tx = as_tx(tx)
    staged, state = _session(tx, import_id)
    tx.execute("DELETE FROM list_imports WHERE import_id = ?", (import_id,))
    error_count = int(state[5])
    if not commit or error_count:
        discard_version(tx, staged.list_id, staged.version)
        if not commit:
            return {"import_id": import_id, "aborted": True, "rows": int(state[4])}
        errors = sorted(json.loads(state[6]), key=lambda e: e["line"])
        first = errors[0] if errors else {"line": "?", "message": "?"}
        return {
            "refused": True,
            "message": f"{error_count} invalid row{'s' if error_count != 1 else ''}, first at"
            f" line {first['line']}: {first['message']}; nothing imported",
            "errors": errors,
            "error_count": error_count,
        }
    summary = apply_version(tx, staged, mode=str(state[2]), now=now)  # type: ignore[arg-type]
    return {"rows": int(state[4]), **summary}


async def commit_list_import(db: Database, import_id: str, *, now: float) -> dict[str, Any]:
    """Apply the import in one transaction, or refuse it (ListError with the errors by line)."""
    result = await db.run(partial(_end_sync, import_id=import_id, now=now, commit=True))
    if result.get("refused"):
        raise ListError(
            "invalid_args",
            result["message"],
            {"errors": result["errors"], "error_count": result["error_count"]},
        )
    return result


async def abort_list_import(db: Database, import_id: str, *, now: float) -> dict[str, Any]:
    """Discard an import in progress (the list stays as it was)."""
    return await db.run(partial(_end_sync, import_id=import_id, now=now, commit=False))
