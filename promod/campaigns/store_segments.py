"""The segment compiler: a validated segment (:mod:`promod.campaigns.segments`) as SQL.

``compile_segment`` turns the AST into one ``SELECT`` over the customer tables that
returns a distinct ``customer_id`` column. JSON values are read through SQLite's
``json_each``, ``->`` and ``json_type``; numbers compare and sum exactly through the
Python SQL functions ``promod_dec_cmp`` and ``promod_dec_sum``
(:data:`promod.campaigns.segments.SQL_FUNCTION_DEFS`), which the backend installs
on its connections. This is the one SQLite-shaped store module left
(docs/architecture.md, "The store seam")::

    sql, params = compile_segment(seg, as_of=1_790_000_000)
    ids = [row[0] for row in tx.fetch_all(sql, params)]
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, TypeAlias

from promod.campaigns.segment_ast import (
    _DECIMAL_STRING,
    _INT64_MAX,
    _INT64_MIN,
    _MAX_NUMBER_TEXT,
    AllRule,
    AttrRule,
    Comparison,
    ConsentRule,
    EventRule,
    ListRule,
    NotRule,
    Rule,
    Scalar,
    Segment,
    TagRule,
    _number_text,
    decimal_value,
)

__all__ = ["compile_segment"]


# ---------------------------------------------------------------------------
# Compilation
# ---------------------------------------------------------------------------

Fragment: TypeAlias = tuple[str, list[Any]]
_SQL_OPS = {"eq": "=", "ne": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def compile_segment(seg: Segment, *, as_of: int) -> tuple[str, list[Any]]:
    """SQL and parameters selecting the distinct ``customer_id`` of every matching customer.

    ``as_of`` (unix seconds) is the end of every event window: events after it are
    ignored and ``within = "90d"`` covers ``as_of - 90d <= ts <= as_of``. The SQL needs
    the functions of :func:`register_sql_functions` on the connection that runs it.
    """
    if isinstance(as_of, bool) or not isinstance(as_of, int):
        raise TypeError(f"as_of must be unix seconds as an int, not {type(as_of).__name__}")
    where, params = _Compiler(as_of).rule(seg.rule)
    return f"SELECT c.id AS customer_id FROM customers AS c WHERE {where}", params


def _holds(op: str, left: Decimal, right: Decimal) -> bool:
    if op == "eq":
        return left == right
    if op == "ne":
        return left != right
    if op == "gt":
        return left > right
    if op == "gte":
        return left >= right
    if op == "lt":
        return left < right
    return left <= right


def _numeric_operand(value: Scalar) -> Decimal | None:
    """The number an operand stands for: ints, Decimals and decimal-notation strings.

    A string operand is a number only in decimal notation: ``"1e3"`` is a string
    (stored JSON numbers may use an exponent, rule operands may not).
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and not _DECIMAL_STRING.fullmatch(value):
        return None
    return decimal_value(value)


def _json_path(key: str) -> str:
    """A SQL string literal of the JSON path of one object key (no quotes or backslashes)."""
    return "'$.\"" + key.replace("'", "''") + "\"'"


def _aggregate_operand(test: Comparison) -> Decimal:
    assert not isinstance(test.value, tuple | bool)
    number = decimal_value(test.value)
    assert number is not None
    return number


