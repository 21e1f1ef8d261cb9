"""The campaign report: every target counted once, spend against every cap, per day.

:func:`promod.campaigns.store_report.report_sync` builds one structure (re-exported
here); ``report_rows`` flattens it into the rows the CSV writes and the text report
prints, so JSON, CSV and text carry the same figures. Every target is in exactly one
of granted (issued), refused, pending, held, issuing (a provider is issuing its reward)
and failed, and the report states the sum::

    report = await db.run(lambda tx: report_sync(tx, "winback-30d"), write=False)
    report["granted"], report["refused"], report["spend"], report["balance"]["holds"]

The caps include the site-wide policy budgets that bind the campaign (its reward
providers' budgets in its currency), named as their refusals are
(``provider_budget:wallet_points``, ``provider_daily_budget:wallet_points``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Any

from promod.campaigns.store_report import BALANCE, EQUATION, report_sync

__all__ = ["BALANCE", "EQUATION", "SECTIONS", "report_csv", "report_rows", "report_sync"]


def report_rows(report: Mapping[str, Any]) -> list[tuple[str, str, Any, Any]]:
    """Every figure of a report as ``(section, key, value, limit)``, in reading order.

    CSV writes these rows and the text report prints the same ones, so the two never
    carry different numbers.
    """
    rows: list[tuple[str, str, Any, Any]] = []
    kill = report.get("kill_switch")
    if kill:
        rows.append(("kill_switch", "engaged_at", kill.get("engaged_at"), None))
        rows.append(("kill_switch", "by", kill.get("by"), None))
    rows += [
        ("campaign", "id", report["id"], None),
        ("campaign", "state", report["state"], None),
        ("campaign", "paused_reason", report.get("paused_reason"), None),
    ]
    paused = report.get("paused") or {}
    for who in ("operator", "automatic"):
        for key, value in (paused.get(who) or {}).items():
            rows.append(("paused", f"{who}.{key}", value, None))
    rows.append(("total", "targeted", report["targeted"], None))
    for key in BALANCE:
        rows.append(
            ("total", key, report[key] if key != "refused" else report["balance"][key], None)
        )
    balance = report["balance"]
    rows.append(("balance", balance["equation"], balance["sum"], None))
    rows.append(("balance", "holds", balance["holds"], None))
    rows.append(("total", "customers", report["customers"], None))
    rows.append(("total", "spend", report["spend"], None))
    rows.append(("total", "currency", report.get("currency"), None))
    for reason, n in report["refused"].items():
        rows.append(("refused", reason, n, None))
    for reason, n in report.get("pending_by_reason", {}).items():
        rows.append(("pending", reason, n, None))
    for state, figures in report.get("grants", {}).items():
        rows.append(("grants", f"{state}.count", figures["count"], None))
        rows.append(("grants", f"{state}.value", figures["value"], None))
    for name, usage in report.get("caps", {}).items():
        used = usage.get("used")
        if isinstance(used, Mapping):
            if not used:
                rows.append(("caps", name, None, usage.get("limit")))
            for day, value in used.items():
                rows.append(("caps", f"{name}.{day}", value, usage.get("limit")))
        else:
            rows.append(("caps", name, used, usage.get("limit")))
        for key, value in usage.items():  # policy, currency, note, ...
            if key not in ("used", "limit"):
                rows.append(("caps", f"{name}.{key}", value, None))
    for day in report.get("per_day", []):
        rows.append(("day", f"{day['day']}.granted", day["granted"], None))
        rows.append(("day", f"{day['day']}.spend", day["spend"], None))
    for run in report.get("runs", []):
        for key in ("state", "started_at", "finished_at", "targeted"):
            rows.append(("run", f"{run['seq']}.{key}", run[key], None))
    for section in SECTIONS:
        value = report.get(section)
        if isinstance(value, Mapping):
            rows += [(section, key, v, None) for key, v in _flat(value)]
    return rows


# The parts' own sections, in the order they are shown.
SECTIONS = ("live", "clearance", "codes")


def _flat(mapping: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            nested = _flat(value, f"{name}.")
            out += nested or [(name, None)]
        else:
            out.append((name, value))
    return out


def report_csv(report: Mapping[str, Any]) -> str:
    """``section,key,value,limit``: every figure of the report, for spreadsheets."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["section", "key", "value", "limit"])
    for section, key, value, limit in report_rows(report):
        writer.writerow([section, key, _cell(value), _cell(limit)])
    return buf.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
