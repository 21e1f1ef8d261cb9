"""Segments: the rule language of campaign specs, validated into an AST.

A segment selects customers by profile (tags, attributes, custom lists, consents) and by
behaviour (events in a time window before the run's ``as_of`` time). ``parse_segment``
reports every problem at once with its key path; the store module
:mod:`promod.campaigns.store_segments` compiles the AST into one ``SELECT`` over the
customer tables that returns a distinct ``customer_id`` column (``compile_segment`` is
re-exported here); the AST itself is :mod:`promod.campaigns.segment_ast`. Numbers
compare and sum exactly through two SQL functions, :data:`SQL_FUNCTION_DEFS`, that
``register_sql_functions`` installs on a connection. The language is described in
docs/segments.md.

    >>> seg = parse_segment({"all": [{"tag": "vip"}, {"event": "purchase", "within": "90d"}]})
    >>> sql, params = compile_segment(seg, as_of=1_790_000_000)
    >>> register_sql_functions(conn)  # doctest: +SKIP
    >>> ids = [row[0] for row in tx.fetch_all(sql, params)]  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Annotated, Any, ClassVar, TypeAlias

from pydantic import ConfigDict, Field, ValidationError, ValidationInfo

from promod.campaigns.segment_ast import (
    _DECIMAL_STRING,
    _OPTIONS,
    ATTR_OPS,
    COMBINATORS,
    EVENT_OPTIONS,
    LEAF_KINDS,
    ORDER_OPS,
    SQL_FUNCTIONS,
    VALUE_OPS,
    AllRule,
    AnyRule,
    AttrRule,
    Comparison,
    ConsentRule,
    EventRule,
    ListRule,
    NotRule,
    PropertyTest,
    Rule,
    Scalar,
    Segment,
    TagRule,
    _dec_cmp,
    _DecimalSum,
    _number_text,
    decimal_value,
)
from promod.campaigns.store_segments import compile_segment
from promod.schema import SPEC_WORDS, Check, Invalid, Model, Problems, issues_of
from promod.store.functions import AsyncConnection, Connection, SqlFunction, install, install_async
from promod.units import parse_duration

__all__ = [
    "EVENT_OPTIONS",
    "SQL_FUNCTIONS",
    "SQL_FUNCTION_DEFS",
    "AllRule",
    "AnyRule",
    "AttrRule",
    "Comparison",
    "ConsentRule",
    "EventRule",
    "ListRule",
    "NotRule",
    "PropertyTest",
    "Rule",
    "Scalar",
    "Segment",
    "SegmentError",
    "TagRule",
    "compile_segment",
    "decimal_value",
    "parse_segment",
    "register_sql_functions",
    "register_sql_functions_async",
]


SQL_FUNCTION_DEFS = (
    SqlFunction("promod_dec_cmp", 2, _dec_cmp),
    SqlFunction("promod_dec_sum", 1, _DecimalSum, aggregate=True),
)


def register_sql_functions(conn: Connection) -> None:
    """Install ``promod_dec_cmp`` and ``promod_dec_sum`` on a SQLite connection.

    ``promod_dec_cmp(a, b)`` is -1, 0 or 1 comparing two numbers exactly, NULL when either
    is not a number (see :func:`decimal_value`); ``promod_dec_sum(x)`` is the exact sum
    of the numbers among x as decimal text (``"0"`` over no rows).
    """
    install(conn, SQL_FUNCTION_DEFS)


async def register_sql_functions_async(conn: AsyncConnection) -> None:
    """Install the segment SQL functions on an aiosqlite connection (in its own thread)."""
    await install_async(conn, SQL_FUNCTION_DEFS)


# ---------------------------------------------------------------------------
# Parsing and validation: the rule tables as pydantic models
# ---------------------------------------------------------------------------


class SegmentError(ValueError):
    """A segment with problems; ``issues`` lists every one as (key path, message)."""

    def __init__(self, issues: Sequence[tuple[str, str]]) -> None:
        self.issues: list[tuple[str, str]] = list(issues)
        super().__init__("\n".join(f"{path}: {message}" for path, message in self.issues))


def parse_segment(obj: Any, path: str = "segment") -> Segment:
    """Validate a segment table (as read from TOML or JSON) into a :class:`Segment`.

    Raises :class:`SegmentError` listing every problem with its exact key path, such as
    ``segment.all[2].within: bad duration "9x" ...``. ``None`` or an empty table is the
    segment of every customer.
    """
    if obj is None:
        return Segment(AllRule(()))
    if not isinstance(obj, Mapping):
        raise SegmentError([(path, f"expected a table, got {_a(obj)}")])
    try:
        model = SegmentModel.model_validate(obj, context={})
    except ValidationError as exc:
        issues = []
        for sub, message in issues_of(exc, SPEC_WORDS):
            where = path if not sub else f"{path}{sub}" if sub.startswith("[") else f"{path}.{sub}"
            issues.append((where, message))
        raise SegmentError(issues) from None
    return Segment(model.to_rule(top=True))


_FLOAT_MESSAGE = 'floats are not exact: write the number as a decimal string, e.g. "12.5"'
_a = SPEC_WORDS.kind


def _table(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise Invalid(f"expected a table, got {_a(value)}")
    return value


def _name(what: str) -> Check:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise Invalid(f"expected {what} as a string, got {_a(value)}")
        if not value.strip():
            raise Invalid(f"{what} must not be empty")
        return value

    return Check(check, {"type": "string", "minLength": 1})


def _json_key_check(what: str) -> Any:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise Invalid(f"expected {what} as a string, got {_a(value)}")
        if not value.strip():
            raise Invalid(f"{what} must not be empty")
        if any(ch in value for ch in '"\\') or any(ord(ch) < 0x20 for ch in value):
            raise Invalid(
                f"{what} {json.dumps(value)} cannot contain quotes, backslashes"
                " or control characters"
            )
        return value

    return check


def _json_key(what: str) -> Check:
    return Check(_json_key_check(what), {"type": "string", "minLength": 1})


def _window(value: Any) -> int:
    if not isinstance(value, str):
        raise Invalid(f'expected a duration such as "90d", got {_a(value)}')
    try:
        seconds = parse_duration(value)
    except ValueError:
        raise Invalid(
            f'bad duration {json.dumps(value)} (a number with a unit s, m, h or d, such as "90d")'
        ) from None
    if seconds < 1:
        raise Invalid(f"window {json.dumps(value)} is shorter than one second")
    return int(seconds)


def _scalar(value: Any) -> Scalar:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if decimal_value(value) is None:
            raise Invalid("number out of range")
        return value
    if isinstance(value, float):
        raise Invalid(_FLOAT_MESSAGE)
    if isinstance(value, Decimal):
        if decimal_value(value) is None:
            raise Invalid("number out of range")
        return _number_text(value)
    if isinstance(value, str):
        if _DECIMAL_STRING.fullmatch(value) and decimal_value(value) is None:
            raise Invalid("number out of range")
        return value
    raise Invalid(f"expected a string, number or boolean, got {_a(value)}")


def _value_test(op: str, value: Any) -> Comparison:
    """One operator of an attr rule or a ``where`` condition."""
    if op == "exists":
        if not isinstance(value, bool):
            raise Invalid(f"expected true or false, got {_a(value)}")
        return Comparison(op, value)
    if op == "in":
        if not isinstance(value, list | tuple):
            raise Invalid(f"expected a list of values, got {_a(value)}")
        if not value:
            raise Invalid("must list at least one value")
        raise _InList([_scalar_or_issue(item) for item in value])
    operand = _scalar(value)
    if op in ORDER_OPS and isinstance(operand, bool):
        raise Invalid(f"{op} needs a number or a string, not a boolean")
    return Comparison(op, operand)


class _InList(Exception):
    """The items of an ``in`` list, each a scalar or the message of its problem."""

    def __init__(self, items: list[Scalar | Invalid]) -> None:
        super().__init__("in")
        self.items = items


def _scalar_or_issue(value: Any) -> Scalar | Invalid:
    try:
        return _scalar(value)
    except Invalid as exc:
        return exc


def _aggregate_test(op: str, value: Any, summed: bool) -> Comparison:
    """One comparison of an event rule: with ``sum`` an exact number, else a count."""
    if summed:
        if isinstance(value, float):
            raise Invalid(_FLOAT_MESSAGE)
        if isinstance(value, str) and not _DECIMAL_STRING.fullmatch(value):
            raise Invalid(f"expected a number or a decimal string, got {json.dumps(value)}")
        if isinstance(value, bool) or not isinstance(value, int | str | Decimal):
            raise Invalid(f"expected a number or a decimal string, got {_a(value)}")
        number = decimal_value(value)
        if number is None:
            raise Invalid("number out of range")
        return Comparison(op, value if isinstance(value, int | str) else _number_text(number))
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"expected a whole number of events, got {_a(value)}")
    if value < 0:
        raise Invalid("a number of events cannot be negative")
    return Comparison(op, value)


Found: TypeAlias = Problems


def _operators(
    table: Mapping[str, Any], ops: Sequence[str], owner: str
) -> tuple[tuple[Comparison, ...] | None, Found]:
    """The comparisons of ``table`` (an attr rule or a ``where`` condition) and its issues."""
    found: Found = []
    tests: list[Comparison] = []
    for op in ops:
        if op not in table:
            continue
        try:
            tests.append(_value_test(op, table[op]))
        except Invalid as exc:
            found.append(((op,), str(exc)))
        except _InList as listed:
            problems = [
                (i, item) for i, item in enumerate(listed.items) if isinstance(item, Invalid)
            ]
            found += [((op, i), str(item)) for i, item in problems]
            if not problems:
                scalars = tuple(item for item in listed.items if not isinstance(item, Invalid))
                tests.append(Comparison(op, scalars))
    present = [op for op in ops if op in table]
    if not present:
        return None, [((), f"{owner} needs an operator: one of {', '.join(ops)}")]
    if "exists" in present and len(present) > 1:
        return None, [(("exists",), "exists cannot be combined with other operators")]
    return (tuple(tests) if not found else None), found


def _condition(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise Invalid(f"expected a table of operators such as {{ gte = 50 }}, got {_a(value)}")
    return value


def _where(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise Invalid(f"expected a table of properties, got {_a(value)}")
    return value


def _rules(value: Any) -> Any:
    if not isinstance(value, list | tuple):
        raise Invalid(f"expected a list of rules, got {_a(value)}")
    return value


class PropertyModel(Model):
    """A ``where`` entry: the operators one event property must satisfy."""

    model_config = ConfigDict(extra="allow", frozen=True)

    @classmethod
    def cross_checks(cls, raw: Mapping[str, Any], value: Any, info: ValidationInfo) -> Found:
        found: Found = [((key,), "unknown operator") for key in raw if key not in ATTR_OPS]
        _, problems = _operators(raw, ATTR_OPS, "a property condition")
        return found + problems


PropertyName = Annotated[str, _json_key("a property name")]
Condition = Annotated[PropertyModel, Check(_condition, {"type": "object"})]
SubRule = Annotated["RuleModel", Check(_table, {"type": "object"})]
RuleTables = Annotated[list[SubRule], Check(_rules, {"type": "array"})]


class RuleModel(Model):
    """One rule table: a condition (tag, attr, event, list, consent) and/or combinators.

    Several entries in one table all have to hold. Operators (``eq`` ... ``exists``)
    belong to an attr rule or, as comparisons of a count or ``sum``, to an event rule.
    """

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)
    nested: ClassVar[bool] = True  # an empty table is an error, except the segment itself

    tag: Annotated[str, _name("a tag")] | None = None
    list_name: Annotated[str, _name("a list name")] | None = Field(default=None, alias="list")
    consent: Annotated[str, _name("a consent name")] | None = None
    attr: Annotated[str, _json_key("an attribute name")] | None = None
    event: Annotated[str, _name("an event name")] | None = None
    within: Annotated[int, Check(_window, {"type": "string", "examples": ["90d"]})] | None = None
    where: Annotated[dict[PropertyName, Condition], Check(_where, {"type": "object"})] | None = None
    sum: Annotated[str, _json_key("a property name")] | None = None
    all: RuleTables | None = None
    any: RuleTables | None = None
    not_: SubRule | None = Field(default=None, alias="not")

    @classmethod
    def cross_checks(cls, raw: Mapping[str, Any], value: Any, info: ValidationInfo) -> Found:
        kinds = [kind for kind in LEAF_KINDS if kind in raw]
        if len(kinds) > 1:
            return [
                (
                    (),
                    f"one condition per table, found {' and '.join(kinds)}: "
                    "list them in all = [...] or any = [...]",
                )
            ]
        kind = kinds[0] if kinds else None
        allowed = {*COMBINATORS, *((kind, *_OPTIONS[kind]) if kind else ())}
        found: Found = []
        for key in raw:
            if key in allowed:
                continue
            owners = [k for k, options in _OPTIONS.items() if key in options]
            if owners and kind is None:
                hint = " or ".join(f"{k} = ..." for k in owners)
                found.append(((key,), f"unknown key (it goes with {hint})"))
            elif key in ("count", "min_count") and kind == "event":
                found.append(
                    ((key,), "unknown key: compare the number of events directly, e.g. gte = 3")
                )
            elif owners:
                article = "an" if kind in ("attr", "event") else "a"
                found.append(((key,), f"unknown key for {article} {kind} rule"))
            else:
                found.append(((key,), "unknown key"))
        if kind == "attr":
            found += _operators(raw, ATTR_OPS, "an attr rule")[1]
        elif kind == "event":
            summed = "sum" in raw
            for op in VALUE_OPS:
                if op in raw:
                    try:
                        _aggregate_test(op, raw[op], summed)
                    except Invalid as exc:
                        found.append(((op,), str(exc)))
            if summed and not any(op in raw for op in VALUE_OPS):
                found.append((("sum",), "a sum needs a comparison: one of " + ", ".join(VALUE_OPS)))
        elif kind is None and not any(key in raw for key in COMBINATORS) and cls.nested:
            if not any(key not in allowed for key in raw):
                empty = "empty rule: expected one of " + ", ".join((*LEAF_KINDS, *COMBINATORS))
                found.append(((), empty))
        return found

    def to_rule(self, *, top: bool = False) -> Rule:
        """The rule this (valid) table stands for."""
        parts: list[Rule] = []
        extra = self.model_extra or {}
        if self.tag is not None:
            parts.append(TagRule(self.tag))
        elif self.list_name is not None:
            parts.append(ListRule(self.list_name))
        elif self.consent is not None:
            parts.append(ConsentRule(self.consent))
        elif self.attr is not None:
            tests, _ = _operators(extra, ATTR_OPS, "")
            parts.append(AttrRule(self.attr, tests or ()))
        elif self.event is not None:
            where = tuple(
                PropertyTest(prop, _operators(cond.model_extra or {}, ATTR_OPS, "")[0] or ())
                for prop, cond in (self.where or {}).items()
            )
            tests = tuple(
                _aggregate_test(op, extra[op], self.sum is not None)
                for op in VALUE_OPS
                if op in extra
            )
            parts.append(EventRule(self.event, self.within, where, self.sum, tests))
        if self.all is not None:
            parts.append(AllRule(tuple(rule.to_rule() for rule in self.all)))
        if self.any is not None:
            parts.append(AnyRule(tuple(rule.to_rule() for rule in self.any)))
        if self.not_ is not None:
            parts.append(NotRule(self.not_.to_rule()))
        if not parts:
            return AllRule(())
        return parts[0] if len(parts) == 1 else AllRule(tuple(parts))


class SegmentModel(RuleModel):
    """The segment table itself: empty, it selects every customer."""

    nested: ClassVar[bool] = False
