"""Customer and event records (docs/http-api.md, Records): pydantic models, no I/O.

Owns the one definition of what a valid customer or event is, shared by the admin
socket imports and the HTTP API, whose OpenAPI document is generated from these
models. Input is JSON-shaped data (a dict from :func:`loads_record`, or a CSV row);
output is a frozen :class:`Customer` / :class:`Event` whose attribute and property
values never hold a float (JSON numbers with a fraction become exact decimal
strings), or a :class:`RecordError` listing every offending field by its key path::

    customer = parse_customer({"id": "c42", "tags": ["vip"], "consents": {"marketing_email": True}})
    event = parse_event(loads_record('{"customer_id": "c42", "name": "purchase",'
                                     ' "ts": "2026-11-20T18:03:00Z"}'))
    event.ts   # 1795197780

Text is refused where it enters when it holds a lone surrogate (``"\\ud800"`` is valid
JSON but not UTF-8 text; see :mod:`promod.surrogates`), named by its key path.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Annotated, Any, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from promod.surrogates import SURROGATE_MESSAGE, find_surrogate, has_surrogate

__all__ = [
    "CSV_COLUMNS",
    "CSV_EXTRA_KEY",
    "ERROR_MESSAGES",
    "ID_PATTERN",
    "MAX_ID_LENGTH",
    "Customer",
    "CustomerFields",
    "Event",
    "Identifier",
    "Name",
    "RecordError",
    "Scalar",
    "Text",
    "check_csv_columns",
    "customer_from_csv_row",
    "field_errors",
    "loads_record",
    "loc_path",
    "parse_customer",
    "parse_event",
]

Scalar: TypeAlias = str | int | bool | None

MAX_ID_LENGTH = 128
MAX_NAME_LENGTH = 128
MAX_EMAIL_LENGTH = 254
MAX_DEPTH = 16
CSV_COLUMNS = ("id", "email", "timezone", "tags", "consents")
CSV_ATTR_PREFIX = "attr."
CSV_EXTRA_KEY = "(extra)"  # DictReader restkey for fields beyond the header
_INT64 = (-(2**63), 2**63 - 1)

# The JSON Schema patterns (ECMA-262 and Python re read them alike); the validators
# below implement the same rules in Python with clearer messages.
_CTRL = r"\x00-\x1f\x7f"
# The characters str.isspace() (and so str.strip()) calls whitespace, beyond controls;
# spelled out because regex generators disagree on what \s means.
_SPACE = r" \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
ID_PATTERN = rf"^[^{_SPACE}{_CTRL}]([^{_CTRL}]*[^{_SPACE}{_CTRL}])?$"
EMAIL_PATTERN = rf"^([^@{_SPACE}{_CTRL}]+@[^@.{_SPACE}{_CTRL}]+(\.[^@.{_SPACE}{_CTRL}]+)+)?$"
ATTR_NAME_PATTERN = r"^\w[\w.:-]{0,127}$"
_EMAIL = re.compile(EMAIL_PATTERN)
_CONTROL = re.compile(rf"[{_CTRL}]")
_ATTR_NAME = re.compile(ATTR_NAME_PATTERN)
_CSV_INT = re.compile(r"-?(0|[1-9][0-9]*)")


class RecordError(ValueError):
    """A record is invalid; ``field`` is the first bad key path (``attributes.ltv``) or None.

    ``errors`` lists every bad field of the record as ``{"path", "message"}``.
    """

    def __init__(
        self, message: str, field: str | None = None, errors: Sequence[dict[str, Any]] = ()
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.errors = list(errors) or [{"path": field or "", "message": message}]

    def __str__(self) -> str:
        parts = [f"{e['path']}: {e['message']}" if e["path"] else e["message"] for e in self.errors]
        return "; ".join(parts)


def _fail(message: str) -> PydanticCustomError:
    return PydanticCustomError("value_error", message)


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


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise _fail(f"must be a string, got {_json_type(value)}")
    if has_surrogate(value):
        raise _fail(SURROGATE_MESSAGE)
    return value


def _identifier_check(limit: int) -> Any:
    def check(value: Any) -> str:
        text = _string(value)
        if not text:
            raise _fail("must not be empty")
        if len(text) > limit:
            raise _fail(f"longer than {limit} characters")
        if text != text.strip():
            raise _fail("has leading or trailing whitespace")
        if _CONTROL.search(text):
            raise _fail("contains control characters")
        return text

    return check


def _text_schema(limit: int, description: str) -> dict[str, Any]:
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": limit,
        "pattern": ID_PATTERN,
        "description": description,
    }


Identifier = Annotated[
    str,
    PlainValidator(_identifier_check(MAX_ID_LENGTH)),
    WithJsonSchema(
        _text_schema(MAX_ID_LENGTH, "1-128 characters; no control characters or outer spaces")
    ),
]
Name = Annotated[
    str,
    PlainValidator(_identifier_check(MAX_NAME_LENGTH)),
    WithJsonSchema(
        _text_schema(MAX_NAME_LENGTH, "1-128 characters; no control characters or outer spaces")
    ),
]
# Free text (attribute values): any string that is valid UTF-8.
Text = Annotated[str, PlainValidator(_string), WithJsonSchema({"type": "string"})]


def _email(value: Any) -> str | None:
    if value is None or value == "":
        return None
    text = _string(value)
    if len(text) > MAX_EMAIL_LENGTH or _EMAIL.fullmatch(text) is None:
        raise _fail(f"{text[:80]!r} is not an email address")
    return text


@lru_cache(maxsize=1024)
def _known_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


@lru_cache(maxsize=1)
def _zone_names() -> list[str]:
    return sorted(z for z in available_timezones() if _known_zone(z))


def _timezone(value: Any) -> str | None:
    if value is None or value == "":
        return None
    text = _string(value)
    if len(text) > 64 or _CONTROL.search(text) or not _known_zone(text):
        raise _fail(f"{text[:80]!r} is not an IANA time zone")
    return text


def _timezone_schema() -> dict[str, Any]:
    return {
        "anyOf": [{"type": "string", "enum": ["", *_zone_names()]}, {"type": "null"}],
        "description": "an IANA time zone name; empty or null for none",
    }


Email = Annotated[
    str | None,
    PlainValidator(_email),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "maxLength": MAX_EMAIL_LENGTH, "pattern": EMAIL_PATTERN},
                {"type": "null"},
            ],
            "description": "an e-mail address; empty or null for none",
        }
    ),
]
TimeZone = Annotated[str | None, PlainValidator(_timezone), WithJsonSchema(_timezone_schema())]


def _decimal_text(value: Decimal | float) -> str:
    number = value if isinstance(value, Decimal) else Decimal(repr(value))
    if not number.is_finite():
        raise _fail("must be a finite number")
    return format(number, "f")


def _scalar(value: Any) -> Scalar:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, int):
        if _INT64[0] <= value <= _INT64[1]:
            return value
        return str(value)
    if isinstance(value, Decimal | float):
        return _decimal_text(value)
    raise _fail(f"must be a string, number, boolean or null, got {_json_type(value)}")


ScalarValue = Annotated[
    Scalar,
    PlainValidator(_scalar),
    WithJsonSchema({"type": ["string", "number", "boolean", "null"]}),
]


def _object(value: Any, what: str) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise _fail(f"must be {what}, got {_json_type(value)}")
    return value


def _json_value(value: Any, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise _fail(f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out[_string(key)] = _json_value(item, depth + 1)
        return out
    if isinstance(value, list):
        return [_json_value(item, depth + 1) for item in value]
    return _scalar(value)


def _properties(value: Any) -> dict[str, Any]:
    result: dict[str, Any] = _json_value(_object(value, "a JSON object"))
    return result


Properties = Annotated[
    dict[str, Any],
    PlainValidator(_properties),
    WithJsonSchema(
        {
            "type": "object",
            "description": f"any JSON object (at most {MAX_DEPTH} levels deep);"
            " numbers with a fraction are kept as exact decimal strings",
        }
    ),
]


def _attribute_names(value: Any) -> Any:
    for key in _object(value, "a JSON object"):
        if not isinstance(key, str) or _ATTR_NAME.fullmatch(key) is None:
            raise PydanticCustomError(
                "attribute_name",
                "attribute names are 1-128 letters, digits, '_', '.', ':' or '-'",
                {"key": str(key)},
            )
    return value


Attributes = Annotated[
    dict[str, ScalarValue],
    BeforeValidator(_attribute_names),
    Field(json_schema_extra={"propertyNames": {"pattern": ATTR_NAME_PATTERN}}),
]


def _unique(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def _array(value: Any) -> Any:
    if not isinstance(value, list | tuple):
        raise _fail(f"must be an array of strings, got {_json_type(value)}")
    return tuple(value)


Tags = Annotated[tuple[Name, ...], BeforeValidator(_array), AfterValidator(_unique)]


def _consent_map(value: Any) -> Any:
    out = _object(value, "an object of name: true|false")
    for key, granted in out.items():
        if not isinstance(granted, bool):
            raise PydanticCustomError(
                "consent_value",
                "must be true or false, got {got}",
                {"key": str(key), "got": _json_type(granted)},
            )
    return out


Consents = Annotated[
    dict[Name, bool],
    BeforeValidator(_consent_map),
    Field(json_schema_extra={"propertyNames": _text_schema(MAX_NAME_LENGTH, "a consent name")}),
]

_RECORD_CONFIG = ConfigDict(extra="forbid", frozen=True, strict=True)


class CustomerFields(BaseModel):
    """Everything of a customer profile but its id (the body of ``PUT /v1/customers/{id}``)."""

    model_config = _RECORD_CONFIG

    email: Email = None
    timezone: TimeZone = None
    attributes: Attributes = Field(default_factory=dict)
    tags: Tags = ()
    consents: Consents = Field(
        default_factory=dict, description="consent name -> granted; a missing consent is dropped"
    )


class Customer(CustomerFields):
    """A customer profile as imported or pushed; ``consents`` maps name -> granted."""

    model_config = ConfigDict(**_RECORD_CONFIG, title="Customer")

    id: Identifier

    def to_dict(self) -> dict[str, Any]:
        """The record in its JSON form."""
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
        return cls.model_construct(
            id=data["id"],
            email=data.get("email"),
            timezone=data.get("timezone"),
            attributes=dict(data.get("attributes") or {}),
            tags=tuple(data.get("tags") or ()),
            consents=dict(data.get("consents") or {}),
        )


def _timestamp(value: Any) -> int:
    if not isinstance(value, str):
        raise _fail(f"must be an ISO-8601 time string with a zone, got {_json_type(value)}")
    text = _string(value)
    try:
        # RFC 3339 allows a lower-case 't' and 'z'.
        moment = datetime.fromisoformat(text.upper())
    except ValueError:
        raise _fail(f"{text[:64]!r} is not an ISO-8601 time") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise _fail(f"{text[:64]!r} has no zone (add 'Z' or an offset like +01:00)")
    return math.floor(moment.timestamp())


Timestamp = Annotated[
    int,
    PlainValidator(_timestamp),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "description": "RFC 3339 time with a zone ('Z' or an offset)",
        },
        mode="validation",
    ),
]


class Event(BaseModel):
    """A behaviour event; ``ts`` is unix seconds UTC, ``event_id`` optional and unique.

    In JSON the event's own id is ``id``; an id already stored makes it a duplicate.
    Validation reads ``ts`` as RFC 3339 text; code that already holds unix seconds
    builds one with ``Event.model_construct(...)``.
    """

    model_config = ConfigDict(**_RECORD_CONFIG, title="Event")

    event_id: Identifier | None = Field(
        default=None,
        alias="id",
        description="optional; an event whose id is already stored is a duplicate",
    )
    customer_id: Identifier
    name: Name
    ts: Timestamp
    properties: Properties = Field(default_factory=dict)

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
        return cls.model_construct(
            event_id=data.get("id"),
            customer_id=data["customer_id"],
            name=data["name"],
            ts=int(data["ts"]),
            properties=dict(data.get("properties") or {}),
        )


def loc_path(loc: Sequence[Any]) -> str:
    """``("customers", 1, "tags", 0)`` -> ``customers[1].tags[0]`` (a JSON key path)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


