"""The built-in ``csv`` connector: a drop directory shared with the CRM.

The CRM writes ``recipients.csv`` (a header row; the columns of a record, ``attr.NAME``
for attributes). promod writes ``bounces.csv``, ``unsubscriptions.csv`` and
``responses-YYYY-MM-DD.csv`` there, each written to a temporary file and renamed, so
the CRM never reads half a file; a file the CRM has not taken away yet is extended,
not overwritten. Files are created mode 0640::

    [crm.main]
    connector = "csv"
    dir = "/var/lib/promod/crm"        # or: path = "/var/lib/promod/crm/recipients.csv"
"""

from __future__ import annotations

import csv
import os
from collections.abc import AsyncIterator, Generator, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
from pydantic import Field, ValidationInfo

from promod.crm.connector import (
    PermanentCrmError,
    ResponseRecord,
    SuppressionRecord,
    TemporaryCrmError,
)
from promod.schema import ConfigPath, Model, Problems

__all__ = ["CsvConnector", "CsvConnectorType", "CsvOptions"]

PAGE = 10_000
SUPPRESSION_COLUMNS = (
    "reason",
    "email",
    "customer_id",
    "entity_type",
    "entity_id",
    "consent",
    "at",
)
RESPONSE_COLUMNS = ("response", "customer_id", "entity_type", "entity_id", "campaign_id", "at")
_FILES = {
    "bounced": "bounces.csv",
    "complained": "bounces.csv",
    "unsubscribed": "unsubscriptions.csv",
}


class CsvOptions(Model):
    """``[crm.NAME]`` options of the ``csv`` connector: ``dir``, or ``path`` to the CRM's file."""

    dir: ConfigPath | None = Field(default=None, description="the drop directory")
    path: ConfigPath | None = Field(default=None, description="the CRM's recipients file")
    recipients: str = Field(
        default="recipients.csv", pattern=r"^[^/\\]+$", description="the CRM's file in dir"
    )

    @classmethod
    def cross_checks(
        cls, raw: Mapping[str, Any], value: CsvOptions | None, info: ValidationInfo
    ) -> Problems:
        if "dir" not in raw and "path" not in raw:
            return [(("dir",), "required key is missing (or give path)")]
        if "dir" in raw and "path" in raw:
            return [(("path",), "give dir or path, not both")]
        return []


def _pages(path: Path) -> Generator[list[dict[str, Any]], None, None]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            return
        header = [h.strip() for h in header]
        width = len(header)
        # Without attribute columns a row maps straight onto its record.
        attributes = any(c.startswith("attr.") for c in header)
        page: list[dict[str, Any]] = []
        for row in reader:
            if attributes or len(row) != width:
                page.append(_record(header, row))
            elif "" in row:
                page.append({c: v for c, v in zip(header, row, strict=True) if v})
            else:
                page.append(dict(zip(header, row, strict=True)))
            if len(page) >= PAGE:
                yield page
                page = []
        if page:
            yield page


def _record(header: Sequence[str], row: Sequence[str]) -> dict[str, Any]:
    """One row as a record: empty cells absent, ``attr.NAME`` columns in ``attributes``."""
    record: dict[str, Any] = {}
    attributes: dict[str, Any] = {}
    if len(row) != len(header):
        record["(row)"] = f"{len(row)} fields, the header has {len(header)}"
    for column, value in zip(header, row, strict=False):
        if column.startswith("attr."):
            if value != "":
                attributes[column[5:]] = value
        elif value != "":
            record[column] = value
    if attributes:
        record["attributes"] = attributes
    return record


def _write_atomically(
    path: Path, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]
) -> None:
    """Extend ``path`` (or create it) by ``rows``: a temporary file renamed over it."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        if path.exists():
            with path.open(newline="", encoding="utf-8") as old:
                for row in csv.reader(old):
                    writer.writerow(row)
        else:
            writer.writerow(columns)
        for record in rows:
            writer.writerow(["" if record.get(c) is None else record[c] for c in columns])
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


class CsvConnector:
    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        self.name = name
        path = options.get("path")
        if path is not None:
            self.dir, self.recipients = Path(path).parent, Path(path).name
        else:
            self.dir, self.recipients = (
                Path(options["dir"]),
                str(options.get("recipients") or "recipients.csv"),
            )

    async def fetch(self) -> AsyncIterator[Sequence[Mapping[str, Any]]]:
        path = self.dir / self.recipients
        if not path.is_file():
            raise TemporaryCrmError(f"{path} is not there (yet)")
        pages = _pages(path)  # a generator: closed below
        try:
            while True:
                page = await anyio.to_thread.run_sync(next, pages, None)
                if page is None:
                    return
                yield page
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise PermanentCrmError(f"{path}: {exc}") from exc
        finally:
            pages.close()

    async def export_suppressions(self, records: Sequence[SuppressionRecord]) -> None:
        by_file: dict[str, list[dict[str, Any]]] = {}
        for record in records:
            by_file.setdefault(_FILES.get(record.reason, "bounces.csv"), []).append(
                record.to_dict()
            )
        for filename, rows in by_file.items():
            await self._write(filename, SUPPRESSION_COLUMNS, rows)

    async def export_responses(self, records: Sequence[ResponseRecord], *, day: str) -> None:
        await self._write(f"responses-{day}.csv", RESPONSE_COLUMNS, [r.to_dict() for r in records])

    async def _write(
        self, filename: str, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]
    ) -> None:
        path = self.dir / filename
        try:
            await anyio.to_thread.run_sync(_write_atomically, path, columns, rows)
        except OSError as exc:
            raise TemporaryCrmError(f"cannot write {path}: {exc.strerror or exc}") from exc

    async def close(self) -> None:
        return None


class CsvConnectorType:
    type = "csv"
    options_model = CsvOptions

    def create(self, name: str, options: Mapping[str, Any]) -> CsvConnector:
        return CsvConnector(name, options)
