"""``promodctl lists import|show|list|delete``: the client side of custom lists.

``lists import NAME FILE`` streams the file as ``lists.import.*`` chunks (see
:mod:`promod.ctl.imports`) and commits: the file *replaces* the list unless
``--add`` is given. Formats by extension: ``.csv`` (an ``id`` column), ``.jsonl``
(objects with an ``id``), anything else one id a line (``--format`` overrides).
A refused import prints every bad row as ``line N: message`` and exits 1::

    promodctl lists import vip-2026 vip.txt            # the list is now exactly vip.txt
    promodctl lists import vip-2026 more.csv --add
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promod.ctl.client import AdminClient, CommandError
from promod.ctl.imports import print_import_errors, upload_file
from promod.ctl.render import format_timestamp, render_kv, render_table, render_value

if TYPE_CHECKING:
    from promod.ctl.main import CtlCommand

__all__ = [
    "list_format_for",
    "render_list",
    "render_list_change",
    "render_lists",
    "run_lists_import",
]

_BY_EXTENSION = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}


def _when(value: Any) -> str:
    return format_timestamp(float(value)) if isinstance(value, int | float) else "-"


def list_format_for(path: Path, given: str | None) -> str:
    """``--format`` if given, else by extension; one id a line for any other file."""
    return given or _BY_EXTENSION.get(path.suffix.lower(), "lines")


def run_lists_import(command: CtlCommand, client: AdminClient, ns: argparse.Namespace) -> Any:
    """``promodctl lists import NAME FILE [--format lines|csv|jsonl] [--add|--replace]``."""
    from promod.ctl.main import UsageError

    path = Path(ns.p_file)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    if ns.p_add and ns.p_replace:
        raise UsageError("give --add or --replace, not both")
    fmt = list_format_for(path, ns.p_format)
    mode = "add" if ns.p_add else "replace"
    try:
        return upload_file(client, "lists", path, fmt, begin={"list": ns.p_list, "mode": mode})
    except CommandError as exc:
        print_import_errors(exc)
        raise


def render_list_change(result: Any) -> str:
    if not isinstance(result, dict) or "members" not in result:
        return render_value(result)
    text = (
        f"list {result['list']} ({result.get('mode', 'replace')}): {result['members']} members,"
        f" {result['added']} added, {result['removed']} removed (version {result['version']})"
    )
    missing = result.get("without_profile") or 0
    if missing:
        shown = ", ".join(result.get("without_profile_ids") or [])
        more = missing - len(result.get("without_profile_ids") or [])
        text += f"\n{missing} member(s) have no customer profile: {shown}"
        if more > 0:
            text += f" ... and {more} more"
    return text


def render_lists(result: Any) -> str:
    if not isinstance(result, list):
        return render_value(result)
    rows = [{**r, "updated_at": _when(r.get("updated_at"))} for r in result if isinstance(r, dict)]
    return render_table(rows, ["list", "members", "version", "source", "updated_at"])


def render_list(result: Any) -> str:
    if not isinstance(result, dict):
        return render_value(result)
    shown = {
        "list": result.get("list"),
        "members": result.get("members"),
        "version": result.get("version"),
        "source": result.get("source"),
        "updated_at": _when(result.get("updated_at")),
        "without profile": result.get("without_profile"),
        "used by": ", ".join(result.get("used_by") or []) or "(no live campaign)",
    }
    text = render_kv(shown)
    missing = result.get("without_profile_ids") or []
    if missing:
        text += "\n\nwithout a profile:\n  " + ", ".join(missing)
    sample = result.get("sample") or []
    text += "\n\nfirst members:\n  " + (", ".join(sample) if sample else "(none)")
    versions = result.get("versions") or []
    if versions:
        rows = [
            {**v, "applied_at": _when(v.get("applied_at"))} for v in versions if isinstance(v, dict)
        ]
        columns = ["version", "state", "source", "members", "added", "removed", "applied_at"]
        text += "\n\nversions:\n" + render_table(rows, columns)
    return text
