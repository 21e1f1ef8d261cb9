"""``promodctl customers import|show`` and ``events import``: the client side of imports.

Reads the file lazily (JSON lines line by line, CSV through ``csv.DictReader``), sends
line-numbered chunks of at most 5,000 rows and well under the admin socket's 1 MiB line
limit, shows a progress bar (bytes read / file size) on a terminal, then commits. A
refused import prints every reported error as ``line N: message`` on stderr and exits 1;
nothing is written unless every row is valid::

    with AdminClient(socket_path) as client:
        summary = upload_file(client, "customers", Path("customers.csv"))
        # {"imported": 3, "created": 2, "updated": 1}
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TextIO

from promod.ctl.client import AdminClient, CommandError
from promod.ctl.render import ProgressBar, render_kv, render_table, render_value
from promod.ctl.tags import render_tag_reasons
from promod.ctl.usage import UsageError

if TYPE_CHECKING:
    from promod.ctl.main import CtlCommand

__all__ = [
    "CHUNK_BYTES",
    "CHUNK_ROWS",
    "EXTENSION_FORMATS",
    "MAX_ROW_BYTES",
    "format_for",
    "iter_csv_rows",
    "iter_jsonl_rows",
    "render_customer",
    "render_import_summary",
    "run_customers_import",
    "run_events_import",
    "upload_file",
]

CHUNK_ROWS = 5000
CHUNK_BYTES = 640 * 1024  # encoded rows per request; the socket takes lines up to 1 MiB
MAX_ROW_BYTES = 512 * 1024  # one encoded row; a longer line is reported as an error
EXTENSION_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}

# Keep in step with promod.customers.records.CSV_EXTRA_KEY (not imported: promodctl
# stays free of daemon-side modules).
_CSV_EXTRA_KEY = "(extra)"

Row = dict[str, Any]


def format_for(path: Path, given: str | None) -> str:
    """``--format`` if given, else by the file's extension (.csv, .jsonl/.ndjson/.json)."""
    if given:
        return given
    fmt = EXTENSION_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(
            f"{path}: cannot tell the format from the extension; use --format jsonl|csv"
        )
    return fmt


def _encoded_size(row: Row) -> int:
    return len(json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode())


def _too_long(line: int, size: int) -> Row:
    return {
        "line": line,
        "error": f"line too long to import ({size} bytes, limit {MAX_ROW_BYTES})",
    }


def _read_line(fh: IO[bytes], limit: int) -> tuple[bytes, int]:
    """The next line (at most ``limit`` bytes kept) and its whole length in bytes.

    A longer line is read on in pieces of ``limit`` bytes and dropped, so memory stays
    bounded by ``limit`` whatever the file holds.
    """
    raw = fh.readline(limit + 1)
    size = len(raw)
    if size <= limit or raw.endswith(b"\n"):
        return raw, size
    while True:
        piece = fh.readline(limit)
        size += len(piece)
        if not piece or piece.endswith(b"\n"):
            return b"", size


def iter_jsonl_rows(fh: IO[bytes]) -> Iterator[tuple[Row, int]]:
    """``({"line", "text"}, bytes read so far)`` per non-blank line; problems as error rows.

    A line longer than MAX_ROW_BYTES is never held in memory: it is skipped and reported.
    """
    position = 0
    number = 0
    while True:
        raw, size = _read_line(fh, MAX_ROW_BYTES)
        if size == 0:
            return
        number += 1
        position += size
        if size > MAX_ROW_BYTES and not raw:
            yield _too_long(number, size), position
            continue
        try:
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            yield {"line": number, "error": f"not UTF-8 text ({exc.reason})"}, position
            continue
        text = text.rstrip("\r\n")
        if not text.strip():
            continue
        yield {"line": number, "text": text}, position


class _LineTooLong(Exception):
    """A CSV line longer than MAX_ROW_BYTES (it was not kept in memory)."""


class _CsvLines:
    """The file's lines as text for ``csv``, each read with a bound on its length."""

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self.number = 0

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        raw, size = _read_line(self._fh, MAX_ROW_BYTES)
        if size == 0:
            raise StopIteration
        self.number += 1
        if size > MAX_ROW_BYTES:
            raise _LineTooLong(f"line too long to import ({size} bytes, limit {MAX_ROW_BYTES})")
        return raw.decode("utf-8-sig" if self.number == 1 else "utf-8")


def iter_csv_rows(fh: IO[bytes]) -> tuple[list[str], Iterator[tuple[Row, int]]]:
    """The header and an iterator of ``({"line", "row"}, bytes read so far)``.

    ``line`` is the reader's line number (the last physical line of a quoted multi-line
    record). A malformed record is reported as an error row and ends the reading.
    """
    lines = _CsvLines(fh)
    reader = csv.DictReader(lines, restkey=_CSV_EXTRA_KEY)
    try:
        header = list(reader.fieldnames or [])
    except (csv.Error, UnicodeDecodeError, _LineTooLong) as exc:
        raise ValueError(f"line 1: unreadable CSV header: {exc}") from None

    def rows() -> Iterator[tuple[Row, int]]:
        while True:
            try:
                record = next(reader)
            except StopIteration:
                return
            except _LineTooLong as exc:
                yield {"line": lines.number, "error": f"{exc}; reading stopped here"}, fh.tell()
                return
            except (csv.Error, UnicodeDecodeError) as exc:
                message = f"malformed CSV ({exc}); reading stopped here"
                yield {"line": reader.line_num, "error": message}, fh.tell()
                return
            yield {"line": reader.line_num, "row": record}, fh.tell()

    return header, rows()


