"""Typed models at the edges: the base model, the value types promod shares, and error paths.

Configuration sections, campaign specs and the options of every plugin type are
pydantic models built from :class:`Model` (unknown keys are errors, instances are
frozen). The value types here read what the edges carry: durations and sizes as
strings, money as decimal strings (a TOML or JSON float is refused, so no amount
ever passes through a float), names, URLs and time zones. A validation failure
becomes a list of ``(key path, message)`` pairs, every problem at once::

    class Options(Model):
        url: HttpUrlText
        timeout: Duration = 10.0

    try:
        Options.model_validate({"url": "ftp://x", "timeout": 5}, context={})
    except ValidationError as exc:
        issues_of(exc, CONFIG_WORDS)
    # [("url", "expected an http:// or https:// URL, got 'ftp://x'"),
    #  ("timeout", 'expected a duration string such as "30s", got integer')]

A model checks rules spanning several keys in :meth:`Model.cross_checks`; those
run on the raw table even when some of its keys are invalid, so they are reported
together with the key errors.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated, Any, Self
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    model_validator,
)
from pydantic_core import PydanticCustomError, core_schema

from promod.units import format_duration, format_money, parse_duration, parse_money, parse_size

__all__ = [
    "CONFIG_WORDS",
    "SPEC_WORDS",
    "Check",
    "ConfigPath",
    "Duration",
    "DurationOrZero",
    "EnvName",
    "Host",
    "HttpUrlText",
    "Invalid",
    "Issue",
    "Loc",
    "Model",
    "Money",
    "Name",
    "NonEmpty",
    "NonNegativeInt",
    "Port",
    "PositiveInt",
    "PositiveNumber",
    "Problems",
    "Sender",
    "Size",
    "StrictBool",
    "TimeZoneName",
    "Words",
    "all_of",
    "between",
    "choice",
    "config_base",
    "describe",
    "duration",
    "fail",
    "host",
    "http_url",
    "issues_of",
    "join_path",
    "options_schema",
    "resolve_path",
    "sender",
]

Issue = tuple[str, str]
"""One problem: the dotted key path (``channels.mail.port``) and what is wrong."""
Loc = tuple[str | int, ...] | str
"""Where a cross-check problem is: keys relative to the table, or an already dotted path."""
Problems = list[tuple[Loc, str]]
"""What :meth:`Model.cross_checks` returns."""

_ISSUES = "promod_issues"
_INVALID = "promod_invalid"
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HOSTNAME = re.compile(
    r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
_DURATION_PATTERN = r"^(\d+(\.\d+)?(ms|s|m|h|d))+$"
_MONEY_PATTERN = r"^\d+(\.\d+)?$"


# --------------------------------------------------------------------------- failing


class Invalid(Exception):
    """Raised with one message by a value check; becomes an issue at the value's path."""


def fail(message: str, *, at: Sequence[str | int] = ()) -> PydanticCustomError:
    """The error a validator raises: ``message`` at the value, or at the sub-key ``at``."""
    return PydanticCustomError(_INVALID, "{message}", {"message": message, "at": tuple(at)})


def _many(issues: list[dict[str, Any]]) -> PydanticCustomError:
    return PydanticCustomError(_ISSUES, "{count} issues", {"count": len(issues), "issues": issues})


def all_of(
    problems: Iterable[tuple[tuple[str | int, ...], str]],
    errors: Iterable[tuple[tuple[str | int, ...], ValidationError]] = (),
) -> PydanticCustomError:
    """One error for a validator that checked several parts: its own problems, and the
    validation errors of parts it validated itself, each under its relative key path."""
    found: list[dict[str, Any]] = [
        {"type": _INVALID, "loc": loc, "ctx": {"message": m}} for loc, m in problems
    ]
    for loc, error in errors:
        for item in error.errors():
            entry: dict[str, Any] = dict(item)
            entry["loc"] = (*loc, *item["loc"])
            found.append(entry)
    return _many(found)


# --------------------------------------------------------------------------- the base model


