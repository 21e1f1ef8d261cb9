"""AuditLog: the append-only record of admin commands (table ``audit_log``).

Every mutating command and every refusal (of read-only commands rate-limited, see
promod.admin.refusals) is appended with the caller's identity and the outcome (``ok`` /
``refused`` / ``error``); the table's triggers forbid UPDATE and DELETE. Secret arguments
are redacted and very large ones summarised::

    audit = AuditLog(db)
    await audit.append(caller, "kill.engage", {}, "ok")
    rows = await audit.query(since="1h", limit=50)
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from typing import Any, Protocol

from promod.admin.registry import Caller, CommandError
from promod.admin.store_audit import append_sync, query_sync
from promod.store.database import essential_writes

__all__ = ["OUTCOMES", "AuditLog", "format_ts", "parse_since", "redact_args"]

OUTCOMES = frozenset({"ok", "refused", "error"})

_SECRET_KEY = re.compile(r"token|secret|password|passwd|api_?key|^codes?$", re.IGNORECASE)
_MAX_STR = 1024  # longer strings are stored as "<N chars>"
_MAX_ITEMS = 100  # longer lists are stored as "<N items>"
_REDACTED = "<redacted>"


class _Database(Protocol):
    """The part of promod.store.database.Database used here."""

    async def run(self, fn: Any, *, write: bool = ..., essential: bool = ...) -> Any: ...


def format_ts(moment: dt.datetime) -> str:
    """UTC, fixed width, so that text order is time order: ``2026-11-20T18:03:00.000000Z``."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_since(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """An ISO 8601 time (naive means UTC) or a duration back from now (``"90m"``, ``"1h"``)."""
    now = now or dt.datetime.now(dt.UTC)
    value = text.strip()
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        pass
    else:
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
    from promod.units import parse_duration

    try:
        seconds = parse_duration(value)
    except ValueError:
        raise CommandError(
            "invalid_args",
            f"since: {text!r} is neither an ISO time nor a duration like '1h' or '30m'",
        ) from None
    return now - dt.timedelta(seconds=seconds)


def _clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > _MAX_STR:
        return f"<{len(value)} chars>"
    if isinstance(value, list | tuple):
        if len(value) > _MAX_ITEMS:
            return f"<{len(value)} items>"
        return [_clip(item) for item in value]
    if isinstance(value, Mapping):
        return redact_args(value)
    return value


def redact_args(args: Mapping[str, Any], secret: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Copy of ``args`` fit for the audit table: secret values redacted, huge values summarised."""
    clean: dict[str, Any] = {}
    for key, value in args.items():
        if key in secret or _SECRET_KEY.search(str(key)):
            clean[str(key)] = _REDACTED
        else:
            clean[str(key)] = _clip(value)
    return clean


class AuditLog:
    """Append and query the ``audit_log`` table of the daemon's database."""

    def __init__(self, db: _Database) -> None:
        self.db = db

    async def append(
        self,
        caller: Caller,
        command: str,
        args: Mapping[str, Any],
        outcome: str,
        error: str | None = None,
        *,
        secret: frozenset[str] = frozenset(),
        at: dt.datetime | None = None,
    ) -> int:
        """Write one row; returns its id. ``outcome`` is ok, refused or error."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {sorted(OUTCOMES)}, not {outcome!r}")
        ts = format_ts(at or dt.datetime.now(dt.UTC))
        args_json = json.dumps(redact_args(args, secret), sort_keys=True, default=str)
        role = caller.role.label if caller.role is not None else None
        # Essential: an operator's kill switch is audited on a full disk too.
        with essential_writes():
            return await self._insert(
                (
                    ts,
                    caller.uid,
                    caller.gid,
                    caller.pid,
                    caller.user,
                    role,
                    command,
                    args_json,
                    outcome,
                    error,
                )
            )

    async def _insert(self, row: tuple[Any, ...]) -> int:
        row_id: int = await self.db.run(lambda tx: append_sync(tx, row), essential=True)
        return row_id

    async def query(
        self,
        since: dt.datetime | str | None = None,
        limit: int = 100,
        *,
        command: str | None = None,
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` rows at or after ``since``, oldest first."""
        if limit < 1:
            raise CommandError("invalid_args", "limit must be at least 1")
        after = None
        if since is not None:
            after = format_ts(parse_since(since) if isinstance(since, str) else since)
        rows = await self.db.run(
            lambda tx: query_sync(tx, since=after, command=command, limit=limit), write=False
        )
        result = []
        for item in reversed(rows):
            try:
                item["args"] = json.loads(item["args"])
            except (TypeError, ValueError):
                pass
            result.append(item)
        return result
