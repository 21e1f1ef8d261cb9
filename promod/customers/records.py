"""Customer and event records: validation and normalisation, no I/O.

Owns the one definition of what a valid customer or event is, shared by the admin
socket imports and the HTTP API. Input is JSON-shaped data (a dict from ``json.loads``,
or a CSV row); output is a frozen :class:`Customer` / :class:`Event` whose attribute and
property values never hold a float (JSON numbers with a fraction become exact decimal
strings), or a :class:`RecordError` naming the offending field::

    customer = parse_customer({"id": "c42", "tags": ["vip"], "consents": {"marketing_email": True}})
    event = parse_event(loads_record('{"customer_id": "c42", "name": "purchase",'
                                     ' "ts": "2026-11-20T18:03:00Z"}'))
    event.ts   # 1795197780
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from promod.surrogates import SURROGATE_MESSAGE, find_surrogate

__all__ = [
    "CSV_COLUMNS",
    "CSV_EXTRA_KEY",
    "MAX_ID_LENGTH",
    "Customer",
    "Event",
    "RecordError",
    "Scalar",
    "check_csv_columns",
    "customer_from_csv_row",
    "loads_record",
    "parse_customer",
    "parse_event",
]

Scalar: TypeAlias = str | int | bool | None

MAX_ID_LENGTH = 128
MAX_NAME_LENGTH = 128
MAX_EMAIL_LENGTH = 254
CSV_COLUMNS = ("id", "email", "timezone", "tags", "consents")
CSV_ATTR_PREFIX = "attr."
CSV_EXTRA_KEY = "(extra)"  # DictReader restkey for fields beyond the header
_INT64 = (-(2**63), 2**63 - 1)

_CUSTOMER_KEYS = frozenset({"id", "email", "timezone", "attributes", "tags", "consents"})
_EVENT_KEYS = frozenset({"id", "customer_id", "name", "ts", "properties"})
_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ATTR_NAME = re.compile(r"\w[\w.:-]{0,127}")
_CSV_INT = re.compile(r"-?(0|[1-9][0-9]*)")


class RecordError(ValueError):
    """A record is invalid; ``field`` is its key path (``attributes.ltv``) or None."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


@dataclass(frozen=True)
class Customer:
    """A customer profile as imported or pushed; ``consents`` maps name -> granted."""

    id: str
    email: str | None = None
    timezone: str | None = None
    attributes: dict[str, Scalar] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    consents: dict[str, bool] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The record in its JSON form (as the HTTP API and imports take it)."""
        return {
            "id": self.id,
            "email": self.email,
            "timezone": self.timezone,
            "attributes": dict(self.attributes),
            "tags": list(self.tags),
            "consents": dict(self.consents),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Customer:
        """Rebuild from :meth:`to_dict` output without validating again."""
        return cls(
            id=data["id"],
            email=data.get("email"),
            timezone=data.get("timezone"),
            attributes=dict(data.get("attributes") or {}),
            tags=tuple(data.get("tags") or ()),
            consents=dict(data.get("consents") or {}),
        )


@dataclass(frozen=True)
class Event:
    """A behaviour event; ``ts`` is unix seconds UTC, ``event_id`` optional and unique."""

    event_id: str | None
    customer_id: str
    name: str
    ts: int
    properties: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Stored form: like the input record, with ``ts`` as unix seconds."""
        return {
            "id": self.event_id,
            "customer_id": self.customer_id,
            "name": self.name,
            "ts": self.ts,
            "properties": dict(self.properties),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Event:
        """Rebuild from :meth:`to_dict` output without validating again."""
        return cls(
            event_id=data.get("id"),
            customer_id=data["customer_id"],
            name=data["name"],
            ts=int(data["ts"]),
            properties=dict(data.get("properties") or {}),
        )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_reject_constant)


