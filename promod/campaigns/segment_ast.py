"""The segment language's AST and its exact numbers, shared by the parser and the compiler.

:mod:`promod.campaigns.segments` validates rule tables into these nodes;
:mod:`promod.campaigns.store_segments` compiles them to SQL; the live engine
(:mod:`promod.live.match`) evaluates them on events in memory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Context, Decimal, Inexact, Overflow
from typing import Any, TypeAlias

Scalar: TypeAlias = str | int | bool
"""An operand in a rule: a string (decimal strings are numbers), an integer or a boolean.

Decimal operands given by the caller are kept as their decimal string."""

ORDER_OPS = ("gt", "gte", "lt", "lte")
VALUE_OPS = ("eq", "ne", *ORDER_OPS)
ATTR_OPS = (*VALUE_OPS, "in", "exists")
LEAF_KINDS = ("tag", "attr", "event", "list", "consent")
COMBINATORS = ("all", "any", "not")
EVENT_OPTIONS = ("within", "where", "sum", *VALUE_OPS)
_OPTIONS: dict[str, tuple[str, ...]] = {
    "tag": (),
    "list": (),
    "consent": (),
    "attr": ATTR_OPS,
    "event": EVENT_OPTIONS,
}

SQL_FUNCTIONS = ("promod_dec_cmp", "promod_dec_sum")
"""The SQL functions compiled segments call; ``register_sql_functions`` installs them."""

_DECIMAL_STRING = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_NUMBER_TEXT = re.compile(r'"(-?[0-9]+(?:\.[0-9]+)?)"|(-?[0-9]+(?:\.[0-9]+)?)([eE][+-]?[0-9]+)?')
_MAX_NUMBER_TEXT = 200
_MAX_EXPONENT = 900
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
# Wide enough that any sum of in-range numbers is exact; Inexact would raise otherwise.
_SUM_CONTEXT = Context(prec=2400, Emax=10_000, Emin=-10_000, traps=[Inexact, Overflow])


# ---------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------


def _bounded(number: Decimal) -> Decimal | None:
    if not number.is_finite():
        return None
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)
    if number.adjusted() > _MAX_EXPONENT or exponent < -_MAX_EXPONENT:
        return None
    return number


def decimal_value(value: object) -> Decimal | None:
    """The exact number a stored value stands for, or None when it is not a number.

    Numbers are JSON integers and JSON decimals (given as their JSON text, as SQLite's
    ``->`` operator returns them), Python ints and Decimals, and strings in decimal
    notation (``"59.90"``, ``"-3"``; a JSON string's quotes may be included). Booleans
    and any other string are not numbers; neither are values beyond 10^900 in size or
    precision.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return _bounded(Decimal(value))
    if isinstance(value, Decimal):
        return _bounded(value)
    if isinstance(value, float):
        return _bounded(Decimal(repr(value))) if value == value else None
    if not isinstance(value, str) or len(value) > _MAX_NUMBER_TEXT:
        return None
    match = _NUMBER_TEXT.fullmatch(value)
    if match is None:
        return None
    if match.group(3) is None:
        # At most _MAX_NUMBER_TEXT digits without an exponent: always within bounds.
        return Decimal(match.group(1) or match.group(2))
    return _bounded(Decimal(value))


def _dec_cmp(left: object, right: object) -> int | None:
    a = decimal_value(left)
    b = decimal_value(right)
    if a is None or b is None:
        return None
    return (a > b) - (a < b)


class _DecimalSum:
    """SQL aggregate ``promod_dec_sum(x)``: the exact sum of the numbers among x, as text."""

    def __init__(self) -> None:
        self.total = Decimal(0)

    def step(self, value: object) -> None:
        number = decimal_value(value)
        if number is not None:
            self.total = _SUM_CONTEXT.add(self.total, number)

    def finalize(self) -> str:
        return _number_text(self.total)


def _number_text(number: Decimal) -> str:
    return format(number, "f")


# ---------------------------------------------------------------------------
# AST
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """One operator and its operand: ``op`` in eq ne gt gte lt lte in exists."""

    op: str
    value: Scalar | tuple[Scalar, ...]


@dataclass(frozen=True)
class TagRule:
    """The customer carries ``tag``."""

    tag: str


@dataclass(frozen=True)
class ListRule:
    """The customer is on the custom list ``name``."""

    name: str


@dataclass(frozen=True)
class ConsentRule:
    """The customer has granted ``consent`` (and not withdrawn it)."""

    consent: str


@dataclass(frozen=True)
class AttrRule:
    """Every comparison holds for the profile attribute ``attr``."""

    attr: str
    tests: tuple[Comparison, ...]


@dataclass(frozen=True)
class PropertyTest:
    """Every comparison holds for the event property ``prop`` (an event ``where`` entry)."""

    prop: str
    tests: tuple[Comparison, ...]


@dataclass(frozen=True)
class EventRule:
    """Events named ``event`` in the window, filtered by ``where``, counted or summed.

    ``within`` is the window in seconds before ``as_of`` (None: all history up to
    ``as_of``). Without ``tests`` at least one such event must exist; with them, every
    comparison must hold for the aggregate: the number of events, or the exact sum of
    the property ``sum`` when it is given.
    """

    event: str
    within: int | None = None
    where: tuple[PropertyTest, ...] = ()
    sum: str | None = None
    tests: tuple[Comparison, ...] = ()


@dataclass(frozen=True)
class AllRule:
    """Every rule holds (true when empty)."""

    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class AnyRule:
    """At least one rule holds (false when empty)."""

    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class NotRule:
    """The rule does not hold."""

    rule: Rule


Rule: TypeAlias = (
    TagRule | ListRule | ConsentRule | AttrRule | EventRule | AllRule | AnyRule | NotRule
)


@dataclass(frozen=True)
class Segment:
    """A validated segment; ``rule`` is the root (an empty ``AllRule`` selects everyone)."""

    rule: Rule

    def to_dict(self) -> dict[str, Any]:
        """The segment as a table that ``parse_segment`` reads back into an equal Segment."""
        if isinstance(self.rule, AllRule) and not self.rule.rules:
            return {}
        return _rule_to_dict(self.rule)


def _window_text(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _operand_out(value: Scalar | tuple[Scalar, ...]) -> Any:
    if isinstance(value, tuple):
        return [_operand_out(item) for item in value]
    if isinstance(value, Decimal):
        return _number_text(value)
    return value


def _tests_out(tests: tuple[Comparison, ...]) -> dict[str, Any]:
    return {test.op: _operand_out(test.value) for test in tests}


def _rule_to_dict(rule: Rule) -> dict[str, Any]:
    if isinstance(rule, TagRule):
        return {"tag": rule.tag}
    if isinstance(rule, ListRule):
        return {"list": rule.name}
    if isinstance(rule, ConsentRule):
        return {"consent": rule.consent}
    if isinstance(rule, AttrRule):
        return {"attr": rule.attr, **_tests_out(rule.tests)}
    if isinstance(rule, EventRule):
        out: dict[str, Any] = {"event": rule.event}
        if rule.within is not None:
            out["within"] = _window_text(rule.within)
        if rule.where:
            out["where"] = {test.prop: _tests_out(test.tests) for test in rule.where}
        if rule.sum is not None:
            out["sum"] = rule.sum
        out.update(_tests_out(rule.tests))
        return out
    if isinstance(rule, AllRule):
        return {"all": [_rule_to_dict(item) for item in rule.rules]}
    if isinstance(rule, AnyRule):
        return {"any": [_rule_to_dict(item) for item in rule.rules]}
    return {"not": _rule_to_dict(rule.rule)}
