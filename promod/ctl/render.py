"""Human output for ``promodctl``: aligned tables, key/value blocks and a progress bar.

Times are shown as ISO 8601 in the site's time zone (``[daemon] timezone``, which
promodctl learns from the daemon's ``ping``): a number under a key ending in ``_at``
(or ``paused_until``) is a Unix time and is shown that way in tables and key/value
blocks::

    set_site_timezone("Europe/Berlin")
    print(render_table([{"name": "ledger", "state": "running"}], ["name", "state"]))
    print(render_value(result))            # picks a table, key/values or plain text
    format_timestamp(1796160499.39)        # '2026-12-01T22:28:19+01:00'
    with ProgressBar(total=10_000, label="import") as bar:
        bar.advance(500)
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "ProgressBar",
    "format_cell",
    "format_timestamp",
    "is_time_key",
    "render_kv",
    "render_table",
    "render_value",
    "set_site_timezone",
]

_site_tz: dt.tzinfo = dt.UTC
_TIME_KEYS = frozenset({"paused_until"})


def set_site_timezone(name: str | None) -> None:
    """Show times in the IANA zone ``name`` (UTC for None or an unknown name)."""
    global _site_tz
    try:
        _site_tz = ZoneInfo(name) if name and name != "UTC" else dt.UTC
    except (ZoneInfoNotFoundError, ValueError):
        _site_tz = dt.UTC


def format_timestamp(value: float) -> str:
    """Unix time -> ISO 8601 in the site's zone: ``2026-11-20T19:03:00+01:00`` (UTC: ``...Z``)."""
    text = dt.datetime.fromtimestamp(value, _site_tz).isoformat(timespec="seconds")
    return text[:-6] + "Z" if text.endswith("+00:00") and _site_tz is dt.UTC else text


def is_time_key(key: object) -> bool:
    """Whether a number under ``key`` is a Unix time (``*_at``, ``paused_until``)."""
    return isinstance(key, str) and (key.endswith("_at") or key in _TIME_KEYS)


def _shown(key: object, value: Any) -> Any:
    if is_time_key(key) and isinstance(value, int | float) and not isinstance(value, bool):
        return format_timestamp(value)
    return value


def format_cell(value: Any) -> str:
    """One value as table text: ``-`` for null, ``yes``/``no``, compact JSON for containers."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value.replace("\n", " ")
    if isinstance(value, list | tuple) and all(isinstance(v, str | int) for v in value):
        return ", ".join(str(v) for v in value) if value else "-"
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    return str(value)


def _header(column: str) -> str:
    return column.replace("_", " ").upper()


def render_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    *,
    empty: str = "(none)",
) -> str:
    """Left-aligned columns under upper-case headers; ``columns`` defaults to every key seen."""
    if not rows:
        return empty
    if columns is None:
        seen: dict[str, None] = {}
        for row in rows:
            seen.update(dict.fromkeys(row))
        columns = list(seen)
    cells = [[format_cell(_shown(column, row.get(column))) for column in columns] for row in rows]
    headers = [_header(column) for column in columns]
    widths = [max(len(headers[i]), *(len(line[i]) for line in cells)) for i in range(len(columns))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()

    return "\n".join([line(headers), *(line(values) for values in cells)])


def render_kv(mapping: Mapping[str, Any], *, indent: int = 0) -> str:
    """``key: value`` lines, keys aligned; nested mappings indented below their key."""
    if not mapping:
        return " " * indent + "(empty)"
    width = max(len(str(key)) for key in mapping)
    pad = " " * indent
    lines = []
    for key, value in mapping.items():
        if isinstance(value, Mapping) and value:
            lines.append(f"{pad}{key}:")
            lines.append(render_kv(value, indent=indent + 2))
        else:
            shown = format_cell(_shown(key, value))
            lines.append(f"{pad}{str(key) + ':':<{width + 1}} {shown}")
    return "\n".join(lines)


def render_value(value: Any) -> str:
    """Whatever a command returned, readably: list of objects -> table, object -> key/values."""
    if isinstance(value, list) and value and all(isinstance(item, Mapping) for item in value):
        return render_table(value)
    if isinstance(value, list):
        return "\n".join(format_cell(item) for item in value) if value else "(none)"
    if isinstance(value, Mapping):
        return render_kv(value)
    if value is None:
        return "ok"
    return format_cell(value)


class ProgressBar:
    """A one-line progress bar on stderr, drawn only when the stream is a terminal."""

    def __init__(
        self,
        total: int | None,
        label: str = "",
        *,
        stream: TextIO | None = None,
        width: int = 30,
        min_interval: float = 0.1,
    ) -> None:
        self.total = total
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.min_interval = min_interval
        self.done = 0
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_draw = 0.0
        self._drawn = False

    def __enter__(self) -> ProgressBar:
        self.draw(force=True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def advance(self, amount: int = 1) -> None:
        self.update(self.done + amount)

    def update(self, done: int, total: int | None = None) -> None:
        self.done = done
        if total is not None:
            self.total = total
        self.draw()

    def line(self) -> str:
        """The text drawn for the current state."""
        prefix = f"{self.label} " if self.label else ""
        if not self.total:
            return f"{prefix}{self.done}"
        fraction = min(max(self.done / self.total, 0.0), 1.0)
        filled = int(fraction * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        return f"{prefix}[{bar}] {self.done}/{self.total} {fraction * 100:3.0f}%"

    def draw(self, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < self.min_interval:
            return
        self._last_draw = now
        self.stream.write("\r\x1b[2K" + self.line())
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self.enabled and self._drawn:
            self.draw(force=True)
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
