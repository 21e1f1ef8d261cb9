"""``codes import``: all-or-nothing loading of codes from a file, with line-numbered errors.

Two formats: one code a line (``lines``), or CSV (``csv``) with the columns
``code,expiry,value`` (expiry and value optional; a first row starting with
``code`` is a header). Expiry is an ISO-8601 time with a zone, or a date
(``2026-12-31``: the code is valid through that day, UTC); value is a decimal
string. The client streams line-numbered rows; they are validated and staged on
disk, and the commit refuses the whole file — reporting lines, never codes —
when any row is bad, repeated in the file or already in the pool's series::

    session = begin_import("XMAS25", "csv")
    errors = stage_rows(tx, session, [{"line": 1, "text": "ABC123,2026-12-31,5.00"}])
    result = commit_import(tx, session, now)       # {"pool", "imported", "available"}

The SQL is in :mod:`promod.codepool.store_imports`.
"""

from __future__ import annotations

import csv
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from promod.codepool.store import ensure_pool, note_replenished, pool_counts
from promod.codepool.store_imports import (
    discard_import,
    lines_in_series,
    load_import,
    repeated_lines,
    stage_import_rows,
)
from promod.store.seam import Transaction
from promod.units import parse_money

__all__ = [
    "FORMATS",
    "MAX_CHUNK_ROWS",
    "ImportRefused",
    "ImportSession",
    "abort_import",
    "begin_import",
    "commit_import",
    "drop_stale",
    "get_session",
    "parse_expiry",
    "parse_row",
    "stage_rows",
]

FORMATS = ("lines", "csv")
MAX_CHUNK_ROWS = 5000
MAX_REPORTED = 100
STALE_AFTER = 3600.0
_CODE = re.compile(r"[\x21-\x7e]{1,128}")  # printable ASCII, no spaces
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

Row = tuple[str, float | None, int | None]


class ImportRefused(Exception):
    """The import was refused; ``errors`` are ``{"line", "message"}`` (the first 100)."""

    def __init__(self, message: str, errors: list[dict[str, Any]], error_count: int) -> None:
        super().__init__(message)
        self.errors = errors
        self.error_count = error_count


@dataclass
class ImportSession:
    import_id: str
    pool: str
    format: str
    series: str | None = None
    max_uses: int = 1
    started: float = field(default_factory=time.monotonic)
    rows: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    error_count: int = 0
    header_seen: bool = False

    def error(self, line: int, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_REPORTED:
            self.errors.append({"line": line, "message": message})

    def status(self) -> dict[str, Any]:
        return {
            "import_id": self.import_id,
            "pool": self.pool,
            "rows": self.rows,
            "error_count": self.error_count,
            "errors": self.errors[:10],
        }


_SESSIONS: dict[str, ImportSession] = {}


def begin_import(
    pool: str, fmt: str, *, series: str | None = None, max_uses: int = 1
) -> ImportSession:
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    if max_uses < 1:
        raise ValueError("max_uses must be 1 or more")
    session = ImportSession(f"cimp_{uuid.uuid4().hex}", pool, fmt, series, max_uses)
    _SESSIONS[session.import_id] = session
    return session


def get_session(import_id: str) -> ImportSession | None:
    return _SESSIONS.get(import_id)


def stale_sessions() -> list[str]:
    """Imports left by a client that went away over an hour ago (removed from memory)."""
    cutoff = time.monotonic() - STALE_AFTER
    stale = [i for i, s in _SESSIONS.items() if s.started < cutoff]
    for import_id in stale:
        del _SESSIONS[import_id]
    return stale


def parse_expiry(text: str) -> float:
    """ISO-8601 time with a zone, or a date (valid through that day, UTC) -> epoch seconds."""
    text = text.strip()
    if _DATE.fullmatch(text):
        day = date.fromisoformat(text)
        return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() + 86400
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"expiry {text!r} is not an ISO-8601 time or date") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("expiry needs a zone (e.g. Z or +01:00)")
    return moment.timestamp()


def _fits(value: float) -> float:
    if value > datetime(9999, 1, 1, tzinfo=UTC).timestamp() - timedelta(days=2).total_seconds():
        raise ValueError("expiry is too far away")
    return value