class Model(BaseModel):
    """A frozen model whose unknown keys are errors; subclasses add ``cross_checks``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @classmethod
    def cross_checks(
        cls, raw: Mapping[str, Any], value: Self | None, info: ValidationInfo
    ) -> Problems:
        """Rules over several keys: (relative key path, message) pairs.

        ``raw`` is the table as written; ``value`` the validated model, or None when
        some key of the table is invalid (check only what ``raw`` shows then). A path
        given as a string is already dotted (``"segment.all[1].within"``).
        """
        return []

    @model_validator(mode="wrap")
    @classmethod
    def _all_problems(
        cls, data: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> Any:
        errors: list[dict[str, Any]] = []
        model: Self | None = None
        try:
            model = handler(data)
        except ValidationError as exc:
            errors = [dict(error) for error in exc.errors()]
        if isinstance(data, Mapping) and cls.cross_checks is not Model.cross_checks:
            for loc, message in cls.cross_checks(data, model, info):
                if isinstance(loc, str):
                    ctx = {"message": message, "path": loc}
                    errors.append({"type": _INVALID, "loc": (), "ctx": ctx})
                else:
                    errors.append({"type": _INVALID, "loc": loc, "ctx": {"message": message}})
        if errors:
            raise _many(errors)
        return model


# --------------------------------------------------------------------------- paths and words


def join_path(loc: Iterable[str | int]) -> str:
    """``("alerts", "cap.reached", 0)`` -> ``alerts."cap.reached"[0]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        key = part if _BARE_KEY.fullmatch(part) else '"' + part.replace('"', '\\"') + '"'
        out = f"{out}.{key}" if out else key
    return out


def describe(value: object) -> str:
    """What a value is, in TOML's words: ``string``, ``integer``, ``table``..."""
    kinds: tuple[tuple[type, str], ...] = (
        (bool, "boolean"),
        (int, "integer"),
        (float, "float"),
        (str, "string"),
        (list, "array"),
        (tuple, "array"),
        (dict, "table"),
        (Mapping, "table"),
        (datetime, "datetime"),
        (date, "date"),
        (time, "time"),
        (Decimal, "decimal"),
    )
    for kind, name in kinds:
        if isinstance(value, kind):
            return name
    return type(value).__name__


@dataclass(frozen=True)
class Words:
    """How one kind of document words the errors pydantic finds itself."""

    missing: str
    expected: str  # "{what}" and "{got}": a type or form expected, the kind found
    at_least: str  # "{limit}" and "{got}"
    at_most: str
    article: bool  # "a string" rather than "string"

    def kind(self, value: object) -> str:
        name = describe(value)
        if not self.article:
            return name
        return ("an " if name[0] in "aeiou" else "a ") + name


CONFIG_WORDS = Words(
    missing="required key is missing",
    expected="expected {what}, got {got}",
    at_least="must be at least {limit}, got {got}",
    at_most="must be at most {limit}, got {got}",
    article=False,
)
SPEC_WORDS = Words(
    missing="required",
    expected="must be {what}, not {got}",
    at_least="must be at least {limit}, not {got}",
    at_most="must be at most {limit}, not {got}",
    article=True,
)

_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "bool_type": "a boolean (true or false)",
    "bool_parsing": "a boolean (true or false)",
    "string_type": "a string",
    "float_type": "a number",
    "float_parsing": "a number",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
    "list_type": "an array",
    "tuple_type": "an array",
    "set_type": "an array",
    "frozen_set_type": "an array",
}


def _message(error: Mapping[str, Any], words: Words) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if kind == _INVALID:
        return str(ctx["message"])
    if kind == "missing":
        return words.missing
    if kind == "extra_forbidden":
        return "unknown key"
    if kind in _EXPECTED:
        what = _EXPECTED[kind]
        if words.article and kind.startswith("bool"):
            what = "true or false"
        return words.expected.format(what=what, got=words.kind(value))
    if kind in ("greater_than_equal", "greater_than"):
        limit = ctx.get("ge", ctx.get("gt"))
        text = words.at_least
        if kind == "greater_than":
            text = text.replace("at least", "more than")
        return text.format(limit=limit, got=value)
    if kind in ("less_than_equal", "less_than"):
        limit = ctx.get("le", ctx.get("lt"))
        text = words.at_most
        if kind == "less_than":
            text = text.replace("at most", "less than")
        return text.format(limit=limit, got=value)
    if kind in ("string_too_short", "too_short") and ctx.get("min_length") == 1:
        return "must not be empty"
    return str(error.get("msg", kind))


def _flatten(
    errors: Iterable[Mapping[str, Any]], prefix: tuple[str | int, ...]
) -> Iterable[tuple[str, Mapping[str, Any]]]:
    for error in errors:
        loc = prefix + tuple(part for part in error.get("loc", ()) if part != "[key]")
        ctx = error.get("ctx") or {}
        if error["type"] == _ISSUES:
            yield from _flatten(ctx["issues"], loc)
            continue
        path = join_path(loc + tuple(ctx.get("at", ())))
        if "path" in ctx:
            path = f"{path}.{ctx['path']}" if path and ctx["path"] else path or ctx["path"]
        yield path, error


