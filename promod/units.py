"""Units at the edges: durations, sizes and money as text, numbers inside.

Configuration files, campaign specs and the HTTP API carry durations (``"30s"``),
sizes (``"1MiB"``) and money (``"5.00"``) as strings; the rest of promod works
with seconds (float), bytes (int) and integers of minor units. Money is never a
float anywhere.

    >>> parse_duration("15m"), parse_size("1MiB"), parse_money("5.00")
    (900.0, 1048576, 500)
    >>> format_money(500), format_duration(5400.0)
    ('5.00', '1h30m')
"""

from __future__ import annotations

import re
from decimal import Decimal

__all__ = [
    "format_duration",
    "format_money",
    "format_size",
    "parse_duration",
    "parse_money",
    "parse_size",
]

_DURATION_UNITS: dict[str, Decimal] = {
    "ms": Decimal("0.001"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
    "d": Decimal(86400),
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")

_SIZE_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([A-Za-z]*)")

_MONEY = re.compile(r"(\d+)(?:\.(\d+))?")


def _type_name(value: object) -> str:
    return type(value).__name__


def parse_duration(text: str) -> float:
    """Return the number of seconds in a duration such as ``"500ms"``, ``"30s"``, ``"1h30m"``.

    Units are ``ms``, ``s``, ``m``, ``h`` and ``d``; parts may be combined
    (``"1h30m"``) and may carry decimals (``"1.5s"``). Bare numbers, negative
    values and anything else raise :class:`ValueError`.
    """
    if not isinstance(text, str):
        raise ValueError(f"a duration must be a string such as '30s', not {_type_name(text)}")
    stripped = text.strip()
    if not _DURATION.fullmatch(stripped):
        raise ValueError(
            f"invalid duration {text!r}: use a number with a unit ms, s, m, h or d, such as '30s'"
        )
    total = sum(
        (
            Decimal(number) * _DURATION_UNITS[unit]
            for number, unit in _DURATION_PART.findall(stripped)
        ),
        Decimal(0),
    )
    return float(total)


def format_duration(seconds: float) -> str:
    """Format seconds as the shortest duration string that parses back to the same value.

    ``5400.0`` gives ``"1h30m"``, ``0.5`` gives ``"500ms"``, ``0`` gives ``"0s"``.
    """
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise TypeError(f"seconds must be a number, not {_type_name(seconds)}")
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise ValueError(f"cannot format {seconds!r} as a duration")
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative: {seconds!r}")
    exact = Decimal(repr(float(seconds))) if isinstance(seconds, float) else Decimal(seconds)
    millis = exact * 1000
    if millis != millis.to_integral_value():
        # Finer than a millisecond: plain seconds, written without an exponent.
        text = format(exact, "f").rstrip("0").rstrip(".")
        return f"{text}s"
    remaining = int(millis)
    if remaining == 0:
        return "0s"
    parts: list[str] = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    if remaining:
        parts.append(f"{remaining}ms")
    return "".join(parts)


def parse_size(text: str) -> int:
    """Return the bytes in a size such as ``"1MiB"``, ``"512KiB"``, ``"2MB"`` or ``"1024"``.

    ``KiB``/``MiB``/``GiB``/``TiB`` are powers of 1024, ``KB``/``MB``/``GB``/``TB``
    powers of 1000 (case does not matter); a bare number counts bytes. The result
    must be a whole, non-negative number of bytes.
    """
    if not isinstance(text, str):
        raise ValueError(f"a size must be a string such as '1MiB', not {_type_name(text)}")
    match = _SIZE.fullmatch(text.strip())
    if match is None or match.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(
            f"invalid size {text!r}: use a number of bytes or a unit as in '512KiB', '1MiB', '2MB'"
        )
    amount = Decimal(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
    if amount != amount.to_integral_value():
        raise ValueError(f"invalid size {text!r}: not a whole number of bytes")
    return int(amount)


def format_size(size: int) -> str:
    """Format bytes with the largest binary unit dividing them exactly: 1048576 -> ``"1MiB"``."""
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"size must be an int, not {_type_name(size)}")
    if size < 0:
        raise ValueError(f"a size cannot be negative: {size}")
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        factor = _SIZE_UNITS[unit.lower()]
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def parse_money(text: str, exponent: int = 2) -> int:
    """Return the integer number of minor units in a decimal money string.

    ``parse_money("5.00")`` and ``parse_money("5")`` give ``500``. Only plain
    decimal strings are money: a float, an int or any other non-string, a sign,
    an exponent, ``NaN``, or more decimals than ``exponent`` raise :class:`ValueError`.
    """
    if isinstance(exponent, bool) or not isinstance(exponent, int) or exponent < 0:
        raise ValueError(f"exponent must be a non-negative int, not {exponent!r}")
    if not isinstance(text, str):
        raise ValueError(
            f"money must be a decimal string such as '5.00', not {_type_name(text)} {text!r}"
        )
    match = _MONEY.fullmatch(text)
    if match is None:
        raise ValueError(
            f"invalid amount {text!r}: use a non-negative decimal string such as '5.00'"
        )
    whole, fraction = match.group(1), match.group(2) or ""
    if len(fraction) > exponent:
        raise ValueError(
            f"invalid amount {text!r}: at most {exponent} decimal"
            f"{'' if exponent == 1 else 's'} allowed"
        )
    return int(whole + fraction.ljust(exponent, "0"))


def format_money(minor: int, exponent: int = 2) -> str:
    """Format integer minor units as a decimal string: ``format_money(500)`` -> ``"5.00"``.

    Negative amounts (refunds, corrections in reports) keep their sign.
    """
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise TypeError(f"minor units must be an int, not {_type_name(minor)}")
    if isinstance(exponent, bool) or not isinstance(exponent, int) or exponent < 0:
        raise ValueError(f"exponent must be a non-negative int, not {exponent!r}")
    sign = "-" if minor < 0 else ""
    digits = str(abs(minor))
    if exponent == 0:
        return f"{sign}{digits}"
    digits = digits.rjust(exponent + 1, "0")
    return f"{sign}{digits[:-exponent]}.{digits[-exponent:]}"
