"""All-or-nothing streaming imports of customers and events (the daemon's side).

A client (``promodctl customers import FILE``) streams a file in chunks of at most
5,000 line-numbered rows; each row is validated as it arrives and valid ones are
staged on disk (table ``import_staging``), so a million rows never sit in memory.
Errors are counted, the first 100 kept with their line numbers. ``commit`` either
refuses the whole import (nothing written, every kept error reported) or moves the
staging rows into the real tables in ONE transaction::

    import_id = await begin_import(db, "customers", "csv", now=clock.now(),
                                   columns=["id", "email", "attr.ltv"])
    await stage_chunk(db, "customers", import_id,
                      [{"line": 2, "row": {"id": "c1", "email": "", "attr.ltv": "10.5"}}],
                      now=clock.now())
    summary = await commit_import(db, "customers", import_id, now=clock.now())
    # {"imported": 1, "created": 1, "updated": 0}

A row is ``{"line": N, "text": "<a JSON line>"}`` (jsonl), ``{"line": N, "row": {...}}``
(a ``csv.DictReader`` row) or ``{"line": N, "error": "..."}`` (a problem the client
found reading the file, e.g. a line too long to send). A customer imported again is
replaced: profile, attributes, tags and consents as given (consents it does not list
are dropped; a consent's ``updated_at`` only moves when its value changes). Events with
an ``id`` already stored (or repeated in the file) are skipped and counted. Imports
untouched for an hour are discarded by the next ``begin``.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeAlias

import anyio

from promod.admin.registry import CommandError
from promod.clock import utc_iso
from promod.customers.records import (
    RecordError,
    check_csv_columns,
    customer_from_csv_row,
    loads_record,
    parse_customer,
    parse_event,
)
from promod.customers.store_imports import (
    begin_sync,
    commit_customers_sync,
    commit_events_sync,
    discard_sync,
    load_sync,
    stage_sync,
)
from promod.store.database import Database
from promod.store.seam import Row, Transaction, UniqueViolation

__all__ = [
    "ABANDONED_AFTER",
    "FORMATS",
    "MAX_CHUNK_ROWS",
    "MAX_REPORTED_ERRORS",
    "ImportKind",
    "abort_import",
    "begin_import",
    "commit_import",
    "import_status",
    "stage_chunk",
]

ImportKind: TypeAlias = Literal["customers", "events"]

FORMATS: dict[str, tuple[str, ...]] = {"customers": ("jsonl", "csv"), "events": ("jsonl",)}
MAX_CHUNK_ROWS = 5000
MAX_REPORTED_ERRORS = 100
ABANDONED_AFTER = 3600.0  # seconds without a chunk
CONSENT_SOURCE = "import"

_Error: TypeAlias = dict[str, Any]  # {"line": int, "message": str}


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _new_import_id() -> str:
    return "imp_" + secrets.token_hex(8)


def _require(row: Row | None, kind: ImportKind, import_id: str) -> Row:
    if row is None or row[1] != kind:
        raise CommandError(
            "not_found",
            f"no {kind} import {import_id!r} in progress (committed, aborted or abandoned?)",
        )
    return row


async def _load(db: Database, kind: ImportKind, import_id: str) -> Row:
    """The ``imports`` row (import_id, kind, format, rows, staged, error_count, errors)."""
    return _require(await db.run(lambda tx: load_sync(tx, import_id), write=False), kind, import_id)


async def begin_import(
    db: Database,
    kind: ImportKind,
    fmt: str,
    *,
    now: float,
    columns: Sequence[str] | None = None,
) -> str:
    """Start an import of ``kind`` in ``fmt``; returns its id. Cleans abandoned imports.

    ``columns`` is the CSV header (checked here, reported as line 1 when wrong).
    """
    if fmt not in FORMATS[kind]:
        raise CommandError(
            "invalid_args",
            f"{kind} import: format must be {' or '.join(FORMATS[kind])}, not {fmt!r}",
        )
    if columns is not None:
        if fmt != "csv":
            raise CommandError("invalid_args", "columns are only given for a csv import")
        try:
            check_csv_columns(columns)
        except RecordError as exc:
            error = {"line": 1, "message": str(exc)}
            raise CommandError(
                "invalid_args",
                f"line 1: {exc}; nothing imported",
                {"errors": [error], "error_count": 1},
            ) from None
    import_id = _new_import_id()
    await db.run(
        lambda tx: begin_sync(
            tx, import_id, kind, fmt, now=int(now), abandoned_before=int(now - ABANDONED_AFTER)
        )
    )
    return import_id


def _line_of(item: Any, index: int) -> int:
    if not isinstance(item, Mapping):
        raise CommandError("invalid_args", f"rows[{index}] must be an object")
    line = item.get("line")
    if not isinstance(line, int) or isinstance(line, bool) or line < 1:
        raise CommandError("invalid_args", f"rows[{index}].line must be a positive integer")
    return line


def _validate_rows(
    kind: ImportKind, fmt: str, rows: Sequence[Any]
) -> tuple[list[tuple[int, str]], list[_Error]]:
    """(line, payload JSON) for valid rows and {"line", "message"} for invalid ones."""
    valid: list[tuple[int, str]] = []
    errors: list[_Error] = []
    for index, item in enumerate(rows):
        line = _line_of(item, index)
        try:
            if "error" in item:
                message = item["error"]
                raise RecordError(message if isinstance(message, str) else "unreadable line")
            if fmt == "csv":
                data = item.get("row")
                if not isinstance(data, Mapping):
                    raise CommandError("invalid_args", f"rows[{index}].row must be an object")
                record: Any = customer_from_csv_row(data)
            else:
                text = item.get("text")
                if not isinstance(text, str):
                    raise CommandError("invalid_args", f"rows[{index}].text must be a string")
                obj = loads_record(text)
                record = parse_customer(obj) if kind == "customers" else parse_event(obj)
        except RecordError as exc:
            errors.append({"line": line, "message": str(exc)})
        else:
            valid.append((line, _dumps(record.to_dict())))
    return valid, errors


async def stage_chunk(
    db: Database, kind: ImportKind, import_id: str, rows: Sequence[Any], *, now: float
) -> dict[str, Any]:
    """Validate and stage one chunk; returns the import's running counts.

    Once any row has failed, valid rows are no longer staged (the import cannot commit).
    """
    if len(rows) > MAX_CHUNK_ROWS:
        raise CommandError(
            "invalid_args", f"a chunk holds at most {MAX_CHUNK_ROWS} rows, got {len(rows)}"
        )
    state = await _load(db, kind, import_id)
    valid, errors = await anyio.to_thread.run_sync(_validate_rows, kind, state["format"], rows)

    def stage(tx: Transaction) -> tuple[int, int]:
        state = _require(load_sync(tx, import_id), kind, import_id)
        error_count = int(state["error_count"]) + len(errors)
        kept: list[_Error] = json.loads(state["errors"])
        kept.extend(errors[: max(0, MAX_REPORTED_ERRORS - len(kept))])
        staged = int(state["staged"])
        clean = error_count == 0
        if clean:
            staged += len(valid)
        total = int(state["rows"]) + len(rows)
        try:
            stage_sync(
                tx,
                import_id,
                valid if clean else [],
                drop_staged=not clean and int(state["error_count"]) == 0 and staged > 0,
                rows=total,
                staged=staged,
                error_count=error_count,
                errors=kept,
                now=int(now),
            )
        except UniqueViolation:
            raise CommandError(
                "conflict", "a line of this chunk was already received; nothing staged"
            ) from None
        return total, error_count

    total, error_count = await db.run(stage)
    return {
        "import_id": import_id,
        "rows": total,
        "valid": total - error_count,
        "error_count": error_count,
    }


async def import_status(db: Database, kind: ImportKind, import_id: str) -> dict[str, Any]:
    """Counts and the kept errors of an import in progress."""
    state = await _load(db, kind, import_id)
    return {
        "import_id": import_id,
        "format": state["format"],
        "rows": int(state["rows"]),
        "error_count": int(state["error_count"]),
        "errors": sorted(json.loads(state["errors"]), key=lambda e: e["line"]),
    }


async def abort_import(db: Database, kind: ImportKind, import_id: str) -> dict[str, Any]:
    """Discard an import in progress."""

    def abort(tx: Transaction) -> Row:
        state = _require(load_sync(tx, import_id), kind, import_id)
        discard_sync(tx, import_id)
        return state

    state = await db.run(abort)
    return {"import_id": import_id, "aborted": True, "rows": int(state["rows"])}


async def commit_import(
    db: Database, kind: ImportKind, import_id: str, *, now: float
) -> dict[str, Any]:
    """Write the whole import in one transaction, or refuse it with its line-numbered errors.

    Customers: ``{"imported", "created", "updated"}``; events: ``{"imported", "skipped"}``.
    A refusal is CommandError ``invalid_args`` with details ``{"errors", "error_count"}``.
    """
    stamp = utc_iso(now)

    def commit(tx: Transaction) -> tuple[dict[str, Any] | None, CommandError | None]:
        state = _require(load_sync(tx, import_id), kind, import_id)
        error_count = int(state["error_count"])
        if error_count:
            errors = sorted(json.loads(state["errors"]), key=lambda e: e["line"])
            discard_sync(tx, import_id)
            first = errors[0] if errors else {"line": "?", "message": "?"}
            return None, CommandError(
                "invalid_args",
                f"{error_count} invalid row{'s' if error_count != 1 else ''}, first at line "
                f"{first['line']}: {first['message']}; nothing imported",
                {"errors": errors, "error_count": error_count},
            )
        if kind == "customers":
            summary = commit_customers_sync(tx, import_id, stamp, CONSENT_SOURCE)
        else:
            summary = commit_events_sync(tx, import_id)
        discard_sync(tx, import_id)
        return summary, None

    summary, refused = await db.run(commit)
    if refused is not None:
        raise refused
    assert summary is not None
    return summary
