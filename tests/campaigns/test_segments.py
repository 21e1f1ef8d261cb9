"""Segment rules: validation with key paths, and SQL results equal to a plain Python reading."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from promod.campaigns.segments import (
    AllRule,
    AttrRule,
    Comparison,
    EventRule,
    NotRule,
    Segment,
    SegmentError,
    TagRule,
    compile_segment,
    parse_segment,
    register_sql_functions,
    register_sql_functions_async,
)

MIGRATION = (
    Path(__file__).resolve().parents[2] / "promod" / "store" / "migrations" / "0002_customers.sql"
)
AS_OF = 1_800_000_000
DAY = 86400


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# ---------------------------------------------------------------------------
# A small dataset, written to a real SQLite database with the 0002 schema
# ---------------------------------------------------------------------------


@dataclass
class Customer:
    id: str
    attributes: dict[str, Any] = field(default_factory=dict)  # values as JSON text
    tags: set[str] = field(default_factory=set)
    lists: set[str] = field(default_factory=set)
    consents: dict[str, bool] = field(default_factory=dict)


@dataclass
class Event:
    customer_id: str
    name: str
    ts: int
    properties: dict[str, str] = field(default_factory=dict)  # values as JSON text


def json_object(values: dict[str, str]) -> str:
    """A JSON object from already-encoded JSON values (keeps decimals exactly as written)."""
    return "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in values.items()) + "}"


def database(customers: list[Customer], events: list[Event]) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.executescript(MIGRATION.read_text())
    register_sql_functions(conn)
    stamp = "2026-01-01T00:00:00Z"
    for c in customers:
        conn.execute(
            "INSERT INTO customers (id, attributes, created_at, updated_at) VALUES (?, ?, ?, ?)",
            (c.id, json_object(c.attributes), stamp, stamp),
        )
        conn.executemany(
            "INSERT INTO customer_tags (tag, customer_id) VALUES (?, ?)",
            [(tag, c.id) for tag in c.tags],
        )
        conn.executemany(
            "INSERT INTO custom_lists (name, customer_id) VALUES (?, ?)",
            [(name, c.id) for name in c.lists],
        )
        conn.executemany(
            "INSERT INTO customer_consents (customer_id, consent, granted, updated_at, source)"
            " VALUES (?, ?, ?, ?, 'import')",
            [(c.id, name, int(granted), stamp) for name, granted in c.consents.items()],
        )
    conn.executemany(
        "INSERT INTO events (customer_id, name, ts, properties) VALUES (?, ?, ?, ?)",
        [(e.customer_id, e.name, e.ts, json_object(e.properties)) for e in events],
    )
    return conn


def select(conn: sqlite3.Connection, rule: Any, as_of: int = AS_OF) -> set[str]:
    sql, params = compile_segment(parse_segment(rule), as_of=as_of)
    cursor = conn.execute(sql, params)
    assert [d[0] for d in cursor.description] == ["customer_id"]
    rows = [row[0] for row in cursor]
    assert len(rows) == len(set(rows))
    return set(rows)


# ---------------------------------------------------------------------------
# The reference: the rule language read directly from the rule tables
# ---------------------------------------------------------------------------

DECIMAL_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def number(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, str) and DECIMAL_TEXT.fullmatch(value):
        return Decimal(value)
    return None


def compare(left: Any, op: str, right: Any) -> bool:
    return {
        "eq": left == right,
        "ne": left != right,
        "gt": left > right,
        "gte": left >= right,
        "lt": left < right,
        "lte": left <= right,
    }[op]


def equals(value: Any, operand: Any) -> bool:
    if isinstance(operand, bool):
        return isinstance(value, bool) and value == operand
    wanted = number(operand)
    if wanted is not None:
        have = number(value)
        return have is not None and have == wanted
    return isinstance(value, str) and value == operand


def holds(values: dict[str, Any], key: str, op: str, operand: Any) -> bool:
    present = values.get(key) is not None
    value = values.get(key)
    if op == "exists":
        return present == operand
    if not present:
        return False
    if op == "in":
        return any(equals(value, item) for item in operand)
    if op == "eq":
        return equals(value, operand)
    if op == "ne":
        return not equals(value, operand)
    wanted = number(operand)
    if wanted is not None:
        have = number(value)
        return have is not None and compare(have, op, wanted)
    return isinstance(value, str) and compare(value, op, operand)


WINDOWS = {"1d": DAY, "30d": 30 * DAY, "90d": 90 * DAY}
OPS = ("eq", "ne", "gt", "gte", "lt", "lte")


def decode(values: dict[str, str]) -> dict[str, Any]:
    return json.loads(json_object(values), parse_float=Decimal)


def matches(rule: dict[str, Any], c: Customer, events: list[Event], as_of: int) -> bool:
    results: list[bool] = []
    if "tag" in rule:
        results.append(rule["tag"] in c.tags)
    if "list" in rule:
        results.append(rule["list"] in c.lists)
    if "consent" in rule:
        results.append(c.consents.get(rule["consent"], False))
    if "attr" in rule:
        attrs = decode(c.attributes)
        results.append(
            all(
                holds(attrs, rule["attr"], op, rule[op])
                for op in (*OPS, "in", "exists")
                if op in rule
            )
        )
    if "event" in rule:
        start = as_of - WINDOWS[rule["within"]] if "within" in rule else None
        chosen = [
            e
            for e in events
            if e.customer_id == c.id
            and e.name == rule["event"]
            and e.ts <= as_of
            and (start is None or e.ts >= start)
            and all(
                holds(decode(e.properties), prop, op, operand)
                for prop, tests in rule.get("where", {}).items()
                for op, operand in tests.items()
            )
        ]
        ops = [op for op in OPS if op in rule]
        if "sum" in rule:
            total = sum(
                (number(decode(e.properties).get(rule["sum"])) or Decimal(0) for e in chosen),
                Decimal(0),
            )
            results.append(all(compare(total, op, number(rule[op])) for op in ops))
        elif ops:
            results.append(all(compare(len(chosen), op, rule[op]) for op in ops))
        else:
            results.append(bool(chosen))
    if "all" in rule:
        results.append(all(matches(r, c, events, as_of) for r in rule["all"]))
    if "any" in rule:
        results.append(any(matches(r, c, events, as_of) for r in rule["any"]))
    if "not" in rule:
        results.append(not matches(rule["not"], c, events, as_of))
    return all(results)


# ---------------------------------------------------------------------------
# Random data and random rule trees
# ---------------------------------------------------------------------------

# JSON texts of stored values, chosen to meet the operands below at ties and near ties.
STORED_VALUES = [
    '"2.5"',
    '"2.50"',
    '"2.500000000000000001"',
    "2.5",
    "2.5000000000000000001",
    "2",
    '"2"',
    "10",
    '"10.0"',
    "-1",
    '"-1"',
    "0",
    "9223372036854775807",
    "9223372036854775808",
    "123456789012345678901234567890",
    '"0.1"',
    '"0.2"',
    '"0.3"',
    '"abc"',
    '"B"',
    '"é"',
    '"2.5x"',
    '"-"',
    '"1e3"',
    "1e3",
    "true",
    "false",
    "null",
]
OPERANDS: list[Any] = [
    "2.5",
    "2.500000000000000001",
    "10",
    "-1",
    "0.3",
    "0.6",
    "abc",
    "B",
    "a",
    "1e3",
    2,
    10,
    0,
    -1,
    1000,
    9223372036854775807,
    2**63,
    Decimal("2.50"),
    Decimal("0.30"),
]
KEYS = ["k1", "k2"]

customers_st = st.lists(
    st.builds(
        Customer,
        id=st.just(""),
        attributes=st.dictionaries(st.sampled_from(KEYS), st.sampled_from(STORED_VALUES)),
        tags=st.sets(st.sampled_from(["a", "b", "c"])),
        lists=st.sets(st.sampled_from(["l1", "l2"])),
        consents=st.dictionaries(st.sampled_from(["m", "s"]), st.booleans()),
    ),
    max_size=7,
)


def events_st(count: int) -> st.SearchStrategy[list[Event]]:
    if count == 0:
        return st.just([])
    return st.lists(
        st.builds(
            Event,
            customer_id=st.integers(0, count - 1).map(lambda i: f"c{i}"),
            name=st.sampled_from(["purchase", "login"]),
            ts=st.sampled_from(
                [
                    AS_OF + d
                    for d in (0, 1, -DAY, -DAY - 1, -30 * DAY, -45 * DAY, -90 * DAY, -200 * DAY)
                ]
            ),
            properties=st.dictionaries(
                st.sampled_from(["amount", "k1"]), st.sampled_from(STORED_VALUES)
            ),
        ),
        max_size=14,
    )


operand_st = st.sampled_from(OPERANDS) | st.booleans()
ordered_operand_st = st.sampled_from(OPERANDS)


@st.composite
def value_tests(draw: st.DrawFn) -> dict[str, Any]:
    form = draw(st.sampled_from(["exists", "in", "ops"]))
    if form == "exists":
        return {"exists": draw(st.booleans())}
    if form == "in":
        return {"in": draw(st.lists(operand_st, min_size=1, max_size=3))}
    ops = draw(st.lists(st.sampled_from(OPS), min_size=1, max_size=2, unique=True))
    return {op: draw(operand_st if op in ("eq", "ne") else ordered_operand_st) for op in ops}


@st.composite
def event_rule(draw: st.DrawFn) -> dict[str, Any]:
    rule: dict[str, Any] = {"event": draw(st.sampled_from(["purchase", "login"]))}
    if draw(st.booleans()):
        rule["within"] = draw(st.sampled_from(sorted(WINDOWS)))
    if draw(st.booleans()):
        rule["where"] = {draw(st.sampled_from(["amount", "k1"])): draw(value_tests())}
    aggregate = draw(st.sampled_from(["exists", "count", "sum"]))
    ops = draw(st.lists(st.sampled_from(OPS), min_size=1, max_size=2, unique=True))
    if aggregate == "count":
        rule.update({op: draw(st.integers(0, 3)) for op in ops})
    elif aggregate == "sum":
        rule["sum"] = "amount"
        amounts = st.sampled_from(["0", "0.3", "0.6", "2.5", "12.8", 0, 3, Decimal("2.50")])
        rule.update({op: draw(amounts) for op in ops})
    return rule


leaf_st = st.one_of(
    st.builds(lambda t: {"tag": t}, st.sampled_from(["a", "b", "c"])),
    st.builds(lambda n: {"list": n}, st.sampled_from(["l1", "l2"])),
    st.builds(lambda n: {"consent": n}, st.sampled_from(["m", "s"])),
    st.builds(lambda k, t: {"attr": k, **t}, st.sampled_from(KEYS), value_tests()),
    event_rule(),
)
rule_st = st.recursive(
    leaf_st,
    lambda inner: st.one_of(
        st.builds(lambda rs: {"all": rs}, st.lists(inner, max_size=3)),
        st.builds(lambda rs: {"any": rs}, st.lists(inner, max_size=3)),
        st.builds(lambda r: {"not": r}, inner),
        st.builds(lambda leaf, rs: {**leaf, "any": rs}, leaf_st, st.lists(inner, max_size=2)),
    ),
    max_leaves=6,
)


@st.composite
def datasets(draw: st.DrawFn) -> tuple[list[Customer], list[Event]]:
    customers = draw(customers_st)
    for i, c in enumerate(customers):
        c.id = f"c{i}"
    return customers, draw(events_st(len(customers)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=datasets(), rule=rule_st)
# A string operand with an exponent is a string, not the number 1000: "2.5" > "1e3".
@example(data=([Customer("c0", {"k1": '"2.5"'})], []), rule={"attr": "k1", "gt": "1e3"})
def test_sql_selects_exactly_the_customers_the_rules_describe(
    data: tuple[list[Customer], list[Event]], rule: dict[str, Any]
) -> None:
    customers, events = data
    conn = database(customers, events)
    try:
        expected = {c.id for c in customers if matches(rule, c, events, AS_OF)}
        assert select(conn, rule) == expected
    finally:
        conn.close()


@given(rule=rule_st)
def test_to_dict_reads_back_into_the_same_segment(rule: dict[str, Any]) -> None:
    segment = parse_segment(rule)
    assert parse_segment(segment.to_dict()) == segment
    assert json.loads(json.dumps(segment.to_dict())) == segment.to_dict()


# ---------------------------------------------------------------------------
# Exactness and windows, by example
# ---------------------------------------------------------------------------


@pytest.fixture
def shop() -> Iterator[sqlite3.Connection]:
    customers = [
        Customer("tenths", {"ltv": '"100.10"', "score": "0.30000000000000000001"}, {"vip"}),
        Customer("big", {"ltv": "9223372036854775808", "country": '"DE"'}),
        Customer("plain", {"ltv": "100", "country": '"AT"', "vip": "true"}, consents={"m": True}),
        Customer("withdrawn", {"ltv": '"abc"'}, consents={"m": False}),
    ]
    events = [
        # 0.1 + 0.2 is exactly 0.3 here, and 33.33 * 3 is exactly 99.99.
        Event("tenths", "purchase", AS_OF - DAY, {"amount": '"0.1"'}),
        Event("tenths", "purchase", AS_OF - 2 * DAY, {"amount": '"0.2"'}),
        Event("plain", "purchase", AS_OF - 90 * DAY, {"amount": '"33.33"'}),
        Event("plain", "purchase", AS_OF, {"amount": '"33.33"'}),
        Event("plain", "purchase", AS_OF - 10, {"amount": '"33.33"', "shop": '"web"'}),
        Event("plain", "purchase", AS_OF + 1, {"amount": '"1000"'}),
        Event("big", "purchase", AS_OF - 90 * DAY - 1, {"amount": '"500"'}),
    ]
    conn = database(customers, events)
    yield conn
    conn.close()


def test_decimal_sums_are_exact(shop: sqlite3.Connection) -> None:
    rule = {"event": "purchase", "within": "90d", "sum": "amount", "eq": "0.3"}
    assert select(shop, rule) == {"tenths"}
    rule = {"event": "purchase", "within": "90d", "sum": "amount", "gte": "99.99"}
    assert select(shop, rule) == {"plain"}
    rule = {"event": "purchase", "within": "90d", "sum": "amount", "gt": "99.99"}
    assert select(shop, rule) == set()


def test_window_ends_at_as_of_and_includes_both_edges(shop: sqlite3.Connection) -> None:
    three = {"event": "purchase", "within": "90d", "eq": 3}
    assert select(shop, three) == {"plain"}
    assert select(shop, three, as_of=AS_OF - 1) == set()
    assert select(shop, {"event": "purchase", "within": "90d"}) == {"tenths", "plain"}
    assert select(shop, {"event": "purchase"}) == {"tenths", "plain", "big"}


def test_counts_that_zero_satisfies_include_customers_without_events(
    shop: sqlite3.Connection,
) -> None:
    assert select(shop, {"event": "purchase", "within": "30d", "lt": 2}) == {"big", "withdrawn"}
    assert select(shop, {"event": "purchase", "within": "90d", "sum": "amount", "lt": 1}) == {
        "tenths",
        "big",
        "withdrawn",
    }


def test_attributes_compare_numbers_exactly_and_strings_as_strings(
    shop: sqlite3.Connection,
) -> None:
    assert select(shop, {"attr": "ltv", "gte": 100}) == {"tenths", "big", "plain"}
    assert select(shop, {"attr": "ltv", "gt": "100.1"}) == {"big"}
    assert select(shop, {"attr": "ltv", "eq": "100.10"}) == {"tenths"}
    assert select(shop, {"attr": "ltv", "gt": 9223372036854775807}) == {"big"}
    assert select(shop, {"attr": "score", "gt": "0.3"}) == {"tenths"}
    assert select(shop, {"attr": "score", "lte": "0.3"}) == set()
    assert select(shop, {"attr": "ltv", "gte": "a"}) == {"withdrawn"}
    assert select(shop, {"attr": "country", "in": ["DE", "AT"]}) == {"big", "plain"}
    assert select(shop, {"attr": "country", "ne": "DE"}) == {"plain"}
    assert select(shop, {"attr": "vip", "eq": True}) == {"plain"}
    assert select(shop, {"attr": "vip", "exists": False}) == {"tenths", "big", "withdrawn"}


def test_where_filters_events_by_property(shop: sqlite3.Connection) -> None:
    rule = {"event": "purchase", "where": {"shop": {"eq": "web"}}}
    assert select(shop, rule) == {"plain"}
    rule = {"event": "purchase", "within": "90d", "where": {"amount": {"gte": "0.2"}}, "gte": 2}
    assert select(shop, rule) == {"plain"}


def test_profile_rules_and_combinations(shop: sqlite3.Connection) -> None:
    assert select(shop, {"consent": "m"}) == {"plain"}
    assert select(shop, {"tag": "vip"}) == {"tenths"}
    assert select(
        shop, {"not": {"tag": "vip"}, "any": [{"consent": "m"}, {"attr": "ltv", "eq": "abc"}]}
    ) == {
        "plain",
        "withdrawn",
    }
    assert select(shop, {}) == {"tenths", "big", "plain", "withdrawn"}
    assert select(shop, None) == {"tenths", "big", "plain", "withdrawn"}
    assert select(shop, {"any": []}) == set()


def test_typical_campaign_segment() -> None:
    customers = [
        Customer("lapsed", {"country": '"DE"'}, {"bonus_interest"}),
        Customer("recent", {"country": '"AT"'}, {"bonus_interest"}),
        Customer("small", {"country": '"DE"'}, {"bonus_interest"}),
        Customer("french", {"country": '"FR"'}, {"bonus_interest"}),
    ]
    events = [
        Event("lapsed", "purchase", AS_OF - 60 * DAY, {"amount": '"59.90"'}),
        Event("lapsed", "purchase", AS_OF - 50 * DAY, {"amount": '"40.10"'}),
        Event("recent", "purchase", AS_OF - 60 * DAY, {"amount": '"150.00"'}),
        Event("recent", "purchase", AS_OF - 5 * DAY, {"amount": '"1.00"'}),
        Event("small", "purchase", AS_OF - 60 * DAY, {"amount": '"99.99"'}),
        Event("french", "purchase", AS_OF - 60 * DAY, {"amount": '"500"'}),
    ]
    rule = {
        "all": [
            {"tag": "bonus_interest"},
            {"attr": "country", "in": ["DE", "AT"]},
            {"event": "purchase", "within": "90d", "sum": "amount", "gte": 100},
            {"not": {"event": "purchase", "within": "30d"}},
        ]
    }
    conn = database(customers, events)
    assert select(conn, rule) == {"lapsed"}
    conn.close()


def test_compile_needs_as_of_in_unix_seconds() -> None:
    with pytest.raises(TypeError):
        compile_segment(parse_segment({"tag": "x"}), as_of=1.5)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# Parsing and errors
# ---------------------------------------------------------------------------


def test_parse_builds_the_ast() -> None:
    segment = parse_segment(
        {
            "all": [
                {"tag": "bonus_interest"},
                {"attr": "country", "in": ["DE", "AT"]},
                {"event": "purchase", "within": "90d", "sum": "amount", "gte": 100},
                {"not": {"event": "purchase", "within": "30d"}},
            ]
        }
    )
    assert segment == Segment(
        AllRule(
            (
                TagRule("bonus_interest"),
                AttrRule("country", (Comparison("in", ("DE", "AT")),)),
                EventRule("purchase", 90 * DAY, (), "amount", (Comparison("gte", 100),)),
                NotRule(EventRule("purchase", 30 * DAY)),
            )
        )
    )
    assert segment.to_dict()["all"][2] == {
        "event": "purchase",
        "within": "90d",
        "sum": "amount",
        "gte": 100,
    }


def issues(obj: Any) -> list[tuple[str, str]]:
    with pytest.raises(SegmentError) as caught:
        parse_segment(obj)
    return caught.value.issues


def test_every_issue_is_reported_with_its_key_path() -> None:
    found = issues(
        {
            "all": [
                {"tag": "ok"},
                {"tag": ""},
                {"event": "purchase", "within": "9x"},
                {"attr": "ltv", "gte": 1.5},
                {"attr": "x"},
                {"event": "login", "count": 3},
                {"event": "purchase", "sum": "amount", "gte": "lots"},
                {"not": {}},
                {"tag": "a", "list": "b"},
                {"within": "3d"},
            ],
            "any": "nope",
        }
    )
    assert found == [
        ("segment.all[1].tag", "a tag must not be empty"),
        (
            "segment.all[2].within",
            'bad duration "9x" (a number with a unit s, m, h or d, such as "90d")',
        ),
        (
            "segment.all[3].gte",
            'floats are not exact: write the number as a decimal string, e.g. "12.5"',
        ),
        (
            "segment.all[4]",
            "an attr rule needs an operator: one of eq, ne, gt, gte, lt, lte, in, exists",
        ),
        (
            "segment.all[5].count",
            "unknown key: compare the number of events directly, e.g. gte = 3",
        ),
        ("segment.all[6].gte", 'expected a number or a decimal string, got "lots"'),
        (
            "segment.all[7].not",
            "empty rule: expected one of tag, attr, event, list, consent, all, any, not",
        ),
        (
            "segment.all[8]",
            "one condition per table, found tag and list: list them in all = [...] or any = [...]",
        ),
        ("segment.all[9].within", "unknown key (it goes with event = ...)"),
        ("segment.any", "expected a list of rules, got a string"),
    ]


def test_error_message_lists_paths() -> None:
    with pytest.raises(SegmentError) as caught:
        parse_segment({"event": "x", "within": "9x"}, path="campaign.segment")
    assert str(caught.value).startswith('campaign.segment.within: bad duration "9x"')


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ([{"tag": "x"}], [("segment", "expected a table, got an array")]),
        ({"attr": "a", "in": []}, [("segment.in", "must list at least one value")]),
        ({"attr": "a", "in": ["x", 1.0]}, [("segment.in[1]", None)]),
        (
            {"attr": "a", "within": "1d", "eq": 1},
            [("segment.within", "unknown key for an attr rule")],
        ),
        ({"tag": "t", "sum": "x"}, [("segment.sum", "unknown key for a tag rule")]),
        (
            {"attr": "a", "gt": True},
            [("segment.gt", "gt needs a number or a string, not a boolean")],
        ),
        (
            {"attr": "a", "exists": True, "eq": 1},
            [("segment.exists", "exists cannot be combined with other operators")],
        ),
        (
            {"attr": "a", "exists": "yes"},
            [("segment.exists", "expected true or false, got a string")],
        ),
        (
            {"attr": 'we"ird', "eq": 1},
            [
                (
                    "segment.attr",
                    'an attribute name "we\\"ird" cannot contain quotes, backslashes'
                    " or control characters",
                )
            ],
        ),
        ({"event": "login", "gte": -1}, [("segment.gte", "a number of events cannot be negative")]),
        (
            {"event": "login", "gte": "3"},
            [("segment.gte", "expected a whole number of events, got a string")],
        ),
        (
            {"event": "buy", "sum": "amount"},
            [("segment.sum", "a sum needs a comparison: one of eq, ne, gt, gte, lt, lte")],
        ),
        (
            {"event": "buy", "within": "0s"},
            [("segment.within", 'window "0s" is shorter than one second')],
        ),
        (
            {"event": "buy", "within": 30},
            [("segment.within", 'expected a duration such as "90d", got an integer')],
        ),
        (
            {"event": "buy", "where": {"amount": 5}},
            [
                (
                    "segment.where.amount",
                    "expected a table of operators such as { gte = 50 }, got an integer",
                )
            ],
        ),
        (
            {"event": "buy", "where": {"amount": {"over": 5}}},
            [
                ("segment.where.amount.over", "unknown operator"),
                (
                    "segment.where.amount",
                    "a property condition needs an operator: one of"
                    " eq, ne, gt, gte, lt, lte, in, exists",
                ),
            ],
        ),
        ({"attr": "a", "eq": "1" * 300}, [("segment.eq", "number out of range")]),
    ],
)
def test_bad_rules(rule: Any, expected: list[tuple[str, str | None]]) -> None:
    found = issues(rule)
    assert [path for path, _ in found] == [path for path, _ in expected]
    for (_, message), (_, wanted) in zip(found, expected, strict=True):
        if wanted is not None:
            assert message == wanted


def test_strings_with_exponents_are_strings_not_numbers() -> None:
    segment = parse_segment({"attr": "a", "eq": "1e999999"})
    assert segment.rule == AttrRule("a", (Comparison("eq", "1e999999"),))


# ---------------------------------------------------------------------------
# The daemon's database connection
# ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_segments_run_on_the_daemon_database(tmp_path: Path) -> None:
    from promod.store.database import Database

    db = await Database.open(tmp_path / "promod.db")
    try:
        await register_sql_functions_async(db.conn)
        stamp = "2026-01-01T00:00:00Z"
        await db.execute(
            "INSERT INTO customers (id, attributes, created_at, updated_at) VALUES (?, ?, ?, ?)",
            ("c1", '{"ltv": "100.10"}', stamp, stamp),
        )
        await db.execute(
            "INSERT INTO events (customer_id, name, ts, properties) VALUES (?, ?, ?, ?)",
            ("c1", "purchase", AS_OF - 10, '{"amount": "0.1"}'),
        )
        rule = {
            "attr": "ltv",
            "gt": "100.09",
            "all": [{"event": "purchase", "within": "1d", "sum": "amount", "eq": "0.10"}],
        }
        sql, params = compile_segment(parse_segment(rule), as_of=AS_OF)
        rows = await db.fetchall(sql, params)
        assert [row["customer_id"] for row in rows] == ["c1"]
    finally:
        await db.close()