ERROR_MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "unknown key",
    "dict_type": "must be a JSON object",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "bool_type": "must be true or false",
}


def field_errors(
    exc: ValidationError, *, prefix: Sequence[Any] = (), allowed: Iterable[str] = ()
) -> list[dict[str, Any]]:
    """Every error of ``exc`` as ``{"path", "loc", "message"}``, paths in JSON form."""
    keys = ", ".join(sorted(allowed))
    out: list[dict[str, Any]] = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = [*prefix, *error["loc"]]
        ctx = error.get("ctx") or {}
        if error["type"] in ("attribute_name", "consent_value") and "key" in ctx:
            loc.append(ctx["key"])
        message = ERROR_MESSAGES.get(error["type"], error["msg"])
        if error["type"] == "extra_forbidden" and keys:
            message = f"unknown key (expected {keys})"
        elif message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        out.append({"path": loc_path(loc), "loc": loc, "message": message})
    return out


def _record_error(exc: ValidationError, allowed: Iterable[str]) -> RecordError:
    errors = field_errors(exc, allowed=allowed)
    first = errors[0]
    return RecordError(first["message"], first["path"] or None, errors)


def _validate(model: type[BaseModel], obj: Any, what: str) -> Any:
    if not isinstance(obj, dict):
        raise RecordError(f"a {what} must be a JSON object, got {_json_type(obj)}")
    allowed = [f.alias or name for name, f in model.model_fields.items()]
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        raise _record_error(exc, allowed) from None


