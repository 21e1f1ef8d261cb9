"""``promodctl tags ...``: the client side of tag rules and tag edits.

``tags apply -f FILE`` and ``tags simulate -f FILE`` send a rules file (TOML, or JSON
by extension); a refused file prints every error with its key path and exits 1::

    promodctl tags apply -f rules.toml
    promodctl tags simulate -f rules.toml        # per rule: would tag, would untag
    promodctl tags history --customer c42
    promodctl tags add c42 vip --reason "phone call"
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from promod.ctl.client import AdminClient, CommandError
from promod.ctl.render import format_timestamp, render_kv, render_table, render_value

__all__ = [
    "render_tag",
    "render_tag_apply",
    "render_tag_edit",
    "render_tag_history",
    "render_tag_reasons",
    "render_tag_rules",
    "render_tag_simulation",
    "render_tags",
    "run_tags_file",
]


def _when(value: Any) -> str:
    return format_timestamp(float(value)) if isinstance(value, int | float) else "-"


def run_tags_file(command: Any, client: AdminClient, ns: argparse.Namespace) -> Any:
    """Read ``-f FILE`` and send its text to ``tags.apply`` or ``tags.simulate``."""
    path = Path(ns.p_file)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError("invalid_args", f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CommandError("invalid_args", f"{path} is not UTF-8 text") from None
    fmt = "json" if path.suffix.lower() == ".json" else "toml"
    return client.call(command.command, {"rules": text, "format": fmt})


def render_tag_apply(result: Any) -> str:
    if not isinstance(result, Mapping):
        return render_value(result)
    lines = []
    for outcome in ("created", "updated", "unchanged", "retired"):
        for item in result.get(outcome) or ():
            lines.append(f"{item['name']}: {outcome}, version {item['version']}")
    return "\n".join(lines) if lines else "(no rules)"


def render_tag_simulation(result: Any) -> str:
    if not isinstance(result, Mapping):
        return render_value(result)
    rows = [
        {
            "rule": r["name"],
            "tag": r["tag"],
            "mode": r["mode"],
            "matching": r["matching"],
            "would add": r["would_add"],
            "would remove": r["would_remove"],
        }
        for r in result.get("rules") or ()
    ]
    head = f"as of {_when(result.get('as_of'))} (nothing written)\n"
    return head + render_table(rows, empty="(no rules)")


def render_tags(result: Any) -> str:
    if not isinstance(result, list):
        return render_value(result)
    rows = [
        {
            "tag": r["tag"],
            "customers": r["customers"],
            "rule": f"{r['rule']}@{r['version']} ({r['mode']})" if r.get("rule") else "",
            "checked": _when(r.get("checked_at")) if r.get("rule") else "",
        }
        for r in result
    ]
    return render_table(rows, empty="(no tags)")


def _history_rows(rows: Any) -> list[dict[str, Any]]:
    return [
        {
            "id": r["id"],
            "at": _when(r["at"]),
            "customer": r["customer_id"],
            "tag": r["tag"],
            "change": r["change"],
            "source": r["source"],
            "reason": r.get("reason") or "",
        }
        for r in rows
    ]


def render_tag_history(result: Any) -> str:
    if not isinstance(result, list):
        return render_value(result)
    return render_table(_history_rows(result), empty="(no changes)")


def render_tag(result: Any) -> str:
    if not isinstance(result, Mapping):
        return render_value(result)
    head: dict[str, Any] = {"tag": result["tag"], "customers": result["customers"]}
    rule = result.get("rule")
    if isinstance(rule, Mapping):
        head["rule"] = f"{rule['name']} version {rule['version']} ({rule['versions']} kept)"
        head["mode"] = rule["mode"]
        head["recheck"] = rule["recheck"]
        head["checked"] = _when(rule.get("checked_at"))
        head["segment"] = rule["segment"]
    text = render_kv(head)
    by_source = result.get("by_source") or {}
    if by_source:
        text += "\n\nby source:\n" + render_kv(by_source, indent=2)
    text += "\n\nlatest changes:\n" + render_table(
        _history_rows(result.get("recent") or ()), empty="(none)"
    )
    return text


def render_tag_rules(result: Any) -> str:
    if not isinstance(result, list):
        return render_value(result)
    if result and "current" in result[0]:
        rows = [
            {
                "version": v["version"],
                "current": "yes" if v["current"] else "",
                "applied": _when(v["applied_at"]),
                "by": v["applied_by"],
                "tag": v["rule"]["tag"],
                "mode": v["rule"]["mode"],
                "segment": v["rule"]["segment"],
            }
            for v in result
        ]
        return render_table(rows)
    rows = [
        {
            "rule": r["name"],
            "version": r["version"],
            "tag": r["tag"],
            "mode": r["mode"],
            "recheck": r["recheck"],
            "checked": _when(r.get("checked_at")),
        }
        for r in result
    ]
    return render_table(rows, empty="(no rules)")


def render_tag_edit(result: Any) -> str:
    if not isinstance(result, Mapping):
        return render_value(result)
    if "added" in result:
        verb = "added" if result["added"] else "already there"
    else:
        verb = "removed" if result["removed"] else "was not there"
    return f"{result['customer']}: {result['tag']} {verb}"


def render_tag_reasons(reasons: Any) -> str:
    """The ``tags`` part of ``customers show``: each tag and why it is there."""
    if not isinstance(reasons, list) or not reasons:
        return "  (none)"
    lines = []
    for r in reasons:
        why = r.get("source") or "(no source: older than tag history)"
        if r.get("reason"):
            why += f": {r['reason']}"
        since = f", since {_when(r['since'])}" if r.get("since") is not None else ""
        lines.append(f"  {r['tag']}: {why}{since}")
    return "\n".join(lines)
