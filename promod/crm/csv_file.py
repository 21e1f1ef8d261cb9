"""The built-in ``csv`` CRM connector type: recipients read from a CSV file.

A ``[crm.NAME]`` with ``connector = "csv"`` names the file with ``path``
(relative to the config file's directory); the :class:`CsvOptions` model checks
it. The file has a header row with at least an ``id`` column (the customer id)::

    connector = CsvConnectorType().create("main", config.crm["main"].options)
    ids = connector.recipient_ids()
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field

from promod.schema import ConfigPath, Model

__all__ = ["CsvConnector", "CsvConnectorType", "CsvOptions"]


class CsvOptions(Model):
    """``[crm.NAME]`` options of ``connector = "csv"``."""

    path: ConfigPath = Field(description="the recipients file; a header row with an id column")


class CsvConnector:
    """One configured CSV source."""

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path

    def recipient_ids(self) -> list[str]:
        """The ``id`` column of every row, in file order, blanks skipped."""
        with self.path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or "id" not in reader.fieldnames:
                raise ValueError(f"{self.path}: the header row has no id column")
            return [row["id"].strip() for row in reader if (row.get("id") or "").strip()]


class CsvConnectorType:
    """Factory registered as CRM connector type ``csv``."""

    type = "csv"
    options_model = CsvOptions

    def create(self, name: str, options: Mapping[str, Any]) -> CsvConnector:
        return CsvConnector(name, Path(options["path"]))
