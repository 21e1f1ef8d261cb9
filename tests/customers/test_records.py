"""Customer and event records: validation, normalisation, CSV rows."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from promod.customers.records import (
    CSV_EXTRA_KEY,
    Customer,
    Event,
    RecordError,
    check_csv_columns,
    customer_from_csv_row,
    loads_record,
    parse_customer,
    parse_event,
)


def test_full_customer_record_is_parsed() -> None:
    customer = parse_customer(
        {
            "id": "c42",
            "email": "a@example.org",
            "timezone": "Europe/Berlin",
            "attributes": {"country": "DE", "vip": True, "orders": 3, "note": None},
            "tags": ["bonus_interest", "vip", "vip"],
            "consents": {"marketing_email": True, "sms": False},
        }
    )
    assert customer == Customer(
        id="c42",
        email="a@example.org",
        timezone="Europe/Berlin",
        attributes={"country": "DE", "vip": True, "orders": 3, "note": None},
        tags=("bonus_interest", "vip"),
        consents={"marketing_email": True, "sms": False},
    )
    assert Customer.from_dict(customer.to_dict()) == customer


def test_minimal_customer_has_empty_defaults() -> None:
    assert parse_customer({"id": "c1"}) == Customer(id="c1")
    assert parse_customer({"id": "c1", "email": None, "timezone": ""}).email is None


def test_fractional_numbers_become_exact_decimal_strings() -> None:
    record = loads_record('{"id": "c1", "attributes": {"ltv": 1234.50, "big": 1e3}}')
    assert record["attributes"]["ltv"] == Decimal("1234.50")
    customer = parse_customer(record)
    assert customer.attributes == {"ltv": "1234.50", "big": "1000"}
    assert parse_customer({"id": "c1", "attributes": {"x": 0.1}}).attributes == {"x": "0.1"}
    huge = parse_customer({"id": "c1", "attributes": {"n": 2**70}})
    assert huge.attributes == {"n": str(2**70)}


@pytest.mark.parametrize(
    ("record", "field", "fragment"),
    [
        ({}, "id", "required"),
        ({"id": ""}, "id", "empty"),
        ({"id": 42}, "id", "string"),
        ({"id": "x" * 129}, "id", "longer than 128"),
        ({"id": " c1"}, "id", "whitespace"),
        ({"id": "c\n1"}, "id", "control"),
        ({"id": "c1", "name": "x"}, "name", "unknown key"),
        ({"id": "c1", "email": "not-an-email"}, "email", "not an email"),
        ({"id": "c1", "email": "a@b"}, "email", "not an email"),
        ({"id": "c1", "timezone": "Mars/Olympus"}, "timezone", "IANA"),
        ({"id": "c1", "timezone": "../../etc/passwd"}, "timezone", "IANA"),
        ({"id": "c1", "attributes": []}, "attributes", "object"),
        ({"id": "c1", "attributes": {"a": [1]}}, "attributes.a", "string, number"),
        ({"id": "c1", "attributes": {"a": {"b": 1}}}, "attributes.a", "string, number"),
        ({"id": "c1", "attributes": {'a"b': 1}}, 'attributes.a"b', "attribute names"),
        ({"id": "c1", "attributes": {"x": float("nan")}}, "attributes.x", "finite"),
        ({"id": "c1", "tags": "vip"}, "tags", "array"),
        ({"id": "c1", "tags": ["ok", 3]}, "tags[1]", "string"),
        ({"id": "c1", "tags": [""]}, "tags[0]", "empty"),
        ({"id": "c1", "consents": ["marketing"]}, "consents", "object"),
        ({"id": "c1", "consents": {"marketing": "yes"}}, "consents.marketing", "true or false"),
    ],
)
def test_invalid_customer_names_the_field(record: Any, field: str, fragment: str) -> None:
    with pytest.raises(RecordError) as info:
        parse_customer(record)
    assert info.value.field == field
    assert fragment in info.value.message
    assert str(info.value).startswith(f"{field}: ")


def test_customer_must_be_an_object() -> None:
    with pytest.raises(RecordError, match="must be a JSON object"):
        parse_customer(["c1"])


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{", "invalid JSON"),
        ("[1, 2]", "expected a JSON object, got an array"),
        ('{"id": NaN}', "invalid JSON"),
        ('"c1"', "got a string"),
    ],
)
def test_loads_record_refuses_non_objects(text: str, fragment: str) -> None:
    with pytest.raises(RecordError, match=fragment):
        loads_record(text)


def test_event_record_is_parsed_to_unix_seconds() -> None:
    event = parse_event(
        {
            "id": "e1",
            "customer_id": "c42",
            "name": "purchase",
            "ts": "2026-11-20T18:03:00Z",
            "properties": {"amount": Decimal("59.90"), "items": [{"price": 1.5}]},
        }
    )
    assert event == Event.model_construct(
        event_id="e1",
        customer_id="c42",
        name="purchase",
        ts=1795197780,
        properties={"amount": "59.90", "items": [{"price": "1.5"}]},
    )
    assert Event.from_dict(event.to_dict()) == event
    offset = parse_event({"customer_id": "c", "name": "n", "ts": "2026-11-20T19:03:00.9+01:00"})
    assert offset.ts == 1795197780
    assert offset.event_id is None
    assert offset.properties == {}


@pytest.mark.parametrize(
    ("record", "field", "fragment"),
    [
        ({"name": "n", "ts": "2026-01-01T00:00:00Z"}, "customer_id", "required"),
        ({"customer_id": "c", "ts": "2026-01-01T00:00:00Z"}, "name", "required"),
        ({"customer_id": "c", "name": "n"}, "ts", "required"),
        ({"customer_id": "c", "name": "n", "ts": "2026-01-01T00:00:00"}, "ts", "no zone"),
        ({"customer_id": "c", "name": "n", "ts": "yesterday"}, "ts", "not an ISO-8601"),
        ({"customer_id": "c", "name": "n", "ts": 1790000000}, "ts", "ISO-8601"),
        (
            {"customer_id": "c", "name": "n", "ts": "2026-01-01T00:00:00Z", "properties": []},
            "properties",
            "object",
        ),
        (
            {"customer_id": "c", "name": "n", "ts": "2026-01-01T00:00:00Z", "id": ""},
            "id",
            "empty",
        ),
        (
            {"customer_id": "c", "name": "n", "ts": "2026-01-01T00:00:00Z", "when": 1},
            "when",
            "unknown key",
        ),
        (
            {"customer_id": "c", "name": "n", "ts": "2026-01-01T00:00:00Z", "event_id": "e"},
            "event_id",
            "unknown key",
        ),
    ],
)
def test_invalid_event_names_the_field(record: Any, field: str, fragment: str) -> None:
    with pytest.raises(RecordError) as info:
        parse_event(record)
    assert info.value.field == field
    assert fragment in info.value.message


def test_csv_row_converts_attribute_cells() -> None:
    customer = customer_from_csv_row(
        {
            "id": "c7",
            "email": " b@example.org ",
            "timezone": "",
            "tags": "vip; bonus_interest;;",
            "consents": "marketing_email",
            "attr.vip": "true",
            "attr.churned": "false",
            "attr.orders": "12",
            "attr.ltv": "1234.50",
            "attr.zip": "01234",
            "attr.country": "DE",
            "attr.empty": "",
        }
    )
    assert customer == Customer(
        id="c7",
        email="b@example.org",
        timezone=None,
        attributes={
            "vip": True,
            "churned": False,
            "orders": 12,
            "ltv": "1234.50",
            "zip": "01234",
            "country": "DE",
        },
        tags=("vip", "bonus_interest"),
        consents={"marketing_email": True},
    )


@pytest.mark.parametrize(
    ("row", "fragment"),
    [
        ({"id": "c1", "name": "x"}, "unknown column 'name'"),
        ({"id": "c1", CSV_EXTRA_KEY: ["x"]}, "more fields than the header"),
        ({"id": "c1", "email": None}, "fewer fields than the header"),
        ({"email": "a@example.org"}, "id: is required"),
        ({"id": ""}, "id: must not be empty"),
        ({"id": "c1", "email": "nope"}, "email: 'nope' is not an email"),
        ({"id": "c1", "attr.a b": "1"}, "attr.a b: attribute names"),
    ],
)
def test_invalid_csv_row(row: dict[str | None, Any], fragment: str) -> None:
    with pytest.raises(RecordError) as info:
        customer_from_csv_row(row)
    assert fragment in str(info.value)


def test_csv_header_is_checked() -> None:
    assert check_csv_columns(["id", "email", "attr.ltv"]) == ["id", "email", "attr.ltv"]
    with pytest.raises(RecordError, match="no 'id' column"):
        check_csv_columns(["email"])
    with pytest.raises(RecordError, match="duplicate column 'id'"):
        check_csv_columns(["id", "id"])
    with pytest.raises(RecordError, match="unknown column 'phone'"):
        check_csv_columns(["id", "phone"])


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"id": "z\\ud800"}', "id"),
        ('{"id": "c1", "tags": ["ok", "\\udfff"]}', "tags[1]"),
        ('{"id": "c1", "attributes": {"\\ud800x": 1}}', "attributes.\\ud800x"),
        (
            '{"customer_id": "c", "name": "n", "ts": "2026-01-01T00:00:00Z",'
            ' "properties": {"a": [{"b": "\\ud83d"}]}}',
            "properties.a[0].b",
        ),
    ],
)
def test_lone_surrogates_are_refused_where_a_line_is_read(text: str, field: str) -> None:
    with pytest.raises(RecordError) as info:
        loads_record(text)
    assert info.value.field == field
    assert "surrogate" in info.value.message


def test_surrogates_from_undecodable_bytes_are_refused_in_records() -> None:
    # A file read with errors="surrogateescape" turns bad bytes into lone surrogates.
    with pytest.raises(RecordError) as info:
        parse_customer({"id": "c1", "attributes": {"note": "caf\udce9"}})
    assert info.value.field == "attributes.note"
    with pytest.raises(RecordError, match="id: text holds a lone surrogate"):
        customer_from_csv_row({"id": "c\udce9"})


def test_every_bad_field_is_reported_at_once() -> None:
    with pytest.raises(RecordError) as info:
        parse_customer(
            {"id": " c1", "email": "nope", "tags": [3], "consents": None, "colour": "red"}
        )
    paths = [e["path"] for e in info.value.errors]
    assert sorted(paths) == ["colour", "consents", "email", "id", "tags[0]"]
    assert str(info.value).count("; ") == 4


@pytest.mark.parametrize("field", ["consents", "attributes", "tags"])
def test_null_is_refused_where_the_schema_wants_a_value(field: str) -> None:
    with pytest.raises(RecordError) as info:
        parse_customer({"id": "c1", field: None})
    assert info.value.field == field


def test_null_properties_are_refused() -> None:
    with pytest.raises(RecordError) as info:
        parse_event(
            {"customer_id": "c", "name": "n", "ts": "2026-01-01T00:00:00Z", "properties": None}
        )
    assert info.value.field == "properties"


def test_rfc3339_times_in_lower_case_are_read() -> None:
    event = parse_event({"customer_id": "c", "name": "n", "ts": "2026-11-20t18:03:00z"})
    assert event.ts == 1795197780
