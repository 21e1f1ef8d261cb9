"""The error for bad command-line input found after parsing; promodctl exits 2 on it.

Command modules raise it without importing the CLI's entry point::

    raise UsageError(f"{path}: no such file")
"""

from __future__ import annotations

__all__ = ["UsageError"]


class UsageError(Exception):
    """Bad command-line input found after parsing (exit 2)."""