def issues_of(
    error: ValidationError, words: Words, prefix: Sequence[str | int] = ()
) -> list[Issue]:
    """Every problem of a failed validation as ``(key path, message)``, in order, once each."""
    found: list[Issue] = []
    for path, item in _flatten(error.errors(), tuple(prefix)):
        issue = (path, _message(item, words))
        if issue not in found:
            found.append(issue)
    return found


# --------------------------------------------------------------------------- value checks


class Check:
    """Metadata for ``Annotated``: a check run on the raw value, and the JSON Schema it accepts.

    ``check(value)`` (or ``check(value, info)`` with ``with_info``) returns the value
    to keep or raises :class:`Invalid`; what it returns is then validated as the
    annotated type::

        Port = Annotated[int, Check(parse_port, {"type": "integer"})]
    """

    def __init__(
        self, check: Callable[..., Any], schema: Mapping[str, Any], *, with_info: bool = False
    ) -> None:
        self.check = check
        self.schema = dict(schema)
        self.with_info = with_info

    def _run(self, value: Any, info: ValidationInfo) -> Any:
        try:
            return self.check(value, info) if self.with_info else self.check(value)
        except Invalid as exc:
            raise fail(str(exc)) from None

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.with_info_before_validator_function(self._run, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> dict[str, Any]:
        return dict(self.schema)


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid(f"expected a string, got {describe(value)}")
    return value


def _nonempty(value: Any) -> str:
    text = _string(value)
    if not text.strip():
        raise Invalid("must not be empty")
    return text


def choice(*choices: str, fold_case: bool = False) -> Check:
    """One of ``choices`` (a JSON Schema enum), optionally read case-insensitively."""

    def check(value: Any) -> str:
        text = _string(value)
        candidate = text.lower() if fold_case else text
        if candidate not in choices:
            raise Invalid(f"expected one of {', '.join(choices)}, got {text!r}")
        return candidate

    return Check(check, {"enum": list(choices)})


def between(minimum: int, maximum: int) -> Check:
    """An integer from ``minimum`` to ``maximum`` (never a bool, float or string)."""

    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"expected an integer, got {describe(value)}")
        if not minimum <= value <= maximum:
            raise Invalid(f"must be between {minimum} and {maximum}, got {value}")
        return value

    return Check(check, {"type": "integer", "minimum": minimum, "maximum": maximum})


def _built_in_code(value: Any, info: ValidationInfo) -> bool:
    """A number given by code that builds a model itself (no validation context).

    Files, specs and plugin options are always validated with a context, so there a
    number where a duration or money string belongs is refused.
    """
    return info.context is None and isinstance(value, int | float) and not isinstance(value, bool)


def duration(*, allow_zero: bool = False) -> Check:
    """A duration string (``"30s"``, ``"1h30m"``) read as float seconds.

    Code building a model itself (no validation context) may give the seconds.
    """

    def check(value: Any, info: ValidationInfo) -> float:
        if _built_in_code(value, info):
            return float(value)
        if not isinstance(value, str):
            raise Invalid(f'expected a duration string such as "30s", got {describe(value)}')
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise Invalid(str(exc)) from None
        if seconds == 0 and not allow_zero:
            raise Invalid(f"must be longer than zero, got {value!r}")
        return seconds

    return Check(
        check,
        {"type": "string", "pattern": _DURATION_PATTERN, "examples": ["30s", "15m", "72h"]},
        with_info=True,
    )


def _money(value: Any, info: ValidationInfo) -> int:
    if _built_in_code(value, info) and isinstance(value, int):
        return value  # minor units, from code
    if isinstance(value, float):
        raise Invalid(f'money must be a decimal string such as "5.00", not a float ({value!r})')
    if not isinstance(value, str):
        raise Invalid(f'money must be a decimal string such as "5.00", got {describe(value)}')
    try:
        return parse_money(value)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def _size(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise Invalid(f"must be at least 1 byte, got {value}")
        return value
    if not isinstance(value, str):
        raise Invalid(f'expected a size such as "1MiB", got {describe(value)}')
    try:
        size = parse_size(value)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    if size < 1:
        raise Invalid(f"must be at least 1 byte, got {value!r}")
    return size


def _name(value: Any) -> str:
    text = _string(value)
    if not _NAME.fullmatch(text):
        raise Invalid(f"invalid name {text!r}: use letters, digits, '_' and '-'")
    return text


def _env_name(value: Any) -> str:
    text = _string(value)
    if not _ENV_NAME.fullmatch(text):
        raise Invalid(f"invalid environment variable name {text!r}")
    return text


def host(text: str) -> str:
    """A host name or IP address; raise :class:`Invalid` otherwise."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        if not _HOSTNAME.fullmatch(text):
            raise Invalid(f"invalid host {text!r}") from None
    return text


def _host(value: Any) -> str:
    return host(_nonempty(value))


def http_url(value: Any) -> str:
    """An http:// or https:// URL; raise :class:`Invalid` otherwise."""
    text = _nonempty(value)
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise Invalid(f"invalid URL {text!r}: {exc}") from None
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or any(c.isspace() for c in text)
    ):
        raise Invalid(f"expected an http:// or https:// URL, got {text!r}")
    try:
        _ = parts.port
    except ValueError:
        raise Invalid(f"invalid port in URL {text!r}") from None
    return text


