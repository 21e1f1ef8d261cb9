"""Lone surrogates: JSON that decodes to text no UTF-8 encoder will take.

``"\\ud800"`` is valid JSON, but the string it decodes to holds a lone UTF-16 surrogate:
encoding it (to a socket, a log line, the store) raises ``UnicodeEncodeError``. Every
entry point that decodes JSON refuses such text where it enters, naming where it was::

    where = find_surrogate({"tags": ["ok", "z\\ud800"]})   # "tags[1]"
    if where is not None:
        raise ValueError(f"{where}: {SURROGATE_MESSAGE}")
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["SURROGATE_MESSAGE", "find_surrogate", "has_surrogate"]

SURROGATE_MESSAGE = "text holds a lone surrogate (such as \\ud800), which is not valid Unicode"

_SURROGATE = re.compile("[\ud800-\udfff]")


def has_surrogate(text: str) -> bool:
    """True when ``text`` holds a code point of the surrogate range."""
    return _SURROGATE.search(text) is not None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def find_surrogate(value: Any, path: str = "") -> str | None:
    """The path (``a.b[2]``) of the first string or key with a lone surrogate, or None.

    The value itself is ``path`` (``""`` at the top); a bad object key is reported as the
    path of that key. Nesting is walked with an explicit stack, so depth is no limit.
    """
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if has_surrogate(item):
                return where or "(value)"
        elif isinstance(item, dict):
            for key, inner in reversed(list(item.items())):
                shown = key if isinstance(key, str) else str(key)
                if isinstance(key, str) and has_surrogate(key):
                    return _join(where, ascii(key)[1:-1])
                stack.append((inner, _join(where, shown)))
        elif isinstance(item, list | tuple):
            for index in range(len(item) - 1, -1, -1):
                stack.append((item[index], f"{where}[{index}]"))
    return None
