"""Random code generation: charset, pattern, keyspace and an unbiased byte table.

Characters come from :func:`secrets.token_bytes`. A byte table maps every byte value
below the largest multiple of the charset's size to a character and deletes the
others (rejection sampling), so each character is equally likely::

    spec = CodeSpec.build(pattern="XMAS-####-####")
    spec.keyspace                      # 31 ** 8
    codes = spec.generate(1000)        # ["XMAS-7KQ2-MZ9P", ...] (may repeat; the store dedups)
"""

from __future__ import annotations

import math
import re
import secrets
from dataclasses import dataclass

__all__ = [
    "DEFAULT_CHARSET",
    "DEFAULT_LENGTH",
    "MAX_FILL_PERCENT",
    "CodeSpec",
    "KeyspaceError",
    "check_keyspace",
]

# Uppercase letters and digits without the look-alikes 0 O 1 I L.
DEFAULT_CHARSET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
DEFAULT_LENGTH = 10
MAX_CODE_LENGTH = 64
# At most this share of a keyspace may ever be used: generation stays quick
# (few collisions to retry) and a code stays hard to guess.
MAX_FILL_PERCENT = 50
_SAFE_LITERAL = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:/+=")


class KeyspaceError(ValueError):
    """A generation request the pattern cannot satisfy; the message has the numbers."""


def _check_literal(text: str, what: str) -> None:
    bad = sorted({c for c in text if c not in _SAFE_LITERAL})
    if bad:
        raise ValueError(f"{what} may only hold letters, digits and - _ . : / + = (not {bad!r})")


@dataclass(frozen=True)
class CodeSpec:
    """How codes look: ``prefix + pattern (each # random) + postfix`` over ``charset``."""

    charset: str
    pattern: str  # "#" = one random character; other characters are kept
    prefix: str = ""
    postfix: str = ""

    @classmethod
    def build(
        cls,
        *,
        length: int | None = None,
        charset: str | None = None,
        pattern: str | None = None,
        prefix: str = "",
        postfix: str = "",
    ) -> CodeSpec:
        """Validate the options of ``codes generate``; ValueError names the bad one."""
        chars = DEFAULT_CHARSET if charset is None else charset
        if len(chars) < 2 or len(chars) > 256:
            raise ValueError("charset must hold 2 to 256 characters")
        if len(set(chars)) != len(chars):
            raise ValueError("charset has repeated characters")
        if "#" in chars:
            raise ValueError("charset may not contain '#'")
        _check_literal(chars, "charset")
        if pattern is not None and length is not None:
            raise ValueError("give --pattern or --length, not both")
        if pattern is None:
            n = DEFAULT_LENGTH if length is None else length
            if n < 1 or n > MAX_CODE_LENGTH:
                raise ValueError(f"length must be 1 to {MAX_CODE_LENGTH}")
            pattern = "#" * n
        if "#" not in pattern:
            raise ValueError("pattern needs at least one '#' (a random character)")
        _check_literal(pattern.replace("#", ""), "pattern")
        _check_literal(prefix, "prefix")
        _check_literal(postfix, "postfix")
        total = len(prefix) + len(pattern) + len(postfix)
        if total > MAX_CODE_LENGTH:
            raise ValueError(f"codes would be {total} characters long (at most {MAX_CODE_LENGTH})")
        return cls(charset=chars, pattern=pattern, prefix=prefix, postfix=postfix)

    @property
    def random_chars(self) -> int:
        return self.pattern.count("#")

    @property
    def keyspace(self) -> int:
        """How many distinct codes the spec can make."""
        return int(len(self.charset) ** self.random_chars)

    @property
    def bits(self) -> float:
        return self.random_chars * math.log2(len(self.charset))

    def describe_keyspace(self) -> str:
        return f"{len(self.charset)}^{self.random_chars} = {self.keyspace:,}"

    def _table(self) -> tuple[bytes, bytes]:
        n = len(self.charset)
        limit = 256 - (256 % n)
        table = bytes(ord(self.charset[b % n]) if b < limit else 0 for b in range(256))
        return table, bytes(range(limit, 256))

    def random_text(self, count: int) -> str:
        """``count`` unbiased random characters of the charset."""
        table, reject = self._table()
        out: list[str] = []
        have = 0
        accept = (256 - len(reject)) / 256
        while have < count:
            need = count - have
            raw = secrets.token_bytes(int(need / accept * 1.02) + 64)
            chunk = raw.translate(table, reject).decode("ascii")
            out.append(chunk)
            have += len(chunk)
        return "".join(out)[:count]

    def generate(self, count: int) -> list[str]:
        """``count`` random codes (independent draws: duplicates are possible)."""
        runs = [len(m) for m in re.findall("#+", self.pattern)]
        literals = re.split("#+", self.pattern)
        template = "{}".join(
            [self.prefix + literals[0], *literals[1:-1], literals[-1] + self.postfix]
        )
        columns: list[list[str]] = []
        for run in runs:
            text = self.random_text(count * run)
            columns.append([text[i : i + run] for i in range(0, count * run, run)])
        if template == "{}":
            return columns[0]
        return list(map(template.format, *columns))


def check_keyspace(spec: CodeSpec, count: int, existing: int) -> None:
    """Refuse (KeyspaceError with the numbers) when ``count`` more codes do not fit.

    ``existing`` is the number of codes already in the series. At most
    :data:`MAX_FILL_PERCENT` percent of the keyspace may be used.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    keyspace = spec.keyspace
    limit = keyspace * MAX_FILL_PERCENT // 100
    if existing + count > limit:
        raise KeyspaceError(
            f"{count:,} more codes do not fit: the pattern has a keyspace of "
            f"{spec.describe_keyspace()}, the series already holds {existing:,} codes, "
            f"and at most {MAX_FILL_PERCENT}% ({limit:,}) may be used; "
            "use a longer pattern or a larger charset"
        )