def _timezone(value: Any) -> str:
    name = _nonempty(value)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise Invalid(
            f"unknown time zone {name!r} (use an IANA name such as 'Europe/Berlin' or 'UTC')"
        ) from None
    return name


def sender(value: Any) -> str:
    """An email address, with or without a display name; raise :class:`Invalid` otherwise."""
    text = _nonempty(value)
    if "@" not in parseaddr(text)[1]:
        raise Invalid(
            f"expected an email address such as 'Promotions <promo@example.org>', got {text!r}"
        )
    return text


def _positive_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Invalid(f"expected a number, got {describe(value)}")
    if not value > 0 or value != value or value == float("inf"):
        raise Invalid(f"must be a positive number, got {value}")
    return float(value)


def config_base(info: ValidationInfo) -> Path:
    """The directory relative paths resolve against (``base`` in the validation context)."""
    base = (info.context or {}).get("base")
    return base if isinstance(base, Path) else Path.cwd()


def resolve_path(value: Any, info: ValidationInfo) -> Path:
    """A non-empty path string, made absolute against :func:`config_base`."""
    path = Path(_nonempty(value)).expanduser()
    return path if path.is_absolute() else config_base(info) / path


_NAME_SCHEMA = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]*$"}

Duration = Annotated[float, duration()]
"""A duration longer than zero, as float seconds."""
DurationOrZero = Annotated[float, duration(allow_zero=True)]
"""A duration, zero allowed, as float seconds."""
Money = Annotated[
    int,
    Check(
        _money,
        {"type": "string", "pattern": _MONEY_PATTERN, "examples": ["5.00"]},
        with_info=True,
    ),
]
"""A decimal money string with at most two decimals, as integer minor units (code may
give the minor units)."""
Size = Annotated[int, Check(_size, {"type": ["string", "integer"], "examples": ["1MiB"]})]
"""A size in bytes (``"1MiB"``, or an integer of bytes)."""
NonEmpty = Annotated[str, Check(_nonempty, {"type": "string", "minLength": 1})]
Name = Annotated[str, Check(_name, _NAME_SCHEMA)]
EnvName = Annotated[
    str, Check(_env_name, {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"})
]
Host = Annotated[str, Check(_host, {"type": "string", "examples": ["localhost"]})]
HttpUrlText = Annotated[str, Check(http_url, {"type": "string", "format": "uri"})]
TimeZoneName = Annotated[str, Check(_timezone, {"type": "string", "examples": ["Europe/Berlin"]})]
Sender = Annotated[
    str, Check(sender, {"type": "string", "examples": ["Promotions <promo@example.org>"]})
]
PositiveNumber = Annotated[
    float, Check(_positive_number, {"type": "number", "exclusiveMinimum": 0})
]
ConfigPath = Annotated[Path, Check(resolve_path, {"type": "string"}, with_info=True)]
"""A file or directory path; relative ones resolve against the config file's directory."""
StrictBool = Annotated[bool, Field(strict=True)]
NonNegativeInt = Annotated[int, Field(strict=True, ge=0)]
PositiveInt = Annotated[int, Field(strict=True, ge=1)]
Port = Annotated[int, between(1, 65535)]


def options_schema(model: type[BaseModel] | None) -> dict[str, Any]:
    """The JSON Schema of a plugin type's options model (``{}`` when it declares none)."""
    if model is None:
        return {}
    schema = model.model_json_schema(by_alias=True)
    tables = [schema, *(schema.get("$defs") or {}).values()]
    for table in tables:
        for prop in (table.get("properties") or {}).values():
            # Defaults are kept as seconds and minor units; show them as written.
            default = prop.get("default")
            if isinstance(default, bool) or not isinstance(default, int | float):
                continue
            if prop.get("pattern") == _DURATION_PATTERN:
                prop["default"] = format_duration(float(default))
            elif prop.get("pattern") == _MONEY_PATTERN and isinstance(default, int):
                prop["default"] = format_money(default)
    return schema
