"""Matching one event against a trigger's ``where`` filters and count/sum thresholds, exactly.

The same semantics as the segment language compiled to SQL (promod.campaigns.segments),
evaluated in Python on one event's properties: numbers and decimal strings compare as
exact decimals (``"59.90"`` equals ``59.9``, never via floats), other strings compare as
text, booleans only with booleans; a missing or null property (or an array or object)
fails every test except ``exists = false``::

    rule = parse_segment({"event": "purchase", "where": {"total": {"gte": "50"}}}).rule
    where_matches(rule.where, {"total": "59.90"})      # True
    aggregate_holds(rule.tests, count=3, total=None)   # True when there are no tests
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from decimal import Context, Decimal
from typing import Any

from promod.campaigns.segments import Comparison, EventRule, PropertyTest, decimal_value

__all__ = ["aggregate_holds", "comparison_holds", "number", "rule_total", "where_matches"]

_DECIMAL_STRING = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_MAX_NUMBER_TEXT = 200
# Wide enough that sums of in-range numbers are exact (as promod_dec_sum in SQL).
_SUM_CONTEXT = Context(prec=2400, Emax=10_000, Emin=-10_000)


def number(value: object) -> Decimal | None:
    """The exact number a property value stands for, or None (booleans are not numbers)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        if len(value) > _MAX_NUMBER_TEXT or _DECIMAL_STRING.fullmatch(value) is None:
            return None
        return Decimal(value)
    return decimal_value(value)


def _present(value: object) -> bool:
    return value is not None and not isinstance(value, list | dict)


def _equal(operand: object, value: object) -> bool:
    if isinstance(operand, bool):
        return isinstance(value, bool) and value == operand
    wanted = number(operand)
    if wanted is not None:
        got = number(value)
        return got is not None and got == wanted
    return isinstance(value, str) and value == operand


def _order(op: str, left: Any, right: Any) -> bool:
    if op == "gt":
        return bool(left > right)
    if op == "gte":
        return bool(left >= right)
    if op == "lt":
        return bool(left < right)
    return bool(left <= right)


def comparison_holds(test: Comparison, value: object) -> bool:
    """Whether one comparison holds for a property value (``None`` when absent)."""
    present = _present(value)
    if test.op == "exists":
        return present == test.value
    if not present:
        return False
    if test.op == "in":
        assert isinstance(test.value, tuple)
        return any(_equal(item, value) for item in test.value)
    if test.op == "eq":
        return _equal(test.value, value)
    if test.op == "ne":
        return not _equal(test.value, value)
    wanted = number(test.value)
    if wanted is not None:
        got = number(value)
        return got is not None and _order(test.op, got, wanted)
    return isinstance(value, str) and _order(test.op, value, test.value)


def where_matches(where: Iterable[PropertyTest], properties: Mapping[str, Any]) -> bool:
    """Every ``where`` entry holds for the event's properties."""
    for prop in where:
        value = properties.get(prop.prop)
        for test in prop.tests:
            if not comparison_holds(test, value):
                return False
    return True


def aggregate_holds(tests: Iterable[Comparison], aggregate: Decimal) -> bool:
    """Every count/sum comparison holds for the aggregate (the count, or the exact sum)."""
    for test in tests:
        wanted = number(test.value)
        assert wanted is not None  # the parser only lets numbers through
        if test.op == "eq":
            ok = aggregate == wanted
        elif test.op == "ne":
            ok = aggregate != wanted
        else:
            ok = _order(test.op, aggregate, wanted)
        if not ok:
            return False
    return True


def rule_total(rule: EventRule, matching: Iterable[Mapping[str, Any]]) -> Decimal:
    """The aggregate a rule's tests compare: the count of events, or the exact sum of
    ``rule.sum`` over them (values that are not numbers are skipped, as in SQL)."""
    if rule.sum is None:
        return Decimal(sum(1 for _ in matching))
    total = Decimal(0)
    for properties in matching:
        value = number(properties.get(rule.sum))
        if value is not None:
            total = _SUM_CONTEXT.add(total, value)
    return total