def _chunks(rows: Iterator[tuple[Row, int]]) -> Iterator[tuple[list[Row], int]]:
    """Rows grouped under CHUNK_ROWS and CHUNK_BYTES; an over-long row becomes an error row."""
    chunk: list[Row] = []
    size = 0
    position = 0
    for row, position in rows:
        row_size = _encoded_size(row) + 1
        if row_size > MAX_ROW_BYTES:
            row = _too_long(row["line"], row_size)
            row_size = _encoded_size(row) + 1
        if chunk and (len(chunk) >= CHUNK_ROWS or size + row_size > CHUNK_BYTES):
            yield chunk, position
            chunk, size = [], 0
        chunk.append(row)
        size += row_size
    if chunk:
        yield chunk, position


def upload_file(
    client: AdminClient,
    kind: str,
    path: Path,
    fmt: str = "jsonl",
    *,
    progress: TextIO | None = None,
    begin: dict[str, Any] | None = None,
) -> Any:
    """Stream ``path`` as a ``kind`` import (customers/events/lists) and commit it.

    ``begin`` holds further arguments of ``KIND.import.begin`` (a list's name and mode).
    Formats ``jsonl`` and ``lines`` are sent line by line, ``csv`` row by row. Raises
    CommandError (details ``{"errors", "error_count"}`` when rows are invalid); an
    import interrupted on the way is aborted when the daemon is still reachable.
    """
    size = path.stat().st_size
    with path.open("rb") as fh:
        begin_args: dict[str, Any] = {**(begin or {}), "format": fmt}
        if fmt == "csv":
            try:
                header, rows = iter_csv_rows(fh)
            except ValueError as exc:
                raise CommandError(
                    "invalid_args",
                    f"{exc}; nothing imported",
                    {"errors": [{"line": 1, "message": str(exc)}], "error_count": 1},
                ) from None
            begin_args["columns"] = header
        else:
            rows = iter_jsonl_rows(fh)
        import_id = client.call(f"{kind}.import.begin", begin_args)["import_id"]
        try:
            with ProgressBar(total=size, label=f"{kind} import", stream=progress) as bar:
                for chunk, position in _chunks(rows):
                    client.call(f"{kind}.import.chunk", {"import_id": import_id, "rows": chunk})
                    bar.update(position)
        except BaseException:
            try:
                client.call(f"{kind}.import.abort", {"import_id": import_id})
            except Exception:  # noqa: S110 - the first failure is the one to report
                pass
            raise
    return client.call(f"{kind}.import.commit", {"import_id": import_id})


def print_import_errors(error: CommandError, stream: TextIO | None = None) -> None:
    """Every reported row error as ``line N: message``, and how many more there were."""
    out = stream if stream is not None else sys.stderr
    details = error.details or {}
    errors = details.get("errors")
    if not isinstance(errors, list):
        return
    for item in errors:
        if isinstance(item, dict):
            print(f"line {item.get('line')}: {item.get('message')}", file=out)
    count = details.get("error_count")
    if isinstance(count, int) and count > len(errors):
        print(f"... and {count - len(errors)} more invalid rows", file=out)


def _run_import(kind: str, ns: argparse.Namespace, client: AdminClient) -> Any:
    path = Path(ns.p_file)
    try:
        fmt = format_for(path, getattr(ns, "p_format", None))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    try:
        return upload_file(client, kind, path, fmt)
    except CommandError as exc:
        print_import_errors(exc)
        raise


def run_customers_import(command: CtlCommand, client: AdminClient, ns: argparse.Namespace) -> Any:
    """``promodctl customers import FILE [--format jsonl|csv]``."""
    return _run_import("customers", ns, client)


def run_events_import(command: CtlCommand, client: AdminClient, ns: argparse.Namespace) -> Any:
    """``promodctl events import FILE`` (JSON lines)."""
    return _run_import("events", ns, client)


def render_import_summary(result: Any) -> str:
    if isinstance(result, dict) and "created" in result:
        return (
            f"imported {result['imported']} customers "
            f"({result['created']} created, {result['updated']} updated)"
        )
    if isinstance(result, dict) and "skipped" in result:
        return (
            f"imported {result['imported']} events ({result['skipped']} skipped as already stored)"
        )
    return render_value(result)


def render_customer(result: Any) -> str:
    if not isinstance(result, dict):
        return render_value(result)
    shown = dict(result)
    consents = shown.pop("consents", None)
    attributes = shown.pop("attributes", None)
    rewards = shown.pop("rewards", None)
    wallet = shown.pop("wallet", None)
    reasons = shown.pop("tag_reasons", None)
    if isinstance(wallet, dict):
        shown["wallet points"] = wallet.get("points")
    text = render_kv(shown)
    if isinstance(attributes, dict):
        text += "\n\nattributes:\n" + render_kv(attributes, indent=2)
    if isinstance(consents, dict):
        lines = [
            f"  {name}: {'granted' if c.get('granted') else 'withdrawn'}"
            f" ({c.get('source')}, {c.get('updated_at')})"
            for name, c in consents.items()
            if isinstance(c, dict)
        ]
        text += "\n\nconsents:\n" + ("\n".join(lines) if lines else "  (none)")
    if reasons is not None:
        text += "\n\ntags, and why:\n" + render_tag_reasons(reasons)
    if isinstance(rewards, list):
        columns = ["grant", "campaign", "provider", "value", "state", "code"]
        text += "\n\nrewards:\n" + render_table(rewards, columns, empty="(none)")
    return text