class _Compiler:
    def __init__(self, as_of: int) -> None:
        self.as_of = as_of

    def rule(self, rule: Rule) -> Fragment:
        if isinstance(rule, TagRule):
            return "c.id IN (SELECT customer_id FROM customer_tags WHERE tag = ?)", [rule.tag]
        if isinstance(rule, ListRule):
            return "c.id IN (SELECT customer_id FROM custom_lists WHERE name = ?)", [rule.name]
        if isinstance(rule, ConsentRule):
            return (
                "EXISTS (SELECT 1 FROM customer_consents AS cc WHERE cc.customer_id = c.id"
                " AND cc.consent = ? AND cc.granted = 1)",
                [rule.consent],
            )
        if isinstance(rule, AttrRule):
            return self.tests("c.attributes", rule.attr, rule.tests)
        if isinstance(rule, EventRule):
            return self.event(rule)
        if isinstance(rule, NotRule):
            sql, params = self.rule(rule.rule)
            return f"NOT ({sql})", params
        if not rule.rules:
            return ("1" if isinstance(rule, AllRule) else "0"), []
        joiner = " AND " if isinstance(rule, AllRule) else " OR "
        parts = [self.rule(item) for item in rule.rules]
        return (
            "(" + joiner.join(sql for sql, _ in parts) + ")",
            [param for _, part in parts for param in part],
        )

    # -- JSON values -------------------------------------------------------
    #
    # A value test reads the key once through json_each (alias j): j.type is the JSON
    # type, j.atom the SQL value; j.key IS NULL keeps the scalar at the path itself.

    def tests(self, column: str, key: str, tests: tuple[Comparison, ...]) -> Fragment:
        path = _json_path(key)
        source = f"SELECT 1 FROM json_each({column}, {path}) AS j WHERE j.key IS NULL"
        if len(tests) == 1 and tests[0].op == "exists":
            found = f"EXISTS ({source} AND j.type <> 'null')"
            return (found if tests[0].value else f"NOT {found}"), []
        raw = f"CASE j.type WHEN 'text' THEN json_quote(j.atom) ELSE {column} -> {path} END"
        conditions = [source, "j.type <> 'null'"]
        params: list[Any] = []
        for test in tests:
            sql, more = self.test(test, raw)
            conditions.append(sql)
            params.extend(more)
        return f"EXISTS ({' AND '.join(conditions)})", params

    def test(self, test: Comparison, raw: str) -> Fragment:
        if test.op == "in":
            assert isinstance(test.value, tuple)
            return self.equal_any(test.value, raw)
        assert not isinstance(test.value, tuple)
        if test.op == "eq":
            return self.equal_any((test.value,), raw)
        if test.op == "ne":
            sql, params = self.equal_any((test.value,), raw)
            return f"NOT {sql}", params
        number = _numeric_operand(test.value)
        if number is not None:
            return self.numeric(test.op, number, raw)
        return f"(j.type = 'text' AND j.atom {_SQL_OPS[test.op]} ?)", [test.value]

    def equal_any(self, values: tuple[Scalar, ...], raw: str) -> Fragment:
        texts: list[str] = []
        booleans: list[str] = []
        numbers: list[Decimal] = []
        for value in values:
            if isinstance(value, bool):
                booleans.append("true" if value else "false")
                continue
            number = _numeric_operand(value)
            if number is not None:
                numbers.append(number)
            else:
                assert isinstance(value, str)
                texts.append(value)
        parts: list[Fragment] = []
        if texts:
            marks = ", ".join("?" for _ in texts)
            parts.append((f"(j.type = 'text' AND j.atom IN ({marks}))", list(texts)))
        if booleans:
            marks = ", ".join("?" for _ in booleans)
            parts.append((f"j.type IN ({marks})", list(booleans)))
        for number in numbers:
            parts.append(self.numeric("eq", number, raw))
        if len(parts) == 1:
            return parts[0]
        return (
            "(" + " OR ".join(sql for sql, _ in parts) + ")",
            [param for _, part in parts for param in part],
        )

    def numeric(self, op: str, number: Decimal, raw: str) -> Fragment:
        """Exact numeric comparison of j, in C for all but near ties.

        64-bit JSON integers against an integral operand compare exactly in SQL. Other
        numbers (JSON decimals, decimal strings) compare as doubles when they are
        clearly apart, far beyond any rounding error; only near ties and values out of
        double range are decided by ``promod_dec_cmp`` on the exact text.
        """
        sql_op = _SQL_OPS[op]
        # j.atom matches -?[0-9]+(\.[0-9]+)? : only digits, dots and a leading minus, at
        # most one dot, a digit first (after the minus) and last.
        decimal_text = (
            f"(j.type = 'text' AND length(j.atom) <= {_MAX_NUMBER_TEXT}"
            " AND j.atom NOT GLOB '*[^0-9.-]*' AND j.atom NOT GLOB '?*-*'"
            " AND j.atom NOT GLOB '*.*.*' AND j.atom GLOB '*[0-9]'"
            " AND (j.atom GLOB '[0-9]*' OR j.atom GLOB '-[0-9]*'))"
        )
        approx = "CAST(j.atom AS REAL)"
        sql = (
            f"CASE WHEN NOT (j.type IN ('integer', 'real') OR {decimal_text}) THEN 0"
            f" WHEN abs({approx} - ?) > 1e-9 * (abs({approx}) + abs(?)) THEN {approx} {sql_op} ?"
            f" ELSE coalesce(promod_dec_cmp({raw}, ?) {sql_op} 0, 0) END"
        )
        approx_operand = float(number)
        params: list[Any] = [approx_operand] * 3 + [_number_text(number)]
        if number == number.to_integral_value() and _INT64_MIN <= number <= _INT64_MAX:
            # SQLite compares 64-bit integers exactly.
            sql = (
                "CASE WHEN j.type = 'integer' AND typeof(j.atom) = 'integer'"
                f" THEN j.atom {sql_op} ? ELSE {sql} END"
            )
            params = [int(number), *params]
        return f"({sql})", params

    # -- events ------------------------------------------------------------

    def event(self, rule: EventRule) -> Fragment:
        filters = ["e.name = ?", "e.ts <= ?"]
        params: list[Any] = [rule.event, self.as_of]
        if rule.within is not None:
            filters.append("e.ts >= ?")
            params.append(self.as_of - rule.within)
        for prop in rule.where:
            sql, more = self.tests("e.properties", prop.prop, prop.tests)
            filters.append(sql)
            params.extend(more)
        source = "SELECT e.customer_id FROM events AS e WHERE " + " AND ".join(filters)
        if not rule.tests:
            return f"c.id IN ({source})", params
        if rule.sum is not None:
            return self.event_sum(rule, filters, params)
        checks = [f"count(*) {_SQL_OPS[t.op]} ?" for t in rule.tests]
        having = " AND ".join(checks)
        having_params = [t.value for t in rule.tests]
        grouped = f"{source} GROUP BY e.customer_id HAVING "
        if all(_holds(t.op, Decimal(0), _aggregate_operand(t)) for t in rule.tests):
            # Customers without any matching event qualify too: exclude the failing ones.
            return f"c.id NOT IN ({grouped}NOT ({having}))", [*params, *having_params]
        return f"c.id IN ({grouped}{having})", [*params, *having_params]

    def event_sum(self, rule: EventRule, filters: list[str], params: list[Any]) -> Fragment:
        # Per customer, so that the exact (Python) sum only runs for customers that pass
        # the cheaper conditions evaluated before it.
        assert rule.sum is not None
        path = _json_path(rule.sum)
        summed = (
            f"CASE json_type(e.properties, {path}) WHEN 'text'"
            f" THEN json_quote(json_extract(e.properties, {path})) ELSE e.properties -> {path} END"
        )
        total = (
            f"coalesce((SELECT promod_dec_sum({summed}) FROM events AS e"
            " WHERE e.customer_id = c.id AND " + " AND ".join(filters) + "), '0')"
        )
        total_params = params
        checks = [f"promod_dec_cmp({total}, ?) {_SQL_OPS[t.op]} 0" for t in rule.tests]
        checks_params = [
            param
            for t in rule.tests
            for param in (*total_params, _number_text(_aggregate_operand(t)))
        ]
        if len(checks) == 1:
            return checks[0], checks_params
        return "(" + " AND ".join(checks) + ")", checks_params