def parse_customer(obj: Any) -> Customer:
    """Validate a customer record; raises :class:`RecordError` listing every bad field."""
    customer: Customer = _validate(Customer, obj, "customer")
    return customer


def parse_event(obj: Any) -> Event:
    """Validate an event record; raises :class:`RecordError` listing every bad field."""
    event: Event = _validate(Event, obj, "event")
    return event


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_reject_constant)


def loads_record(text: str) -> dict[str, Any]:
    """Parse one JSON line into an object; fractions become Decimal (exact), NaN is refused.

    A lone surrogate anywhere in the line is refused, naming its key path.
    """
    try:
        value = _DECODER.decode(text)
    except (ValueError, RecursionError) as exc:
        raise RecordError(f"invalid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise RecordError(f"expected a JSON object, got {_json_type(value)}")
    where = find_surrogate(value)
    if where is not None:
        raise RecordError(SURROGATE_MESSAGE, where)
    return value


def check_csv_columns(columns: Iterable[str | None]) -> list[str]:
    """Validate a CSV header; returns it as a list. Needs ``id``; ``attr.NAME`` for attributes."""
    header: list[str] = []
    seen: set[str] = set()
    for column in columns:
        if column is None or column == "":
            raise RecordError("empty column name in the header")
        if has_surrogate(column):
            raise RecordError(f"a column name: {SURROGATE_MESSAGE}")
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
    """A customer from a ``csv.DictReader`` row (a CSV import).

    ``tags`` and ``consents`` hold ``;``-separated names (listed consents are granted);
    ``attr.NAME`` cells become attributes: ``true``/``false`` -> bool, integers -> int,
    anything else (decimals included) a string; an empty cell sets nothing. The row is
    then validated by the same :class:`Customer` model as a JSON record.
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
    record: dict[str, Any] = {
        "attributes": attributes,
        "tags": _split_names(fields.pop("tags", "")),
        "consents": dict.fromkeys(_split_names(fields.pop("consents", "")), True),
        **fields,
    }
    return parse_customer(record)
