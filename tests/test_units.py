"""Durations, sizes and money at the edges (promod.units)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from promod.units import (
    format_duration,
    format_money,
    format_size,
    parse_duration,
    parse_money,
    parse_size,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("15m", 900.0),
        ("72h", 259200.0),
        ("30d", 2592000.0),
        ("1h30m", 5400.0),
        ("1.5s", 1.5),
        ("0s", 0.0),
        (" 10s ", 10.0),
    ],
)
def test_parse_duration_accepts_units(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["30", "", "s", "-5s", "5x", "1.5.2s", "5 s", "1e3s", "ms", "30S", "+5s"],
)
def test_parse_duration_rejects_bare_numbers_negatives_and_junk(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize("value", [30, 30.0, None, True])
def test_parse_duration_rejects_non_strings(value: Any) -> None:
    with pytest.raises(ValueError, match="must be a string"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.5, "500ms"), (30, "30s"), (900.0, "15m"), (5400, "1h30m"), (86400, "1d")],
)
def test_format_duration_is_short(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_format_duration_rejects_negative_and_nan() -> None:
    with pytest.raises(ValueError):
        format_duration(-1)
    with pytest.raises(ValueError):
        format_duration(float("nan"))


@given(st.integers(min_value=0, max_value=10**12))
def test_duration_round_trip_in_milliseconds(millis: int) -> None:
    seconds = millis / 1000
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False))
def test_duration_round_trip_any_float(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1024", 1024),
        ("1MiB", 1024**2),
        ("512KiB", 512 * 1024),
        ("2MB", 2_000_000),
        ("1kb", 1000),
        ("1.5KiB", 1536),
        ("10B", 10),
        ("1 GiB", 1024**3),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("value", ["", "MiB", "-1", "1XB", "0.5B", "1.1KiB", 1024, None])
def test_parse_size_rejects_junk(value: Any) -> None:
    with pytest.raises(ValueError):
        parse_size(value)


@given(st.integers(min_value=0, max_value=2**50))
def test_size_round_trip(size: int) -> None:
    assert parse_size(format_size(size)) == size


def test_format_size_picks_the_largest_exact_unit() -> None:
    assert format_size(1024**2) == "1MiB"
    assert format_size(1536) == "1536"
    assert format_size(3 * 1024) == "3KiB"


@pytest.mark.parametrize(
    ("text", "exponent", "minor"),
    [
        ("5.00", 2, 500),
        ("5", 2, 500),
        ("5.5", 2, 550),
        ("0.01", 2, 1),
        ("100000.00", 2, 10_000_000),
        ("007.10", 2, 710),
        ("5", 0, 5),
        ("1.234", 3, 1234),
    ],
)
def test_parse_money(text: str, exponent: int, minor: int) -> None:
    assert parse_money(text, exponent) == minor


@pytest.mark.parametrize(
    "value",
    [
        5.0,
        5,
        True,
        None,
        Decimal("5.00"),
        "NaN",
        "nan",
        "Infinity",
        "-1.00",
        "+1.00",
        "1.001",
        "1e3",
        " 5",
        "5.",
        ".5",
        "",
        "1,000.00",
        "5 EUR",
    ],
)
def test_parse_money_rejects_everything_but_plain_decimal_strings(value: Any) -> None:
    with pytest.raises(ValueError):
        parse_money(value)


def test_parse_money_names_the_problem() -> None:
    with pytest.raises(ValueError, match="not float"):
        parse_money(5.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at most 2 decimals"):
        parse_money("1.001")
    with pytest.raises(ValueError, match="at most 0 decimals"):
        parse_money("1.0", 0)


@pytest.mark.parametrize(
    ("minor", "exponent", "text"),
    [
        (500, 2, "5.00"),
        (1, 2, "0.01"),
        (0, 2, "0.00"),
        (5, 0, "5"),
        (-5, 2, "-0.05"),
        (1234, 3, "1.234"),
    ],
)
def test_format_money(minor: int, exponent: int, text: str) -> None:
    assert format_money(minor, exponent) == text


def test_format_money_refuses_floats() -> None:
    with pytest.raises(TypeError):
        format_money(5.0)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=10**24), st.integers(min_value=0, max_value=6))
def test_money_round_trip_from_minor_units(minor: int, exponent: int) -> None:
    assert parse_money(format_money(minor, exponent), exponent) == minor


@given(st.from_regex(r"[0-9]{1,15}(\.[0-9]{1,2})?", fullmatch=True))
def test_money_round_trip_from_text_keeps_the_value(text: str) -> None:
    minor = parse_money(text)
    assert Decimal(format_money(minor)) == Decimal(text)
    assert minor == int(Decimal(text) * 100)