def parse_row(text: str, fmt: str, *, first: bool) -> Row | None:
    """One row as ``(code, expires_at, value_minor)``; None for a CSV header; ValueError."""
    if fmt == "lines":
        code = text.strip()
        if not _CODE.fullmatch(code):
            raise ValueError("a code is 1 to 128 printable ASCII characters without spaces")
        return code, None, None
    fields = next(csv.reader([text]))
    if not fields:
        raise ValueError("empty row")
    if first and fields[0].strip().lower() == "code":
        return None
    if len(fields) > 3:
        raise ValueError(f"{len(fields)} columns; expected code, expiry, value")
    code = fields[0].strip()
    if not _CODE.fullmatch(code):
        raise ValueError("a code is 1 to 128 printable ASCII characters without spaces")
    expiry = fields[1].strip() if len(fields) > 1 else ""
    value = fields[2].strip() if len(fields) > 2 else ""
    expires_at = _fits(parse_expiry(expiry)) if expiry else None
    value_minor = None
    if value:
        try:
            value_minor = parse_money(value)
        except ValueError as exc:
            raise ValueError(f"value: {exc}") from None
    return code, expires_at, value_minor


def stage_rows(tx: Transaction, session: ImportSession, rows: list[dict[str, Any]]) -> int:
    """Validate and stage one chunk of ``{"line", "text"|"error"}``; returns rows staged."""
    staged: list[tuple[str, int, str, float | None, int | None]] = []
    for item in rows:
        line = item.get("line")
        if not isinstance(line, int) or isinstance(line, bool):
            raise ValueError("each row needs an integer line number")
        session.rows += 1
        if "error" in item:
            session.error(line, str(item["error"]))
            continue
        text = item.get("text")
        if not isinstance(text, str):
            session.error(line, "row has no text")
            continue
        try:
            parsed = parse_row(text, session.format, first=not session.header_seen)
        except ValueError as exc:
            session.error(line, str(exc))
            parsed = ("", None, None)
        session.header_seen = True
        if parsed is None:
            session.rows -= 1
            continue
        if parsed[0]:
            staged.append((session.import_id, line, *parsed))
    stage_import_rows(tx, staged)
    return len(staged)


def abort_import(tx: Transaction, session: ImportSession) -> None:
    _SESSIONS.pop(session.import_id, None)
    discard_import(tx, session.import_id)


def drop_stale(tx: Transaction, import_ids: list[str]) -> None:
    """Drop the staged rows of imports abandoned by their client."""
    for import_id in import_ids:
        discard_import(tx, import_id)


def commit_import(tx: Transaction, session: ImportSession, now: float) -> dict[str, Any]:
    """Write every staged code in this transaction, or raise ImportRefused (nothing written).

    After a refusal the caller drops the staged rows with :func:`abort_import` (the
    refusal rolls this transaction back).
    """
    _SESSIONS.pop(session.import_id, None)
    iid = session.import_id
    errors = list(session.errors)
    count = session.error_count
    pool = ensure_pool(tx, session.pool, now=now, series=session.series)
    for numbers in repeated_lines(tx, iid):
        for n in numbers[1:]:
            count += 1
            if len(errors) < MAX_REPORTED:
                errors.append(
                    {"line": n, "message": f"duplicate code (first on line {numbers[0]})"}
                )
    for line, other in lines_in_series(tx, iid, pool.series):
        count += 1
        if len(errors) < MAX_REPORTED:
            errors.append(
                {
                    "line": line,
                    "message": f"code already in series {pool.series!r} (pool {other})",
                }
            )
    if count:
        errors.sort(key=lambda e: int(e["line"]))
        raise ImportRefused(
            f"{count} invalid row(s); nothing imported", errors[:MAX_REPORTED], count
        )
    added = load_import(tx, pool, iid, max_uses=session.max_uses, now=now)
    note_replenished(tx, pool.id)
    available, _loaded = pool_counts(tx, pool.id)
    return {"pool": pool.name, "imported": added, "available": available}
