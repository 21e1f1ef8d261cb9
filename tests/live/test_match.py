"""Live trigger filters: exact numbers, and the same answers as the segment SQL."""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal
from typing import Any

import pytest

from promod.campaigns.segments import (
    EventRule,
    Segment,
    compile_segment,
    parse_segment,
    register_sql_functions,
)
from promod.live.match import aggregate_holds, number, rule_total, where_matches

VALUES: list[Any] = [
    None,
    0,
    5,
    50,
    "50",
    "50.00",
    "49.999999999999999999999",
    "50.000000000000000000001",
    "59.90",
    -3,
    "-3.5",
    2**63 + 1,
    "abc",
    "ABC",
    "",
    True,
    False,
    "true",
    [1, 2],
    {"a": 1},
    "1e3",
    " 50",
]

CONDITIONS: list[dict[str, Any]] = [
    {"gte": 50},
    {"gte": "50"},
    {"gt": "49.99999999999999999999"},
    {"lt": "50.000000000000000000001"},
    {"eq": "50.0"},
    {"eq": 50},
    {"ne": 50},
    {"in": [5, "59.9", "abc"]},
    {"eq": True},
    {"eq": "abc"},
    {"gt": "abb"},
    {"lte": "ABD"},
    {"exists": True},
    {"exists": False},
    {"gte": 0, "lt": 10},
    {"gt": 9223372036854775807},
]


def _rule(condition: dict[str, Any]) -> EventRule:
    rule = parse_segment({"event": "e", "where": {"p": condition}}).rule
    assert isinstance(rule, EventRule)
    return rule


def _sql_matches(rows: list[tuple[str, Any]], condition: dict[str, Any]) -> set[str]:
    conn = sqlite3.connect(":memory:")
    register_sql_functions(conn)
    conn.execute("CREATE TABLE customers (id TEXT PRIMARY KEY, attributes TEXT)")
    conn.execute(
        "CREATE TABLE events (seq INTEGER PRIMARY KEY, customer_id TEXT, name TEXT,"
        " ts INTEGER, properties TEXT)"
    )
    for cid, value in rows:
        props = {} if value is None and cid.endswith("missing") else {"p": value}
        conn.execute("INSERT INTO customers VALUES (?, '{}')", (cid,))
        conn.execute(
            "INSERT INTO events (customer_id, name, ts, properties) VALUES (?, 'e', 1, ?)",
            (cid, json.dumps(props)),
        )
    sql, params = compile_segment(Segment(_rule(condition)), as_of=10)
    return {row[0] for row in conn.execute(sql, params)}


@pytest.mark.parametrize("condition", CONDITIONS, ids=lambda c: json.dumps(c))
def test_where_agrees_with_the_segment_sql(condition: dict[str, Any]) -> None:
    rows = [(f"c{i}", value) for i, value in enumerate(VALUES)] + [("c-missing", None)]
    expected = _sql_matches(rows, condition)
    rule = _rule(condition)
    got = set()
    for cid, value in rows:
        props = {} if cid == "c-missing" else {"p": value}
        # Properties come back from the store as JSON, decimals as Decimal.
        props = json.loads(json.dumps(props), parse_float=Decimal)
        if where_matches(rule.where, props):
            got.add(cid)
    assert got == expected


def test_numbers_are_exact_and_strings_only_in_decimal_notation() -> None:
    assert number("59.90") == Decimal("59.9")
    assert number(True) is None
    assert number("1e3") is None
    assert number(" 5") is None
    rule = _rule({"gt": "0.1"})
    assert where_matches(rule.where, {"p": "0.1000000000000000000000000001"})
    assert not where_matches(rule.where, {"p": "0.1"})


def test_sum_and_count_thresholds_are_exact() -> None:
    rule = parse_segment({"event": "purchase", "sum": "amount", "gte": "100"}).rule
    assert isinstance(rule, EventRule)
    events = [{"amount": "33.33"}, {"amount": "33.33"}, {"amount": "33.34"}, {"amount": "x"}]
    assert rule_total(rule, events) == Decimal("100.00")
    assert aggregate_holds(rule.tests, rule_total(rule, events))
    assert not aggregate_holds(rule.tests, rule_total(rule, events[:2]))
    third = parse_segment({"event": "purchase", "within": "30d", "eq": 3}).rule
    assert isinstance(third, EventRule)
    assert aggregate_holds(third.tests, rule_total(third, events[:3]))
    assert not aggregate_holds(third.tests, rule_total(third, events))
