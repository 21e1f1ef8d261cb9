"""Value types shared by the campaign spec models and the providers' option models.

A provider's options model (``promod.codepool.provider``, ``promod.rewards.coupon``)
uses the same checked strings as the spec itself, without importing the spec
models::

    class CouponOptions(Model):
        code: Text                     # a non-empty string
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from promod.schema import SPEC_WORDS, Check, Invalid

__all__ = ["NAME", "PoolName", "Text", "pattern", "text"]

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")


def text(value: Any) -> str:
    """A non-empty string, or Invalid naming what it was."""
    if not isinstance(value, str):
        raise Invalid(f"must be a string, not {SPEC_WORDS.kind(value)}")
    if not value.strip():
        raise Invalid("must not be empty")
    return value


def pattern(regex: re.Pattern[str], hint: str = "") -> Check:
    """A non-empty string matching ``regex`` in full (``hint`` explains the shape)."""

    def check(value: Any) -> str:
        found = text(value)
        if not regex.fullmatch(found):
            raise Invalid(f"invalid value {found!r}{': ' + hint if hint else ''}")
        return found

    return Check(check, {"type": "string", "pattern": f"^{regex.pattern}$"})


Text = Annotated[str, Check(text, {"type": "string", "minLength": 1})]
PoolName = Annotated[str, pattern(NAME, "a code pool name")]