def loads_record(text: str) -> dict[str, Any]:
    """Parse one JSON line into an object; fractions become Decimal (exact), NaN is refused.

    So is text holding a lone surrogate (``"\\ud800"``), named by its field path.
    """
    try:
        value = _DECODER.decode(text)
    except (ValueError, RecursionError) as exc:
        raise RecordError(f"invalid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise RecordError(f"expected a JSON object, got {_json_type(value)}")
    where = find_surrogate(value)
    if where is not None:
        raise RecordError(f"{where}: {SURROGATE_MESSAGE}")
    return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | Decimal):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _check_keys(obj: Any, allowed: frozenset[str], what: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise RecordError(f"a {what} must be a JSON object, got {_json_type(obj)}")
    for key in obj:
        if key not in allowed:
            raise RecordError(
                f"unknown key (expected {', '.join(sorted(allowed))})",
                key if isinstance(key, str) else repr(key),
            )
    return obj


def _identifier(value: Any, name: str, *, limit: int = MAX_ID_LENGTH) -> str:
    if not isinstance(value, str):
        raise RecordError(f"must be a string, got {_json_type(value)}", name)
    if not value:
        raise RecordError("must not be empty", name)
    if len(value) > limit:
        raise RecordError(f"longer than {limit} characters", name)
    if value != value.strip():
        raise RecordError("has leading or trailing whitespace", name)
    if _CONTROL.search(value):
        raise RecordError("contains control characters", name)
    return value


def _email(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RecordError(f"must be a string, got {_json_type(value)}", "email")
    if len(value) > MAX_EMAIL_LENGTH or _EMAIL.fullmatch(value) is None:
        raise RecordError(f"{value[:80]!r} is not an email address", "email")
    return value


@lru_cache(maxsize=1024)
def _known_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def _timezone(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RecordError(f"must be a string, got {_json_type(value)}", "timezone")
    if len(value) > 64 or _CONTROL.search(value) or not _known_zone(value):
        raise RecordError(f"{value[:80]!r} is not an IANA time zone", "timezone")
    return value


def _decimal_text(value: Decimal | float, path: str) -> str:
    number = value if isinstance(value, Decimal) else Decimal(repr(value))
    if not number.is_finite():
        raise RecordError("must be a finite number", path)
    return format(number, "f")


def _scalar(value: Any, path: str) -> Scalar:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        if _INT64[0] <= value <= _INT64[1]:
            return value
        return str(value)
    if isinstance(value, Decimal | float):
        return _decimal_text(value, path)
    raise RecordError(f"must be a string, number, boolean or null, got {_json_type(value)}", path)


def _json_value(value: Any, path: str, depth: int = 0) -> Any:
    if depth > 16:
        raise RecordError("nested too deeply", path)
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise RecordError("object keys must be strings", path)
            out[key] = _json_value(item, f"{path}.{key}", depth + 1)
        return out
    if isinstance(value, list):
        return [_json_value(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
    return _scalar(value, path)


def _attributes(value: Any) -> dict[str, Scalar]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RecordError(f"must be a JSON object, got {_json_type(value)}", "attributes")
    out: dict[str, Scalar] = {}
    for key, item in value.items():
        if not isinstance(key, str) or _ATTR_NAME.fullmatch(key) is None:
            raise RecordError(
                "attribute names are 1-128 letters, digits, '_', '.', ':' or '-'",
                f"attributes.{key}",
            )
        out[key] = _scalar(item, f"attributes.{key}")
    return out


def _names(values: Iterable[Any], path: str) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for i, item in enumerate(values):
        name = _identifier(item, f"{path}[{i}]", limit=MAX_NAME_LENGTH)
        if name not in seen:
            seen.add(name)
            out.append(name)
    return out


def _tags(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise RecordError(f"must be an array of strings, got {_json_type(value)}", "tags")
    return tuple(_names(value, "tags"))


def _consents(value: Any) -> dict[str, bool]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RecordError(
            f"must be an object of name: true|false, got {_json_type(value)}", "consents"
        )
    out: dict[str, bool] = {}
    for key, granted in value.items():
        name = _identifier(key, "consents", limit=MAX_NAME_LENGTH)
        if not isinstance(granted, bool):
            raise RecordError(
                f"must be true or false, got {_json_type(granted)}", f"consents.{key}"
            )
        out[name] = granted
    return out


def parse_customer(obj: Any) -> Customer:
    """Validate a customer record; raises :class:`RecordError`."""
    data = _check_keys(obj, _CUSTOMER_KEYS, "customer")
    if "id" not in data:
        raise RecordError("is required", "id")
    return Customer(
        id=_identifier(data["id"], "id"),
        email=_email(data.get("email")),
        timezone=_timezone(data.get("timezone")),
        attributes=_attributes(data.get("attributes")),
        tags=_tags(data.get("tags")),
        consents=_consents(data.get("consents")),
    )


def _timestamp(value: Any) -> int:
    if not isinstance(value, str):
        raise RecordError(
            f"must be an ISO-8601 time string with a zone, got {_json_type(value)}", "ts"
        )
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise RecordError(f"{value[:64]!r} is not an ISO-8601 time", "ts") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise RecordError(f"{value[:64]!r} has no zone (add 'Z' or an offset like +01:00)", "ts")
    return math.floor(moment.timestamp())


def parse_event(obj: Any) -> Event:
    """Validate an event record; raises :class:`RecordError`."""
    data = _check_keys(obj, _EVENT_KEYS, "event")
    for required in ("customer_id", "name", "ts"):
        if required not in data:
            raise RecordError("is required", required)
    event_id = data.get("id")
    properties = data.get("properties")
    if properties is None:
        properties = {}
    elif not isinstance(properties, dict):
        raise RecordError(f"must be a JSON object, got {_json_type(properties)}", "properties")
    return Event(
        event_id=None if event_id is None else _identifier(event_id, "id"),
        customer_id=_identifier(data["customer_id"], "customer_id"),
        name=_identifier(data["name"], "name", limit=MAX_NAME_LENGTH),
        ts=_timestamp(data["ts"]),
        properties=_json_value(properties, "properties"),
    )


def check_csv_columns(columns: Iterable[str | None]) -> list[str]:
    """Validate a CSV header; returns it as a list. Needs ``id``; ``attr.NAME`` for attributes."""
    header: list[str] = []
    seen: set[str] = set()
    for column in columns:
        if column is None or column == "":
            raise RecordError("empty column name in the header")
        header.append(column)
        if column in seen:
            raise RecordError(f"duplicate column {column!r}")
        seen.add(column)
        _check_column(column)
    if "id" not in seen:
        raise RecordError("the header has no 'id' column")
    return header


def _check_column(column: str) -> str | None:
    """The attribute name of an ``attr.NAME`` column, None for a fixed column."""
    if column in CSV_COLUMNS:
        return None
    if column.startswith(CSV_ATTR_PREFIX):
        name = column[len(CSV_ATTR_PREFIX) :]
        if _ATTR_NAME.fullmatch(name) is None:
            raise RecordError(
                "attribute names are 1-128 letters, digits, '_', '.', ':' or '-'", column
            )
        return name
    raise RecordError(
        f"unknown column {column[:80]!r} (expected {', '.join(CSV_COLUMNS)} or attr.NAME)"
    )


def _csv_attribute(text: str) -> Scalar:
    if text == "true":
        return True
    if text == "false":
        return False
    if _CSV_INT.fullmatch(text):
        number = int(text)
        if _INT64[0] <= number <= _INT64[1]:
            return number
    return text


def _split_names(text: str) -> list[str]:
    return [part.strip() for part in text.split(";") if part.strip()]


def customer_from_csv_row(row: Mapping[str | None, Any]) -> Customer:
    """A customer from a ``csv.DictReader`` row of a CSV import.

    ``tags`` and ``consents`` hold ``;``-separated names (listed consents are granted);
    ``attr.NAME`` cells become attributes: ``true``/``false`` -> bool, integers -> int,
    anything else (decimals included) a string; an empty cell sets nothing.
    """
    attributes: dict[str, Scalar] = {}
    fields: dict[str, str] = {}
    for column, value in row.items():
        if column is None or column == CSV_EXTRA_KEY:
            raise RecordError("the row has more fields than the header")
        if value is None:
            raise RecordError("the row has fewer fields than the header")
        if not isinstance(value, str):
            raise RecordError(f"must be a string, got {_json_type(value)}", column)
        attr = _check_column(column)
        if attr is None:
            fields[column] = value.strip()
        elif value != "":
            attributes[attr] = _csv_attribute(value)
    if "id" not in fields:
        raise RecordError("is required", "id")
    return Customer(
        id=_identifier(fields["id"], "id"),
        email=_email(fields.get("email")),
        timezone=_timezone(fields.get("timezone")),
        attributes=attributes,
        tags=tuple(_names(_split_names(fields.get("tags", "")), "tags")),
        consents={
            name: True for name in _names(_split_names(fields.get("consents", "")), "consents")
        },
    )
